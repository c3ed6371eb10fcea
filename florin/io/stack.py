"""Directories of 2-D slices (TIFF or PNG), in natural sort order.

Reading a directory takes every ``.tif``/``.tiff``/``.png`` file in it (hidden
files excluded), sorted naturally (``slice_2`` before ``slice_10``), as the z
planes of a volume. Reads are lazy: a tile reads only the slice files it covers.
All slices must be 2-D (colour samples allowed) with the same shape and dtype,
checked from their headers when the folder is read.

Writing makes a directory with one file per z plane (``slice_00000.tif``...;
``suffix='.png'`` for PNG, which holds bool, uint8 and uint16 only) and a
``.florin.json`` file keeping dims, spacing and attrs. A directory is chosen
by this format when the path is an existing directory or ends with ``/``, or
with ``format='stack'``.
"""

from __future__ import annotations

import os
import re

import numpy as np
import tifffile
from PIL import Image
from xarray.core import indexing

from florin.errors import FormatError, InputFileError, ParameterError
from florin.io import Format
from florin.io._reader import stored_volume, volume_of
from florin.io.lazy import FileArray
from florin.io.metadata import from_json, to_json
from florin.io.tiff import read_tiff
from florin.volume import as_volume

__all__ = ["FORMAT", "natural_key"]

_SUFFIXES = (".tif", ".tiff", ".png")
_META = ".florin.json"
_PNG_DTYPES = (np.dtype(bool), np.dtype(np.uint8), np.dtype(np.uint16))


def natural_key(name):
    """Sort key ordering embedded numbers by value (``'s2' < 's10'``).

    Examples
    --------
    >>> sorted(["s10.tif", "s2.tif", "s1.tif"], key=natural_key)
    ['s1.tif', 's2.tif', 's10.tif']
    """
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", name) if part]


def _slices(path):
    names = [n for n in os.listdir(path) if not n.startswith(".") and n.lower().endswith(_SUFFIXES)
             and os.path.isfile(os.path.join(path, n))]
    return sorted(names, key=natural_key)


def _read_slice(path):
    if path.lower().endswith(".png"):
        with Image.open(path) as im:
            data = np.asarray(im)
            if im.mode == "I;16B":
                data = data.astype(np.uint16)
        return data
    return tifffile.imread(path)


def _probe(path):
    """Shape, dtype and whether the last axis is colour samples, of one slice without reading its pixels."""
    if path.lower().endswith(".png"):
        with Image.open(path) as im:
            mode, size = im.mode, im.size
        dtypes = {"1": bool, "L": np.uint8, "P": np.uint8, "I;16": np.uint16, "I;16B": np.uint16, "I": np.int32,
                  "F": np.float32, "LA": np.uint8, "RGB": np.uint8, "RGBA": np.uint8}
        samples = {"LA": 2, "RGB": 3, "RGBA": 4}.get(mode)
        shape = (size[1], size[0]) + ((samples,) if samples else ())
        return shape, np.dtype(dtypes.get(mode, np.uint8)), bool(samples)
    with tifffile.TiffFile(path) as tif:
        ser = tif.series[0]
        return tuple(ser.shape), np.dtype(ser.dtype), ser.axes.endswith("S")


def _check_slices(path, files):
    """The shape and dtype every slice shares, from their headers; an :class:`InputFileError` if they differ.

    A slice is 2-D (``(y, x)``, or ``(y, x, samples)`` for colour). A folder of
    3-D files is not a stack of slices: read each file by itself.
    """
    first = None
    for name in files:
        file = os.path.join(path, name)
        try:
            shape, dtype, colour = _probe(file)
        except Exception as exc:
            raise InputFileError(f"cannot read slice {file!r}: {type(exc).__name__}: {exc}") from exc
        if first is None:
            first = (name, shape, dtype)
            if len(shape) != 2 + colour:
                raise InputFileError(
                    f"{file!r} has shape {shape}: a folder is read as a stack of 2-D slices; "
                    "read a folder of volume files one file at a time"
                )
        elif (shape, dtype) != first[1:]:
            raise InputFileError(
                f"slice {file!r} is {shape} {dtype} but {first[0]!r} is {first[1]} {first[2]}; "
                "all slices of a stack must have the same shape and dtype"
            )
    return first[1], first[2]


