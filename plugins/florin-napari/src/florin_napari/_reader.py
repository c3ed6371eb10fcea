"""The napari reader: every format florin reads, lazily, with its voxel size.

* TIFF / OME-TIFF, NPY, NetCDF, HDF5, Zarr, OME-Zarr, slice folders and any
  format a florin plugin registers (through :func:`florin.io.read`).
* HDF5 files and NetCDF files with several datasets (variables): the dataset
  chooser (:data:`choose_datasets`) picks which to open; by default every
  dataset opens as its own (lazy) layer, and in an interactive napari session
  a dialog lists them.
* OME-Zarr: every resolution level, as one multiscale layer; the image's
  ``labels/`` (``image-label`` groups) open as Labels layers.
* Label volumes open as Labels layers (:func:`florin_napari._layers.is_labels`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from florin.errors import FlorinError
from florin_napari._layers import layer_tuple

__all__ = ["choose_datasets", "get_reader", "read_layers"]


def _florin_format(path: str):
    from florin.errors import FormatError
    from florin.registry import get_registry

    registry = get_registry()
    try:
        return registry.format_for_path(path).name
    except FormatError:
        pass
    if os.path.isdir(path):
        if _zarr_node_kind(path) is not None:
            return "ome-zarr" if _ome_attrs(path) else "zarr"
        if "stack" in registry.formats:
            return "stack"
    return None


def get_reader(path):
    """napari reader hook: a reader function for ``path``, or None if florin cannot read it."""
    paths = [os.fspath(p) for p in path] if isinstance(path, list | tuple) else [os.fspath(path)]
    if not paths or any(_florin_format(p) is None for p in paths):
        return None
    if any(not os.path.exists(p) for p in paths):
        return None
    return read_layers


def choose_datasets(path: str, names: list[str]) -> list[str]:
    """The datasets of a multi-dataset file to open (the dataset chooser).

    In an interactive napari session (a visible main window) a dialog lists the
    datasets with an "all datasets" entry (cancelling opens none); otherwise,
    or with the environment variable ``FLORIN_NAPARI_NO_DIALOG`` set, every
    dataset is opened. Replace this function
    (``florin_napari._reader.choose_datasets = ...``) to choose differently.
    """
    try:
        from qtpy.QtWidgets import QApplication, QInputDialog
    except ImportError:  # pragma: no cover - no Qt binding
        return names
    app = QApplication.instance()
    window = app.activeWindow() if app is not None else None
    if window is None or not window.isVisible() or os.environ.get("FLORIN_NAPARI_NO_DIALOG"):
        return names
    everything = f"all {len(names)} datasets"
    item, ok = QInputDialog.getItem(window, "florin: choose a dataset", os.path.basename(path),
                                    [everything, *names], 0, False)
    if not ok:
        return []
    return names if item == everything else [item]


def read_layers(path):
    """Read ``path`` (or a list of paths) into napari layer-data tuples."""
    paths = [os.fspath(p) for p in path] if isinstance(path, list | tuple) else [os.fspath(path)]
    layers = []
    for p in paths:
        layers.extend(_read_one(p))
    return layers


def _read_one(path: str):
    import florin.io

    fmt = _florin_format(path)
    stem = Path(path.rstrip("/\\")).name
    if fmt == "hdf5":
        return [layer_tuple(florin.io.read(path, key=key), name=f"{stem}{key}")
                for key in choose_datasets(path, _hdf5_datasets(path))]
    if fmt == "netcdf":
        names = _netcdf_variables(path)
        if len(names) > 1:
            return [layer_tuple(florin.io.read(path, key=key), name=f"{stem}:{key}")
                    for key in choose_datasets(path, names)]
    if fmt in ("zarr", "ome-zarr") and _ome_attrs(path):
        return _read_ome_zarr(path, stem)
    return [layer_tuple(florin.io.read(path, format=fmt), name=stem)]


def _hdf5_datasets(path):
    import h5py

    names = []
    with h5py.File(path, "r", locking=False) as f:
        f.visititems(lambda name, obj: names.append("/" + name) if isinstance(obj, h5py.Dataset)
                     and obj.shape is not None and len(obj.shape) > 0 else None)
    return names


def _netcdf_variables(path):
    import xarray as xr

    with xr.open_dataset(path) as ds:
        return [str(name) for name, var in ds.data_vars.items() if var.ndim > 0]


# -- OME-Zarr ---------------------------------------------------------------------------------
def _zarr_node_kind(path):
    for meta in ("zarr.json", ".zgroup", ".zarray"):
        if os.path.exists(os.path.join(path, meta)):
            return meta
    return None


def _group_attrs(path) -> dict:
    p = Path(path)
    if (p / "zarr.json").exists():
        return dict(json.loads((p / "zarr.json").read_text()).get("attributes") or {})
    if (p / ".zattrs").exists():
        return dict(json.loads((p / ".zattrs").read_text()))
    return {}


def _ome_attrs(path) -> dict:
    attrs = _group_attrs(path)
    ome = attrs.get("ome") if isinstance(attrs.get("ome"), dict) else attrs
    return ome if ("multiscales" in ome or "labels" in ome) else {}


def _levels(path):
    import florin.io

    ome = _ome_attrs(path)
    count = len(((ome.get("multiscales") or [{}])[0]).get("datasets") or [])
    return [florin.io.read(path, format="ome-zarr", level=i) for i in range(count)]


def _read_ome_zarr(path, stem):
    ome = _ome_attrs(path)
    layers = []
    if ome.get("multiscales"):
        levels = _levels(path)
        label_image = bool(ome.get("image-label"))
        layers.append(layer_tuple(levels, name=stem, layer_type="labels" if label_image else None,
                                  multiscale=len(levels) > 1))
    labels_dir = os.path.join(path, "labels")
    names = (_ome_attrs(labels_dir) or {}).get("labels") or ome.get("labels") or []
    for name in names:
        sub = os.path.join(labels_dir, name)
        try:
            levels = _levels(sub)
        except FlorinError:
            continue
        if levels:
            layers.append(layer_tuple(levels, name=name, layer_type="labels", multiscale=len(levels) > 1))
    return layers
