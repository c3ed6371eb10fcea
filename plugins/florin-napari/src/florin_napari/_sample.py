"""Sample data: florin's phantom volume (the demo volume of ``florin demo``)."""

from __future__ import annotations

__all__ = ["phantom"]


def phantom(shape=(48, 192, 192), seed=0):
    """The demo phantom (dark cells and vessels on an uneven background) with its true labels.

    Both layers are placed as the reader places a volume
    (:func:`florin_napari._layers.placement`): the voxel size as the scale, the
    units in the axis labels (``'z (µm)'``) and as the layer units.
    """
    import florin
    from florin.data import phantom as make
    from florin_napari._layers import placement

    sample = make(tuple(shape), seed=seed)
    where = placement(florin.as_volume(sample.image, spacing=(1.0, 0.5, 0.5), units="um"))
    return [
        (sample.image, {"name": "phantom", **where}, "image"),
        (sample.labels, {"name": "phantom truth", "visible": False, **where}, "labels"),
    ]
