"""HDF5 through h5py: lazy reads, chunked and compressed writes, region writes.

``key=`` names the dataset (``'data'``, ``'/group/volume'``); without it the
reader takes the file's only dataset, or lists the ones present. Reads are lazy:
each worker opens the file itself (read-only, without HDF5 file locking, so a
file on a shared file system can be read by many processes) and reads only
the hyperslab of its tile.

Metadata: florin's dims, spacing, units and attrs are stored as JSON in the
dataset attribute ``florin`` (exact round trip) and also as plain attributes
other tools read (``dims``, ``spacing``, ``units``, ``element_size_um`` as
used by Fiji and ilastik). Files from other tools get their spacing from
``element_size_um``, ``spacing`` or ``resolution`` attributes when present.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile

import h5py
import numpy as np

from florin._signals import deferred
from florin.errors import InputFileError, ParameterError
from florin.io import Format
from florin.io._blocks import default_chunks
from florin.io._reader import pick_key, stored_volume, volume_of
from florin.io.lazy import FileArray, cached_handle
from florin.io.metadata import from_json, meta_json, plain
from florin.volume import as_volume

__all__ = ["FORMAT"]

_RESERVED = {"florin", "dims", "spacing", "units", "element_size_um", "DIMENSION_LABELS", "CLASS", "REFERENCE_LIST"}


def _open_read(path):
    return h5py.File(path, "r", locking=False)


def _datasets(f):
    names = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.shape is not None:
            names.append("/" + name)

    f.visititems(visit)
    return names


def _pick(path, f, key):
    def problem(key):
        obj = f.get(key)
        if isinstance(obj, h5py.Dataset):
            return None
        return "a group" if isinstance(obj, h5py.Group) else "no dataset"

    return f[pick_key(path, key, _datasets(f), noun="dataset", problem=problem)].name


def read_region(path, key, index):
    """Read a hyperslab of dataset ``key`` (the lazy reader; handles cached per process)."""
    return cached_handle(_open_read, path)[key][index]


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def read_hdf5(path, *, key=None, lazy=True):
    """Read a dataset of an HDF5 file, lazily unless ``lazy=False``."""
    with _open_read(path) as f:
        key = _pick(path, f, key)
        ds = f[key]
        shape, dtype, chunks = ds.shape, ds.dtype, ds.chunks
        raw = dict(ds.attrs)
        if dtype.kind not in "biufc":
            raise InputFileError(f"dataset {key!r} of {os.fspath(path)!r} holds {dtype}, not numbers")
        data = None if lazy else ds[()]
    data = FileArray(path, "hdf5", key, shape, dtype, read_region, chunks=chunks) if lazy else data
    vol = stored_volume(data, from_json(_text(raw.get("florin"))))
    if vol is not None:
        return vol
    dims = [_text(d) for d in raw.get("dims", raw.get("DIMENSION_LABELS", []))]
    dims = dims if len(dims) == len(shape) and all(isinstance(d, str) and d for d in dims) else None
    spacing = None
    for name in ("spacing", "element_size_um", "resolution"):
        value = raw.get(name)
        if value is not None and np.size(value) == len(shape):
            spacing = tuple(float(v) for v in np.ravel(value))
            break
    units = _text(raw.get("units")) or ("um" if "element_size_um" in raw else None)
    attrs = {}
    for name, value in raw.items():
        if name in _RESERVED:
            continue
        value = plain(_text(value))
        if isinstance(value, list):
            value = [_text(v) for v in value]
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        attrs[name] = value
    vol = volume_of(data, dims=dims, attrs=attrs)
    if spacing is not None and all(s > 0 for s in spacing):
        vol = as_volume(vol, spacing=spacing, units=units)
    elif units:
        vol.attrs["units"] = units
    return vol


def _write_attrs(ds, dims, dtype, attrs):
    ds.attrs["florin"] = meta_json(dims, dtype, attrs)
    ds.attrs["dims"] = [str(d) for d in dims]
    spacing = attrs.get("spacing")
    if spacing is not None and len(spacing) == len(dims):
        ds.attrs["spacing"] = np.asarray(spacing, dtype=np.float64)
        if attrs.get("units", "um") == "um" and tuple(dims[-3:]) == ("z", "y", "x"):
            ds.attrs["element_size_um"] = np.asarray(spacing[-3:], dtype=np.float64)
    if "units" in attrs:
        ds.attrs["units"] = str(attrs["units"])
    for name, value in attrs.items():
        if name in _RESERVED or name in ("spacing", "units"):
            continue
        value = plain(value)
        if isinstance(value, str | int | float | bool) or (
            isinstance(value, list) and value and all(isinstance(v, int | float) for v in value)
        ):
            ds.attrs[name] = value



# -- writing safely -------------------------------------------------------------------------------
# HDF5 writes cached chunks and metadata when a file is closed. If that write fails (a full disk),
# the library is left holding a dataset it can neither close nor forget, and the process crashes
# when h5py releases it (a segfault at the latest at exit: h5py issue #914, #2160). So florin's
# writers flush before closing, and when anything fails while a file is open for writing they
# point HDF5's file descriptor at a scratch file in memory before closing it: the close then
# succeeds, and the file, which is a temporary output, is removed by the caller.

def _discard_and_close(f) -> None:
    """Close ``f`` without writing to its file any more (its contents are being thrown away)."""
    with contextlib.suppress(Exception):
        fd = f.id.get_vfd_handle()
        if isinstance(fd, int) and fd >= 0:
            if hasattr(os, "memfd_create"):
                scratch = os.memfd_create("florin-discarded-hdf5")
            else:  # pragma: no cover - not Linux

                with tempfile.TemporaryFile() as tmp:
                    scratch = os.dup(tmp.fileno())
            os.dup2(scratch, fd)
            os.close(scratch)
    with contextlib.suppress(Exception):
        f.close()


_ERRNO = re.compile(r"errno = (\d+), error message = '([^']*)'")


def _os_error(exc):
    """HDF5's multi-line write error as the ``OSError`` it reports (``[Errno 28] No space left on device``)."""
    found = _ERRNO.search(str(exc))
    if found is None:
        return exc
    code = int(found.group(1))
    return OSError(code, os.strerror(code) if code in errno.errorcode else found.group(2))


