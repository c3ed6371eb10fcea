"""Zarr (v3, and v2 for reading) and OME-Zarr (NGFF 0.4 and 0.5) through zarr-python.

Two formats are registered:

``zarr`` (``.zarr``)
    A plain Zarr array at the root of the store, with ``dimension_names`` and
    florin's metadata in its attributes. Reading a group takes ``key=`` (the
    array's path), else the group's only array, else the level 0 of an OME
    multiscale image, else an error listing the arrays present.
``ome-zarr`` (``.ome.zarr``)
    An OME-Zarr image: a group with ``multiscales`` metadata (axes with types
    and units, one ``scale`` transform per level) and arrays ``0``, ``1``...
    Reading takes level 0 (or ``level=``) with its voxel size; writing makes
    NGFF 0.5 (Zarr v3, default) or 0.4 (Zarr v2, ``version='0.4'``), with
    ``levels=`` resolution levels downsampled by 2 in y and x (nearest voxel,
    so label images stay labels). No ``ome-zarr`` package is needed.

Reads are lazy: a worker opens the store and reads only the chunks of its tile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading

import numpy as np
import zarr
from zarr.core.sync import _get_loop

from florin._signals import deferred
from florin.errors import FormatError, InputFileError, ParameterError
from florin.io import Format
from florin.io._blocks import copy_blocks, default_chunks
from florin.io._reader import pick_key, stored_volume, volume_of
from florin.io.lazy import FileArray, cached_handle
from florin.io.metadata import from_json, meta_json
from florin.volume import as_volume

__all__ = ["FORMAT", "FORMATS", "OME_FORMAT"]

_UNITS_TO_OME = {"um": "micrometer", "µm": "micrometer", "micron": "micrometer", "nm": "nanometer",
                 "mm": "millimeter", "cm": "centimeter", "m": "meter", "pm": "picometer", "A": "angstrom"}
_UNITS_FROM_OME = {v: k for k, v in _UNITS_TO_OME.items() if k not in ("µm", "micron")}
_AXIS_TYPES = {"z": "space", "y": "space", "x": "space", "t": "time", "c": "channel"}


def _open_node(path):
    return zarr.open(store=os.fspath(path), mode="r")


def _open_array(path, key):
    return zarr.open_array(store=os.fspath(path), path=key or "", mode="r")


def read_region(path, key, index):
    """Read a region of the array ``key`` of a store (the lazy reader)."""
    return cached_handle(_open_array, path, key, closer=lambda h: None)[index]


def _arrays(group):
    return sorted(name for name, node in group.members(max_depth=None) if isinstance(node, zarr.Array))


def _array_problem(group, key):
    try:
        return None if isinstance(group[key], zarr.Array) else "no array"
    except KeyError:
        return "no array"


def _multiscales(attrs):
    ome = attrs.get("ome")
    if isinstance(ome, dict) and ome.get("multiscales"):
        return ome["multiscales"]
    return attrs.get("multiscales") or None


def _scale_of(transforms, ndim):
    scale = np.ones(ndim)
    for t in transforms or ():
        if t.get("type") == "scale" and "scale" in t and len(t["scale"]) == ndim:
            scale = scale * np.asarray(t["scale"], dtype=float)
    return scale


def _array_meta(array):
    attrs = dict(array.attrs)
    meta = attrs.get("florin")
    if isinstance(meta, dict):
        meta = from_json(json.dumps(meta))
    elif isinstance(meta, str):
        meta = from_json(meta)
    names = getattr(array.metadata, "dimension_names", None) or attrs.get("_ARRAY_DIMENSIONS")
    return meta, (tuple(names) if names and all(isinstance(n, str) for n in names) else None), attrs


def read_zarr(path, *, key=None, level=0, lazy=True):
    """Read an array of a Zarr store, or level ``level`` of an OME-Zarr image, lazily."""
    node = _open_node(path)
    spacing = units = None
    dims = None
    extra = {}
    if isinstance(node, zarr.Array):
        if key not in (None, "", "/"):
            raise InputFileError(f"{os.fspath(path)!r} is a single array, not a group with an array {key!r}; omit key=")
        array, key = node, None
    else:
        multiscales = _multiscales(dict(node.attrs))
        present = _arrays(node)
        if key is None and multiscales:
            ms = multiscales[0]
            datasets = ms.get("datasets") or []
            if not 0 <= level < len(datasets):
                raise InputFileError(
                    f"{os.fspath(path)!r} has {len(datasets)} resolution levels; level={level} does not exist"
                )
            key = datasets[level]["path"]
            axes = ms.get("axes") or []
            names = [a["name"] if isinstance(a, dict) else str(a) for a in axes]
            ndim = len(names)
            scale = _scale_of(datasets[level].get("coordinateTransformations"), ndim)
            scale = scale * _scale_of(ms.get("coordinateTransformations"), ndim)
            if ndim:
                dims = tuple(names)
                spacing = tuple(float(s) for s in scale)
                space_units = {a.get("unit") for a in axes if isinstance(a, dict) and a.get("type") == "space"}
                space_units.discard(None)
                if len(space_units) == 1:
                    unit = space_units.pop()
                    units = _UNITS_FROM_OME.get(unit, unit)
            if ms.get("name"):
                extra["name"] = ms["name"]
        array = node[pick_key(path, key, present, noun="array", problem=lambda k: _array_problem(node, k))]
        key = array.path
    meta, names, attrs = _array_meta(array)
    shape, dtype = tuple(array.shape), np.dtype(array.dtype)
    if dtype.kind not in "biufc":
        raise InputFileError(f"array {key or '/'!r} of {os.fspath(path)!r} holds {dtype}, not numbers")
    data = FileArray(path, "zarr", key, shape, dtype, read_region, chunks=array.chunks) if lazy else array[...]
    vol = stored_volume(data, meta, spacing=spacing)
    if vol is not None:
        return vol
    dims = dims if dims is not None and len(dims) == len(shape) else names
    plain = {k: v for k, v in attrs.items() if k not in ("florin", "_ARRAY_DIMENSIONS")}
    try:
        json.dumps(plain)
    except (TypeError, ValueError):
        plain = {}
    vol = volume_of(data, dims=dims, attrs={**plain, **extra})
    if spacing is not None and len(spacing) == len(shape) and all(s > 0 for s in spacing):
        vol = as_volume(vol, spacing=spacing, units=units)
    return vol


def _fill_value(dtype):
    return False if np.dtype(dtype) == bool else 0


def _create_array(group_or_store, name, shape, dtype, dims, attrs, chunks, zarr_format, *, meta=True):
    dtype = np.dtype(dtype)
    chunks = tuple(chunks) if chunks is not None else default_chunks(shape, dtype.itemsize)
    if len(chunks) != len(shape):
        raise ParameterError(f"chunks {chunks} has {len(chunks)} entries for a {len(shape)}-D volume")
    chunks = tuple(max(1, min(int(c), max(1, n))) for c, n in zip(chunks, shape, strict=True))
    attributes = {"florin": json.loads(meta_json(dims, dtype, attrs))} if meta else {}
    kwargs = {"shape": tuple(shape), "dtype": dtype, "chunks": chunks, "fill_value": _fill_value(dtype),
              "attributes": attributes, "zarr_format": zarr_format}
    if zarr_format == 3:
        kwargs["dimension_names"] = tuple(dims)
    else:
        attributes["_ARRAY_DIMENSIONS"] = list(dims)
        kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    if isinstance(group_or_store, zarr.Group):
        kwargs.pop("zarr_format")
        return group_or_store.create_array(name, **kwargs)
    return zarr.create_array(store=group_or_store, **kwargs)


_settling = threading.local()


@contextlib.contextmanager
def _settled(timeout=10.0):
    """On an error or Ctrl-C in the block, wait (up to ``timeout`` seconds) for the chunk writes zarr still runs.

    zarr writes chunks as tasks of its background event loop; when one fails
    (a full disk) or the call waiting for them is interrupted, the others go on
    and would recreate files in a temporary output already removed. Only the
    outermost of nested blocks waits.
    """
    depth = getattr(_settling, "depth", 0)
    _settling.depth = depth + 1
    try:
        yield
    except BaseException:
        if depth == 0:
            with deferred():
                _wait_for_zarr_tasks(timeout)
        raise
    finally:
        _settling.depth = depth


def _wait_for_zarr_tasks(timeout) -> None:
    try:
        loop = _get_loop()
    except Exception:  # pragma: no cover - another zarr layout
        return

    async def idle():
        while True:
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if not others:
                return
            await asyncio.wait(others)

    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(idle(), loop).result(timeout)


@_settled()
def create_zarr(path, shape, dtype, *, dims, attrs, chunks=None, zarr_format=3):
    """Create a plain Zarr array (zero-filled) at the root of a new store."""
    if zarr_format not in (2, 3):
        raise ParameterError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    _create_array(os.fspath(path), None, shape, dtype, dims, attrs, chunks, zarr_format)
    return {}


@contextlib.contextmanager
def open_region_zarr(path, *, key=None):
    """The array ``key`` (root by default) of a store, open for writing."""
    with _settled():
        yield zarr.open_array(store=os.fspath(path), path=key or "", mode="r+")


# -- OME-Zarr -------------------------------------------------------------------------------
def _ome_axes(dims, units):
    if not 2 <= len(dims) <= 5:
        raise FormatError(
            f"an OME-Zarr image has 2 to 5 dims, this volume has {len(dims)} {tuple(dims)}; write plain .zarr instead"
        )
    axes = []
    for d in dims:
        axis = {"name": str(d)}
        kind = _AXIS_TYPES.get(d)
        if kind is not None:
            axis["type"] = kind
        if kind == "space" and units:
            axis["unit"] = _UNITS_TO_OME.get(units, units)
        axes.append(axis)
    if sum(a.get("type") == "space" for a in axes) not in (2, 3):
        raise FormatError(f"an OME-Zarr image needs 2 or 3 of the space dims z, y, x; this volume has {tuple(dims)}")
    return axes


def _multiscales_meta(dims, spacing, units, levels, name, version):
    factors = [tuple(2**i if d in ("y", "x") else 1 for d in dims) for i in range(levels)]
    datasets = [
        {"path": str(i), "coordinateTransformations": [
            {"type": "scale", "scale": [float(s) * f for s, f in zip(spacing, fac, strict=True)]}
        ]}
        for i, fac in enumerate(factors)
    ]
    ms = {"axes": _ome_axes(dims, units), "datasets": datasets, "name": name or "image"}
    if version == "0.4":
        ms = {"version": "0.4", **ms}
    return ms, factors


def _spacing_of(dims, attrs):
    spacing = attrs.get("spacing")
    return tuple(spacing) if spacing is not None and len(spacing) == len(dims) else (1.0,) * len(dims)


@_settled()
def create_ome_zarr(path, shape, dtype, *, dims, attrs, chunks=None, version="0.5", name=None):
    """Create a single-level OME-Zarr image (zero-filled level ``0``) to be written region by region."""
    _make_ome(path, shape, dtype, dims, attrs, chunks, version, name, levels=1)
    return {"key": "0"}


def _make_ome(path, shape, dtype, dims, attrs, chunks, version, name, levels):
    if version not in ("0.4", "0.5"):
        raise ParameterError(f"version must be '0.4' or '0.5', got {version!r}")
    if not isinstance(levels, int) or levels < 1:
        raise ParameterError(f"levels must be an int >= 1, got {levels!r}")
    zarr_format = 3 if version == "0.5" else 2
    ms, factors = _multiscales_meta(dims, _spacing_of(dims, attrs), attrs.get("units"), levels, name, version)
    group = zarr.open_group(store=os.fspath(path), mode="w", zarr_format=zarr_format)
    if version == "0.5":
        group.attrs["ome"] = {"version": "0.5", "multiscales": [ms]}
    else:
        group.attrs["multiscales"] = [ms]
    arrays = []
    for i, fac in enumerate(factors):
        lshape = tuple(-(-n // f) for n, f in zip(shape, fac, strict=True))
        arrays.append(_create_array(group, str(i), lshape, dtype, dims, attrs, chunks, zarr_format, meta=i == 0))
    return arrays, factors


@_settled()
def write_ome_zarr(path, volume, *, chunks=None, version="0.5", levels=1, name=None):
    """Write a volume as an OME-Zarr image (NGFF 0.5 on Zarr v3, or 0.4 on Zarr v2).

    Parameters
    ----------
    chunks : tuple of int, optional
        Chunk shape (default about 1 MiB).
    version : {'0.5', '0.4'}
        NGFF version.
    levels : int
        Resolution levels; level ``i`` is downsampled by ``2**i`` in y and x
        (nearest voxel).
    name : str, optional
        Image name in the metadata (default: the volume's name, else ``'image'``).
    """
    attrs = dict(volume.attrs)
    arrays, factors = _make_ome(path, volume.shape, volume.dtype, volume.dims, attrs, chunks, version,
                                name or (volume.name if isinstance(volume.name, str) else None), levels)
    for arr, fac in zip(arrays, factors, strict=True):
        level = volume[tuple(slice(None, None, f) for f in fac)] if any(f > 1 for f in fac) else volume
        copy_blocks(arr, level)


FORMAT = Format(
    "zarr",
    (".zarr",),
    read_zarr,
    None,  # derived: create_zarr, then copy block by block
    "Zarr v3 array (reads v2/v3 arrays, groups with key=, OME-Zarr level 0)",
    create=create_zarr,
    open_region=open_region_zarr,
)

OME_FORMAT = Format(
    "ome-zarr",
    (".ome.zarr",),
    read_zarr,
    write_ome_zarr,
    "OME-Zarr image (NGFF 0.5/0.4; reads level 0 with its voxel size)",
    create=create_ome_zarr,
    open_region=open_region_zarr,
    ndims=(2, 5),
)

FORMATS = (FORMAT, OME_FORMAT)
