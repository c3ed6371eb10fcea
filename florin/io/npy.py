"""NPY: lazy memory-mapped reads; dims, spacing and attrs in a ``.json`` sidecar.

Reads parse the header only; voxels are read (memory-mapped, region by
region) when indexed. Writes of a lazy volume copy it block by block into a
memory-mapped file, and ``create`` makes a file that can be written region by
region (an out-of-core join target).
"""

from __future__ import annotations

import os

import numpy as np

from florin.errors import FormatError, InputFileError
from florin.io import Format
from florin.io._blocks import copy_blocks, flushed, reserve
from florin.io._reader import stored_volume, volume_of
from florin.io.lazy import FileArray, is_lazy, read_raw
from florin.io.metadata import from_json, meta_json, to_json

__all__ = ["FORMAT"]


def _sidecar(path):
    return os.fspath(path) + ".json"


def _header(path):
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            elif version == (3, 0):  # utf-8 field names: no public header reader
                arr = np.load(path, mmap_mode="r")
                shape, fortran, dtype = arr.shape, arr.flags.f_contiguous and not arr.flags.c_contiguous, arr.dtype
                f.seek(arr.offset)
                del arr
            else:
                raise ValueError(f"unknown .npy format version {version}")
        except (ValueError, EOFError, OSError, SyntaxError) as exc:  # a damaged header, not a bug of ours
            raise InputFileError(f"{os.fspath(path)!r} is not a valid .npy file: {exc}") from None
        offset = f.tell()
    if dtype.hasobject:
        raise FormatError(f"{os.fspath(path)!r} holds Python objects; florin reads numeric .npy files only")
    return tuple(shape), fortran, dtype, offset


def read_npy(path, *, lazy=True, mmap=None):
    """Read an ``.npy`` file lazily (memory-mapped per read) unless ``lazy=False``.

    ``mmap`` is the former name of ``lazy``.
    """
    if mmap is not None:
        lazy = mmap
    shape, fortran, dtype, offset = _header(path)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = os.path.getsize(path)
    if offset + nbytes > size:
        raise InputFileError(
            f"{os.fspath(path)!r} is truncated: {size} bytes, but its header describes {offset + nbytes} "
            f"(shape {shape}, {dtype})"
        )
    array = FileArray(path, "npy", None, shape, dtype, read_raw,
                      {"offset": offset, "shape": shape, "dtype": dtype.str, "order": "F" if fortran else "C"})
    meta = None
    if os.path.exists(_sidecar(path)):
        with open(_sidecar(path)) as f:
            meta = from_json(f.read())
    if meta is not None and meta.get("dtype") == "bool" and dtype != np.dtype(bool):
        array = FileArray(array.path, "npy", None, shape, dtype, read_raw, array.options, view="bool")
    data = array if lazy else np.load(path, allow_pickle=False)
    if not lazy and meta is not None and meta.get("dtype") == "bool":
        data = data.astype(bool)
    vol = stored_volume(data, meta)
    return vol if vol is not None else volume_of(data)


def write_npy(path, volume):
    """Write an ``.npy`` file and its ``.npy.json`` metadata sidecar (block by block for lazy volumes)."""
    with open(_sidecar(path), "w") as f:
        f.write(to_json(volume))
    if is_lazy(volume):
        out = np.lib.format.open_memmap(path, mode="w+", dtype=volume.dtype, shape=tuple(volume.shape))
        reserve(path)
        copy_blocks(out, volume)
        out.flush()
        del out
        return
    with open(path, "wb") as f:
        np.save(f, np.asarray(volume), allow_pickle=False)


def create_npy(path, shape, dtype, *, dims, attrs):
    """Create a zero-filled ``.npy`` file (and sidecar) to be written region by region."""
    with open(_sidecar(path), "w") as f:
        f.write(meta_json(dims, dtype, attrs))
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(dtype), shape=tuple(shape))
    del out
    reserve(path)
    return {}


def open_region_npy(path):
    """The data of an ``.npy`` file, memory-mapped for writing."""
    return flushed(np.load(path, mmap_mode="r+", allow_pickle=False))


FORMAT = Format(
    "npy",
    (".npy",),
    read_npy,
    write_npy,
    "NumPy .npy (lazy memory-mapped reads, JSON sidecar metadata)",
    create=create_npy,
    open_region=open_region_npy,
)