def read_region(path, key, index, *, files, shape, dtype):
    """Read ``index`` of a slice stack: only the files of the selected planes."""
    planes = np.arange(len(files))[index[0]]
    inner = index[1:]
    out = []
    for n in np.atleast_1d(planes):
        file = os.path.join(path, files[int(n)])
        try:
            data = _read_slice(file)
        except Exception as exc:
            raise InputFileError(f"cannot read slice {file!r}: {type(exc).__name__}: {exc}") from exc
        if tuple(data.shape) != tuple(shape[1:]):
            raise InputFileError(
                f"slice {file!r} has shape {data.shape}, but the stack's slices are {tuple(shape[1:])}; "
                "all slices must have the same shape"
            )
        out.append(np.asarray(data, dtype=dtype)[inner])
    if np.ndim(planes) == 0:
        return out[0]
    if not out:
        return np.empty((0,) + np.empty(shape[1:], dtype)[inner].shape, dtype)
    return np.stack(out)


def read_stack(path, *, lazy=True):
    """Read a directory of 2-D slices as a volume (z first)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise InputFileError(f"{path!r} is not a directory; a slice stack is a directory of .tif or .png files")
    files = _slices(path)
    if not files:
        raise InputFileError(f"directory {path!r} holds no slices ({', '.join(_SUFFIXES)} files)")
    shape2, dtype = _check_slices(path, files)
    shape = (len(files), *shape2)
    meta = None
    if os.path.exists(os.path.join(path, _META)):
        with open(os.path.join(path, _META)) as f:
            meta = from_json(f.read())
    view = "bool" if meta is not None and meta.get("dtype") == "bool" and dtype != np.dtype(bool) else None
    array = FileArray(path, "stack", None, shape, dtype, read_region,
                      {"files": tuple(files), "shape": shape, "dtype": dtype.str}, view=view)
    data = array if lazy else np.asarray(array[_all(len(shape))])
    vol = stored_volume(data, meta, planes="stack_plane")  # planes: a 2-D volume is a stack of one slice
    if vol is not None:
        return vol
    vol = volume_of(data, dims=("z", "y", "x") if len(shape) == 3 else ("z", "y", "x", "c"))
    if files[0].lower().endswith((".tif", ".tiff")):
        first = read_tiff(os.path.join(path, files[0]))
        sp = dict(zip(first.dims, first.attrs.get("spacing", ()), strict=False))
        if sp:
            vol = as_volume(vol, spacing=tuple(sp.get(d, 1.0) for d in vol.dims), units=first.attrs.get("units"))
    return vol


def _all(ndim):
    return indexing.BasicIndexer((slice(None),) * ndim)


def write_stack(path, volume, *, suffix=".tif", compression=None, prefix="slice_"):
    """Write one file per z plane into the directory ``path``.

    Parameters
    ----------
    suffix : {'.tif', '.tiff', '.png'}
        File type of the slices.
    compression : str, optional
        TIFF compression (e.g. ``'zlib'``).
    prefix : str
        File name before the zero-padded plane number.
    """
    suffix = suffix.lower()
    if suffix not in _SUFFIXES:
        raise ParameterError(f"suffix must be one of {', '.join(_SUFFIXES)}, got {suffix!r}")
    if volume.ndim not in (2, 3):
        raise FormatError(f"a slice stack holds 2-D or 3-D volumes, this one is {volume.ndim}-D {volume.dims}")
    dtype = np.dtype(volume.dtype)
    if suffix == ".png" and dtype not in _PNG_DTYPES:
        raise FormatError(f"PNG slices hold bool, uint8 or uint16, not {dtype}; write .tif slices (suffix='.tif')")
    os.makedirs(path)
    planes = volume if volume.ndim == 3 else volume.expand_dims("z")
    width = max(5, len(str(planes.shape[0] - 1)))
    with open(os.path.join(path, _META), "w") as f:
        f.write(to_json(volume))
    for i in range(planes.shape[0]):
        data = np.asarray(planes[i])
        name = os.path.join(path, f"{prefix}{i:0{width}d}{suffix}")
        if suffix == ".png":
            Image.fromarray(data).save(name)
        else:
            tifffile.imwrite(name, data.view(np.uint8) if data.dtype == bool else data,
                             compression=compression, photometric="minisblack")


FORMAT = Format(
    "stack",
    (),
    read_stack,
    write_stack,
    "directory of 2-D TIFF/PNG slices (natural sort order; one file per z plane)",
    ndims=(2, 3),
)
