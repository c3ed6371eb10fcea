"""In-memory volumes travel to process workers through shared memory, copied once."""

from __future__ import annotations

import contextlib
import shutil
import sys

import numpy as np
import psutil
import xarray as xr
from multiprocess import shared_memory

from florin import tilemeta

_SHARED_MIN_BYTES = 1 << 20  # smaller volumes are simply pickled with their tiles


class _SharedTile:
    """A tile of a volume copied once into shared memory: pickles as the block's name and geometry.

    ``keep`` tells the worker to keep the block mapped after its chunk: the
    parent reuses that block, its pool's, for the next maps (:meth:`_ProcessPool.take_block`).
    """

    __slots__ = ("block", "keep", "shape", "dtype", "dims", "coords", "attrs", "name", "info")

    def __init__(self, block, keep, shape, dtype, tile, info):
        self.block, self.keep, self.shape, self.dtype, self.info = block, keep, shape, dtype, info
        self.dims, self.name, self.attrs = tile.dims, tile.name, dict(tile.attrs)
        self.coords = {k: v.variable for k, v in tile.coords.items()}

    def resolve(self):
        """The tile: a read-only view of the shared volume (no copy)."""
        full = np.ndarray(self.shape, np.dtype(self.dtype), buffer=_attach_block(self.block, self.keep).buf)
        full.flags.writeable = False
        tile = xr.DataArray(full[self.info.read_slices], dims=self.dims, coords=self.coords,
                            attrs=self.attrs, name=self.name)
        return tilemeta.attach(tile, self.info)


_attached: dict = {}
_kept_names: set = set()  # blocks this worker keeps mapped between chunks (the parent reuses them)


def _attach_block(name, keep=False):
    block = _attached.get(name)
    if block is None:
        try:
            block = shared_memory.SharedMemory(name=name, track=False)  # Python >= 3.13
        except TypeError:
            # Registers the name with the parent's resource tracker, which the
            # workers share (started before the pool): a no-op, the parent
            # created and unlinks the block.
            block = shared_memory.SharedMemory(name=name)
        _attached[name] = block
    if keep:
        _kept_names.add(name)
    return block


def _forget_kept():
    """The parent replaced its kept block (it says so before any task uses the new one): unmap the old one."""
    _kept_names.clear()
    _detach_blocks()


def _detach_blocks():
    """Unmap shared volumes in a worker once no tile uses them, except the block the parent keeps."""
    for name, block in list(_attached.items()):
        if name in _kept_names:
            continue
        try:
            block.close()
        except BufferError:  # a result still views the block; try after the next chunk
            continue
        del _attached[name]


def _share_tiles(items, pool=None):
    """Put the volume of in-memory tiles into shared memory once; ``(block, refs)`` or None.

    Applies when every item is a tile viewing one C-contiguous array of the
    full volume's shape (what :func:`florin.tile` cuts from an in-memory
    volume). Workers then view their tile in the block instead of unpickling a
    copy, and the parent pickles nothing but references.
    """
    if len(items) < 2 or not all(isinstance(it, xr.DataArray) for it in items):
        return None
    first = items[0].variable._data
    base = first.base if isinstance(first, np.ndarray) else None
    if (not isinstance(base, np.ndarray) or base.dtype.hasobject or not base.flags.c_contiguous
            or base.nbytes < _SHARED_MIN_BYTES):
        return None
    infos = []
    for it in items:
        info, data = tilemeta.info_of(it), it.variable._data
        if info is None or tuple(info.full_shape) != base.shape or not isinstance(data, np.ndarray):
            return None
        expect = base[info.read_slices]
        if (data.base is not base or data.shape != expect.shape or data.strides != expect.strides
                or data.__array_interface__["data"][0] != expect.__array_interface__["data"][0]):
            return None
        infos.append(info)
    if base.nbytes > _available_memory() // 2:  # a copy must not crowd out the workers: pickle tiles instead
        return None
    kept = pool.block.size if pool is not None and pool.block is not None else 0
    if base.nbytes > kept and base.nbytes > _shared_memory_free() + kept:  # the old block is freed first
        # /dev/shm may be small (64 MiB in a default Docker container): writing past it kills the process
        return None
    block, keep = pool.take_block(base.nbytes) if pool is not None else (_new_block(base.nbytes), False)
    try:
        np.ndarray(base.shape, base.dtype, buffer=block.buf)[...] = base
        refs = [_SharedTile(block.name, keep, base.shape, base.dtype.str, it, info)
                for it, info in zip(items, infos, strict=True)]
    except BaseException:
        _give_back(block, pool)
        raise
    return block, refs


# Each pool keeps one block for its next maps: a fresh block costs a page fault
# per 4 KiB on first touch, in the parent and again in every worker, which takes
# longer than copying the volume (about 50 ms against 7 ms for 64 MiB).
_KEEP_MAX_BYTES = 1 << 30  # larger volumes get a block of their own, released after the map


def _new_block(nbytes):
    return shared_memory.SharedMemory(create=True, size=nbytes)


def _give_back(block, pool=None):
    """End a map's use of ``block``: a pool's kept block stays for the next map, any other is released."""
    if pool is None or block is not pool.block:
        _release_block(block)


def _available_memory() -> int:
    try:
        return int(psutil.virtual_memory().available)
    except Exception:
        return 0


def _shared_memory_free() -> int:
    """Bytes free where shared-memory blocks live (``/dev/shm`` on Linux); unlimited if unknown."""
    try:
        return shutil.disk_usage("/dev/shm").free
    except OSError:
        return sys.maxsize


def _release_block(block):
    with contextlib.suppress(Exception):
        block.close()
    with contextlib.suppress(Exception):
        block.unlink()
