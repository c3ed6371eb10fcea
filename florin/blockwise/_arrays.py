"""Array-likes that cross process boundaries as references, not copies.

The blockwise algorithms hand module-level functions (bound with
:func:`functools.partial`) to a ``map``. Under ``builtins.map`` or a thread
pool nothing is pickled and the arrays are used as given. A process pool (or
MPI, or Dask) pickles the function, its arrays included, for every task: a
``numpy.memmap`` would arrive as a *copy* of its data (writes into it are
lost), an h5py dataset does not pickle at all, and an in-memory array is
copied into every task.

:class:`Source` (read side) and :class:`Sink` (write side) wrap an array and
decide how it pickles:

* a ``numpy.memmap`` pickles as its file, offset, shape and strides and is
  mapped again in the worker (read-only for a source, ``r+`` for a sink whose
  map is writable), so workers read and write the file themselves;
* an h5py dataset (source) pickles as its file and dataset name and is read
  through florin's HDF5 reader (read-only, without file locking);
* a :class:`florin.io.ondisk_array.OnDiskArray` (from :func:`florin.io.create`) and
  lazy florin volumes already pickle as references;
* anything else written to (an in-memory array, an h5py dataset, a zarr
  array) makes the sink pickle as a *deferred* sink: the worker returns the
  block's values and the parent writes them (:meth:`Sink.apply`). Nothing is
  lost and nothing is written concurrently into a file that cannot take it.
"""

from __future__ import annotations

import mmap
import os

import h5py
import numpy as np

from florin.io.lazy import cached_handle
from florin.io.ondisk_array import OnDiskArray

__all__ = ["Sink", "Source", "is_shared_memmap", "read_block"]


def read_block(arr, block) -> np.ndarray:
    """``arr[block]`` as a numpy array (reads only that region of lazy arrays)."""
    return np.asarray(arr[block])


def _memmap_layout(arr):
    """``(filename, file offset of arr[0, ..., 0], strides)`` of a file-backed memmap, or None."""
    if not isinstance(arr, np.memmap):
        return None
    mm = getattr(arr, "_mmap", None)
    filename = getattr(arr, "filename", None)
    if mm is None or filename is None or any(s < 0 for s in arr.strides):
        return None
    try:
        base = np.frombuffer(mm, np.uint8).ctypes.data
    except (TypeError, ValueError):  # closed map
        return None
    start = int(arr.offset) - int(arr.offset) % mmap.ALLOCATIONGRANULARITY
    return os.fspath(filename), start + (arr.ctypes.data - base), tuple(arr.strides)


def is_shared_memmap(arr, *, writable=False) -> bool:
    """Whether ``arr`` is a memory map another process can map again (``writable``: and write through)."""
    if _memmap_layout(arr) is None:
        return False
    return not writable or (arr.mode in ("r+", "w+") and arr.flags.writeable)


def _remap(filename, offset, shape, strides, dtype, mode):
    """Map ``filename`` again and view the same region (see :func:`_memmap_layout`)."""
    dtype = np.dtype(dtype)
    shape = tuple(shape)
    if not shape or min(shape) == 0:
        return np.zeros(shape, dtype)
    extent = offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) + dtype.itemsize
    raw = np.memmap(filename, dtype=np.uint8, mode=mode, shape=(extent,))
    return np.ndarray(shape, dtype, buffer=raw, offset=offset, strides=strides)


class _H5Dataset:
    """An h5py dataset by file name and dataset name, read through florin's cached HDF5 handles."""

    def __init__(self, filename, name, shape, dtype):
        self.filename, self.name = filename, name
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)

    def __getitem__(self, index):
        return cached_handle(_open_h5, self.filename)[self.name][index]


def _open_h5(path):
    """Open an HDF5 file read-only; as the parent did (file locking on) when a fork inherited its open file."""
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        if "locking" not in str(exc):
            raise
        return h5py.File(path, "r")


def _h5_reference(arr):
    if isinstance(arr, h5py.Dataset):
        return _H5Dataset(os.fspath(arr.file.filename), arr.name, arr.shape, arr.dtype)
    return None


class Source:
    """A read-only array-like that pickles as a reference when it can.

    ``source[block]`` reads a block as a numpy array.
    """

    __slots__ = ("arr",)

    def __init__(self, arr):
        arr = arr.arr if isinstance(arr, Source) else arr
        data = getattr(getattr(arr, "variable", None), "_data", None)
        if isinstance(data, np.ndarray):
            arr = data  # a DataArray over a (memory-mapped) array: slice the array, pickle it as a reference
        self.arr = arr

    @property
    def shape(self):
        return tuple(int(n) for n in self.arr.shape)

    @property
    def dtype(self):
        return np.dtype(self.arr.dtype)

    def __getitem__(self, block):
        return read_block(self.arr, block)

    def __reduce__(self):
        layout = _memmap_layout(self.arr)
        if layout is not None:
            filename, offset, strides = layout
            return (_source_of_memmap, (filename, offset, self.arr.shape, strides, self.arr.dtype.str))
        h5 = _h5_reference(self.arr)
        if h5 is not None:
            return (Source, (h5,))
        return (Source, (self.arr,))


def _source_of_memmap(filename, offset, shape, strides, dtype):
    return Source(_remap(filename, offset, shape, strides, dtype, "r"))


class Sink:
    """A writable array-like whose writes reach the parent's array from any process.

    In the worker, :meth:`put` writes a block and returns None, or, when this
    sink was pickled from an array other processes cannot write (see the
    module docstring), returns ``(block, values)`` for the parent to write
    with :meth:`apply`.
    """

    __slots__ = ("arr", "dtype", "shape")

    def __init__(self, arr, shape=None, dtype=None):
        self.arr = arr
        self.shape = tuple(int(n) for n in (arr.shape if arr is not None else shape))
        self.dtype = np.dtype(arr.dtype if arr is not None else dtype)

    def put(self, block, values):
        """Write ``values`` into ``block``; None, or the write left to the parent."""
        if self.arr is None:
            return block, np.asarray(values)
        self.arr[block] = values
        return None

    def writable(self, block):
        """A writable view of ``block`` to write in place (an array's, a memory map's), or None (use :meth:`put`)."""
        arr = self.arr
        if not isinstance(arr, np.ndarray) or not arr.flags.writeable:
            return None
        return arr[block]

    def apply(self, pending) -> None:
        """In the parent: perform a write a worker left to it (``pending`` from :meth:`put`)."""
        if pending is not None:
            block, values = pending
            self.arr[block] = values

    def __reduce__(self):
        if isinstance(self.arr, OnDiskArray):
            return (Sink, (self.arr,))
        layout = _memmap_layout(self.arr)
        if layout is not None and is_shared_memmap(self.arr, writable=True):
            filename, offset, strides = layout
            return (_sink_of_memmap, (filename, offset, self.arr.shape, strides, self.arr.dtype.str))
        return (Sink, (None, self.shape, self.dtype.str))  # deferred: the worker returns its blocks


def _sink_of_memmap(filename, offset, shape, strides, dtype):
    return Sink(_remap(filename, offset, shape, strides, dtype, "r+"))
