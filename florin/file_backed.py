"""Whether a volume's voxels are still in a file: :func:`is_lazy` and the checks under it.

These are the parts of :mod:`florin.io.lazy` that tiling needs (a file-backed
volume is tiled into references a worker reads itself). They live outside the
:mod:`florin.io` package, which imports :mod:`florin.tiling`, so tiling imports
them at the top; :mod:`florin.io.lazy` re-exports them.
"""

from __future__ import annotations

import mmap

import numpy as np
import xarray as xr
from xarray.backends import BackendArray

__all__ = ["FileBackedArray", "is_lazy", "memmap_source", "wrappers"]


class FileBackedArray:
    """Base of the arrays florin writes into a file region by region (:class:`~florin.io.ondisk_array.OnDiskArray`).

    A volume over one is lazy (:func:`is_lazy`) and reads from its ``path``
    (:func:`florin.io.lazy.sources`); the subclass lives with the writers, which import this module.
    """

    __slots__ = ()


def wrappers(data, depth=16):
    """``data`` and the arrays xarray's indexing wrappers hold under it, outermost first.

    xarray layers its array adapters (``CopyOnWriteArray(MemoryCachedArray(
    LazilyIndexedArray(BackendArray)))``), each keeping the next as ``.array``.
    This is the one walk down that chain: it stops at a numpy array, at
    ``None`` and after ``depth`` levels.

    Examples
    --------
    >>> import numpy as np
    >>> from xarray.core import indexing
    >>> inner = np.zeros(3)
    >>> [type(a).__name__ for a in wrappers(indexing.LazilyIndexedArray(inner))]
    ['LazilyIndexedArray', 'NumpyIndexingAdapter', 'ndarray']
    """
    for _ in range(depth):
        if data is None:
            return
        yield data
        if isinstance(data, np.ndarray):
            return
        data = getattr(data, "array", None)


def _backend_arrays(data):
    """The BackendArrays (at most one per wrapper chain) under xarray's indexing wrappers."""
    return [d for d in wrappers(data) if isinstance(d, BackendArray)][:1]


def _is_dask(data) -> bool:
    return type(data).__module__.split(".")[0] == "dask"


def memmap_source(volume):
    """``(filename, file offset, strides)`` of a volume whose data is a read-only memory map, else None.

    Such a volume is file-backed like a lazily read one: a worker can map the
    same file and view its own tile in it (a writable map is not: its pages
    may still change).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from florin.volume import as_volume
    >>> path = os.path.join(tempfile.mkdtemp(), "m.npy")
    >>> np.save(path, np.arange(6, dtype=np.uint8))
    >>> memmap_source(as_volume(np.load(path, mmap_mode="r")[2:]))[1:]
    (130, (1,))
    >>> memmap_source(as_volume(np.zeros(3))) is None
    True
    """
    data = getattr(getattr(volume, "variable", None), "_data", None)
    if not isinstance(data, np.ndarray):
        return None
    # The memmap that numpy created over the mmap: its first byte is at file offset ``mm.offset``.
    mm = data
    while isinstance(mm, np.ndarray) and not isinstance(mm.base, mmap.mmap):
        mm = mm.base
    if not isinstance(mm, np.memmap) or mm.mode != "r" or not mm.filename:
        return None
    start = data.__array_interface__["data"][0] - mm.__array_interface__["data"][0]
    return mm.filename, int(mm.offset) + int(start), tuple(data.strides)


def is_lazy(volume) -> bool:
    """Whether ``volume``'s voxels are still in a file (or a dask graph), not in memory.

    True for volumes read by florin's lazy readers (and slices of them), for
    volumes opened lazily by xarray's own backends, for dask-backed ones, for
    on-disk outputs (:class:`florin.io.ondisk_array.OnDiskArray`) and for read-only
    memory-mapped numpy data (``np.load(..., mmap_mode='r')``, see
    :func:`memmap_source`). Such a volume pickles as a file reference: a
    worker given it (or a tile cut from it) reads only what it indexes, and
    writers copy it block by block.

    Examples
    --------
    >>> import numpy as np
    >>> from florin.volume import as_volume
    >>> is_lazy(as_volume(np.zeros((2, 2))))
    False
    """
    if not isinstance(volume, xr.DataArray):
        return False
    data = volume.variable._data
    if _is_dask(data):
        return True
    if isinstance(data, FileBackedArray):
        return True
    return bool(_backend_arrays(data)) or memmap_source(volume) is not None