@contextlib.contextmanager
def _writing(path, mode):
    """``h5py.File(path, mode)`` for writing, flushed before it closes and closed safely on any failure."""
    f = h5py.File(path, mode)
    try:
        yield f
        f.flush()  # a full disk fails here, while the file can still be closed
    except BaseException as exc:
        with deferred():
            _discard_and_close(f)
        error = _os_error(exc) if isinstance(exc, Exception) else exc
        if error is exc:
            raise
        raise error from exc
    f.close()


def create_hdf5(path, shape, dtype, *, dims, attrs, key="data", chunks=None, compression="gzip",
                compression_opts=None, shuffle=None):
    """Create a chunked, compressed dataset ``key`` (zero-filled) in a new HDF5 file.

    Parameters
    ----------
    key : str
        Dataset name (default ``'data'``).
    chunks : tuple of int, optional
        Chunk shape (default: about 1 MiB, see :func:`florin.io._blocks.default_chunks`).
    compression : str or None
        ``'gzip'`` (default, level 1: fast, readable everywhere), ``'lzf'``, or None.
    compression_opts : int, optional
        Compression level for gzip (0-9).
    shuffle : bool, optional
        Byte shuffle filter (default: on for multi-byte types when compressing).
    """
    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in shape)
    if not key or not isinstance(key, str):
        raise ParameterError(f"key must be a dataset name such as 'data', got {key!r}")
    empty = len(shape) == 0 or any(n == 0 for n in shape)
    if empty:
        chunks = compression = compression_opts = shuffle = None
    else:
        chunks = tuple(chunks) if chunks is not None else default_chunks(shape, dtype.itemsize)
        chunks = tuple(max(1, min(int(c), n)) for c, n in zip(chunks, shape, strict=True))
        if compression == "gzip" and compression_opts is None:
            compression_opts = 1
        if shuffle is None:
            shuffle = compression is not None and dtype.itemsize > 1
    with _writing(path, "w") as f:
        ds = f.create_dataset(key, shape=shape, dtype=dtype, chunks=chunks, compression=compression,
                              compression_opts=compression_opts, shuffle=bool(shuffle), fillvalue=None)
        _write_attrs(ds, dims, dtype, attrs)
        name = ds.name
    return {"key": name}


@contextlib.contextmanager
def open_region_hdf5(path, *, key):
    """The dataset ``key`` of ``path``, open for writing."""
    with _writing(path, "r+") as f:
        yield f[key]


FORMAT = Format(
    "hdf5",
    (".h5", ".hdf5", ".hdf", ".he5"),
    read_hdf5,
    None,  # derived: create_hdf5, then copy block by block
    "HDF5 (h5py; key= names the dataset; lazy reads, chunked gzip writes)",
    create=create_hdf5,
    open_region=open_region_hdf5,
)
