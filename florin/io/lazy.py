"""Lazy, file-backed volumes: reading a file does not read its voxels.

A lazy volume is an ``xarray.DataArray`` whose data is an
``xarray.core.indexing.LazilyIndexedArray`` over a :class:`FileArray`, the
same layering xarray's own backends use. Slicing it (``vol[10:20]``, cutting
a tile) composes the slices without reading; ``.values`` or ``np.asarray``
reads exactly the selected region from the file.

A :class:`FileArray` is a *reference*: the path, the format, the array inside
the file (``key``) and a reader function. It pickles as those few values, never
as data, so executors can ship a lazy volume (or a tile cut from it) to worker
processes or MPI ranks, which then open the file themselves and read only their
own tile. Open file handles are cached per process (and reopened when the file
changes); memory-mapped formats (NPY, uncompressed TIFF) map the file for each
read only, so touched pages never accumulate in the resident set.

Use :func:`is_lazy` to ask whether a volume is file-backed and
:func:`sources` for the files it reads.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections import OrderedDict

import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from florin.errors import FlorinError, InputFileError
from florin.file_backed import FileBackedArray, _backend_arrays, is_lazy, memmap_source, wrappers
from florin.volume import as_volume, default_dims

__all__ = [
    "FileArray", "FileBackedArray", "cached_handle", "chunks_of", "close_handles", "is_lazy", "lazy_volume",
    "memmap_source", "read_raw", "sources", "wrappers",
]


class FileArray(BackendArray):
    """A reference to an array stored in a file, read region by region.

    Parameters
    ----------
    path : str
        The file (or directory, for Zarr stores and slice stacks).
    format : str
        Name of the florin format (for messages and :func:`sources`).
    key : str or None
        Which array inside the file (HDF5 dataset, Zarr array, NetCDF variable).
    shape : tuple of int
        Shape of the stored array.
    dtype : numpy dtype
        Dtype of what reads return.
    reader : callable
        Module-level function ``reader(path, key, index, **options) -> ndarray``
        called with a tuple of ints and slices (positive steps). It pickles by
        name, so worker processes import the format module themselves.
    options : dict, optional
        Extra keyword arguments of ``reader`` (small values only: they are
        pickled with the reference).
    view : str, optional
        Dtype to ``view`` the stored values as after reading (``'bool'`` for
        masks stored as ``uint8``).
    sink : object, optional
        The :class:`florin.io.ondisk_array.OnDiskArray` this array is being written
        through (set for tiles already written into an on-disk output).
    chunks : tuple of int, optional
        The stored array's chunk shape (HDF5's ``dataset.chunks``, Zarr's
        ``.chunks``); None when it is stored contiguously. The planner aligns
        the blocks of a tiled run to it (:func:`chunks_of`).
    """

    __slots__ = ("chunks", "dtype", "format", "key", "options", "path", "reader", "shape", "sink", "view")

    def __init__(self, path, format, key, shape, dtype, reader, options=None, *, view=None, sink=None, chunks=None):
        self.path = os.path.normpath(os.fspath(path))
        self.format = format
        self.key = key
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(view if view is not None else dtype)
        self.reader = reader
        self.options = dict(options or {})
        self.view = view
        self.sink = sink
        self.chunks = tuple(int(c) for c in chunks) if chunks is not None else None

    def __getitem__(self, key):
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.BASIC, self._read)

    def _read(self, index):
        try:
            data = np.asarray(self.reader(self.path, self.key, tuple(index), **self.options))
        except FlorinError:
            raise
        except Exception as exc:
            where = f" ({self.key})" if self.key else ""
            raise InputFileError(
                f"cannot read {self.path!r}{where} as {self.format}: {type(exc).__name__}: {exc} "
                "(the file may be truncated, corrupt or replaced)"
            ) from exc
        if self.view is not None and data.dtype != self.dtype:
            data = data.view(self.dtype) if data.dtype.itemsize == self.dtype.itemsize else data.astype(self.dtype)
        return data

    def __reduce__(self):
        return (
            _rebuild,
            (self.path, self.format, self.key, self.shape, self.dtype.str if self.view is None else None,
             self.reader, self.options, self.view, self.sink, self.chunks),
        )

    def __repr__(self):
        key = f", key={self.key!r}" if self.key else ""
        return f"FileArray({self.path!r}, format={self.format!r}{key}, shape={self.shape}, dtype={self.dtype})"


def _rebuild(path, format, key, shape, dtype, reader, options, view, sink, chunks=None):
    return FileArray(path, format, key, shape, dtype, reader, options, view=view, sink=sink, chunks=chunks)


def lazy_volume(array: FileArray, *, dims=None, coords=None, spacing=None, units=None, attrs=None, name=None):
    """Wrap a :class:`FileArray` as a lazy florin volume.

    Parameters
    ----------
    array : FileArray
        The file reference.
    dims : sequence of str, optional
        Dim names (default: florin's, see :func:`florin.volume.default_dims`).
    coords : dict, optional
        Coordinates (e.g. from a NetCDF file).
    spacing, units, attrs, name
        As for :func:`florin.as_volume`.

    Returns
    -------
    xarray.DataArray
        Lazy: slicing composes, ``.values`` reads only the selection.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.npy")
    >>> np.save(path, np.arange(12, dtype=np.uint8).reshape(3, 4))
    >>> fa = FileArray(path, "npy", None, (3, 4), np.uint8, read_raw,
    ...                {"offset": 128, "shape": (3, 4), "dtype": "|u1"})
    >>> vol = lazy_volume(fa)
    >>> is_lazy(vol), vol[1:, 2].values.tolist()
    (True, [6, 10])
    """
    dims = tuple(dims) if dims is not None else default_dims(len(array.shape))
    var = xr.Variable(dims, indexing.LazilyIndexedArray(array))
    vol = xr.DataArray(var, coords=coords, name=name)
    return as_volume(vol, spacing=spacing, units=units, attrs=attrs)


def chunks_of(volume):
    """The chunk shape of the file a lazy volume reads, per axis of the volume; None when it has none.

    Only a volume that is the stored array as it is (same shape: not a
    slice or a transpose of it) answers with the file's chunks.

    Examples
    --------
    >>> import numpy as np
    >>> chunks_of(np.zeros(3)) is None
    True
    """
    if not isinstance(volume, xr.DataArray):
        return None
    for arr in _backend_arrays(volume.variable._data):
        chunks = getattr(arr, "chunks", None)
        if isinstance(arr, FileArray) and chunks is not None and arr.shape == tuple(volume.shape):
            return chunks
    return None


def sources(volume) -> list:
    """Paths of the files a lazy volume reads from (empty for in-memory volumes).

    Examples
    --------
    >>> import numpy as np
    >>> sources(np.zeros(3))
    []
    """
    if not isinstance(volume, xr.DataArray):
        return []
    data = volume.variable._data
    if isinstance(data, FileBackedArray):
        return [data.path]
    out = []
    for arr in _backend_arrays(data):
        path = getattr(arr, "path", None)
        if path is None:  # xarray's own backends keep a file manager
            manager = getattr(arr, "datastore", None)
            manager = getattr(manager, "_manager", None)
            args = getattr(manager, "_args", None)
            path = args[0] if args else None
        if path is not None:
            out.append(os.fspath(path))
    return out


# -- per-process cache of open file handles -------------------------------------------------
_MAX_HANDLES = 32
_handles: OrderedDict = OrderedDict()
_handles_lock = threading.Lock()


def _forget_after_fork():
    # Handles inherited from the parent belong to its library state: never use or close them here.
    global _handles_lock
    _handles.clear()
    _handles_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _stamp(path):
    st = os.stat(path)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def cached_handle(opener, path, *args, closer=None):
    """An open handle ``opener(path, *args)``, cached per process.

    The handle is reopened when the file changes on disk (it was replaced by
    an atomic write) and in a new process (after ``fork``, or in an MPI rank).
    ``closer(handle)`` closes evicted handles (default: ``handle.close()``).
    """
    path = os.fspath(path)
    stamp = _stamp(path)
    key = (os.getpid(), opener, path, args)
    with _handles_lock:
        entry = _handles.get(key)
        if entry is not None and entry[0] == stamp:
            _handles.move_to_end(key)
            return entry[1]
    handle = opener(path, *args)
    with _handles_lock:
        entry = _handles.get(key)
        if entry is not None and entry[0] == stamp:  # another thread opened it meanwhile: use that one
            _handles.move_to_end(key)
            evicted, handle = [(stamp, handle, closer)], entry[1]
        else:
            old = _handles.pop(key, None)
            _handles[key] = (stamp, handle, closer)
            evicted = [old] if old is not None else []
        while len(_handles) > _MAX_HANDLES:
            evicted.append(_handles.popitem(last=False)[1])
    for entry in evicted:
        _close(entry)
    return handle


def _close(entry):
    _, handle, closer = entry
    try:
        (closer or (lambda h: h.close()))(handle)
    except Exception:
        pass


def close_handles(path=None) -> None:
    """Close cached handles (of ``path`` only, when given) in this process."""
    path = os.fspath(path) if path is not None else None
    with _handles_lock:
        keys = [k for k in _handles if path is None or k[2] == path]
        entries = [_handles.pop(k) for k in keys]
    for entry in entries:
        if entry is not None and len(entry) == 3:
            _close(entry)


# -- memory-mapped raw arrays (NPY, uncompressed TIFF) ---------------------------------------
def read_raw(path, key, index, *, offset, shape, dtype, order="C"):
    """Read ``index`` of a raw array stored at byte ``offset`` of ``path``.

    The file is memory-mapped for this read only and unmapped afterwards, so a
    long tiled run does not keep every page it touched resident.
    """
    dtype = np.dtype(dtype)
    shape = tuple(shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if offset + nbytes > size:
            raise InputFileError(
                f"{os.fspath(path)!r} is truncated: {size} bytes, but its header describes "
                f"{offset + nbytes} bytes (shape {shape}, {dtype})"
            )
        if nbytes == 0:
            return np.empty(shape, dtype)[index]
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        mm = mmap.mmap(f.fileno(), offset + nbytes - start, access=mmap.ACCESS_READ, offset=start)
    try:
        full = np.ndarray(shape, dtype=dtype, buffer=mm, offset=offset - start, order=order)
        out = np.array(full[index], copy=True)
        del full
    finally:
        mm.close()
    return out
