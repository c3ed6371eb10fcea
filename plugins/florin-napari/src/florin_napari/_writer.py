"""The napari writers: Image and Labels layers through florin's writers.

Every write goes through :func:`florin.io.write` (atomic: a temporary path
beside the target, renamed on success), in the format the extension names,
with the layer's scale as the voxel size. A Labels layer is marked
``attrs['florin_kind'] = 'labels'`` so it opens as Labels again.

OME-Zarr: an image and its labels are saved together (select the layers,
*File > Save Selected Layers*, ``.ome.zarr``): the image is the multiscale
image at the root and each Labels layer an ``image-label`` group under
``labels/NAME``, as NGFF describes. A Labels layer saved alone to
``.ome.zarr`` becomes the only ``image-label`` group of an otherwise empty
image group.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from florin_napari._layers import to_volume

__all__ = ["write_image", "write_labels", "write_layers"]


def _write(path, volume):
    import florin.io

    florin.io.write(path, volume, overwrite=True)  # napari's save dialog has asked about replacing
    return [os.fspath(path)]


def _is_ome_zarr(path) -> bool:
    return os.fspath(path).lower().rstrip("/\\").endswith(".ome.zarr")


def write_image(path, data, meta):
    """Write one Image layer (npe2 single-layer writer)."""
    if _is_ome_zarr(path):
        return write_layers(path, [(data, meta, "image")])
    return _write(path, to_volume(data, meta))


def write_labels(path, data, meta):
    """Write one Labels layer (npe2 single-layer writer)."""
    if _is_ome_zarr(path):
        return write_layers(path, [(data, meta, "labels")])
    return _write(path, to_volume(data, meta, labels=True))


def write_layers(path, layers):
    """Write an image with its labels as one OME-Zarr (npe2 multi-layer writer).

    ``layers`` are napari's ``(data, meta, layer_type)`` tuples: at most one
    image, any number of labels.
    """
    import florin.io
    from florin.errors import ParameterError
    from florin.io.atomic import atomic_path

    if not _is_ome_zarr(path):
        raise ParameterError(f"several layers are written to one OME-Zarr (.ome.zarr), got {os.fspath(path)!r}")
    images = [layer for layer in layers if layer[2] == "image"]
    labels = [layer for layer in layers if layer[2] == "labels"]
    if len(images) > 1 or len(images) + len(labels) != len(layers):
        raise ParameterError("layers: an OME-Zarr holds one image and any number of labels layers; "
                             f"got {[layer[2] for layer in layers]}")
    version = "0.5"
    with atomic_path(path) as tmp:
        if images:
            florin.io.write(tmp, to_volume(images[0][0], images[0][1]), format="ome-zarr", version=version)
        else:
            _empty_group(tmp)
        names = []
        for i, (data, meta, _) in enumerate(labels):
            name = _label_name(meta, i, names)
            names.append(name)
            target = Path(tmp) / "labels" / name
            florin.io.write(target, to_volume(data, meta, labels=True), format="ome-zarr",
                            version=version, name=name)
            _set_ome(target, {"image-label": {"source": {"image": "../../"}}})
        if names:
            _empty_group(Path(tmp) / "labels")
            _set_ome(Path(tmp) / "labels", {"labels": names})
            if not images:
                _set_ome(Path(tmp), {"labels": names})
    return [os.fspath(path)]


def _label_name(meta, index, taken):
    name = str(meta.get("name") or f"labels{index}")
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or f"labels{index}"
    while name in taken:
        name += "_"
    return name


def _empty_group(path):
    import zarr

    zarr.open_group(store=os.fspath(path), mode="a", zarr_format=3)


def _set_ome(path, entries):
    meta_path = Path(path) / "zarr.json"
    meta = json.loads(meta_path.read_text())
    attrs = meta.setdefault("attributes", {})
    ome = attrs.setdefault("ome", {"version": "0.5"})
    ome.setdefault("version", "0.5")
    ome.update(entries)
    meta_path.write_text(json.dumps(meta, indent=2))
