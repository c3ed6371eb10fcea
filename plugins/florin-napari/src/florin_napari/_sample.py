"""Sample data: florin's phantom volume (the demo volume of ``florin demo``)."""

from __future__ import annotations

__all__ = ["phantom"]


def phantom(shape=(48, 192, 192), seed=0):
    """The demo phantom (dark cells and vessels on an uneven background) with its true labels."""
    import florin
    from florin.data import phantom as make

    sample = make(tuple(shape), seed=seed)
    spacing = (1.0, 0.5, 0.5)
    scale = {"scale": spacing, "axis_labels": ("z", "y", "x"), "units": ("um", "um", "um")}
    vol = florin.as_volume(sample.image, spacing=spacing, units="um")
    return [
        (vol.values, {"name": "phantom", **scale}, "image"),
        (sample.labels, {"name": "phantom truth", "visible": False, **scale}, "labels"),
    ]
