"""Copying volumes block by block, so that writing a lazy volume never loads it whole; memory-mapped outputs."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import math
import os
import sys

import numpy as np

__all__ = ["BLOCK_BYTES", "blocks", "chunk_blocks", "copy_blocks", "default_chunks", "flushed", "reserve"]

#: Size of the blocks writers copy at a time.
BLOCK_BYTES = 64 * 2**20


def blocks(shape, itemsize, max_bytes=BLOCK_BYTES):
    """Slices that cover an array of ``shape`` in C order, each at most ``max_bytes``.

    Whole trailing axes are kept together as long as they fit; the first axis
    that does not fit is split.

    Examples
    --------
    >>> [b[0] for b in blocks((10, 4, 4), 8, max_bytes=8 * 16 * 3)]
    [slice(0, 3, None), slice(3, 6, None), slice(6, 9, None), slice(9, 10, None)]
    >>> list(blocks((), 1))
    [()]
    """
    shape = tuple(int(n) for n in shape)
    if not shape:
        yield ()
        return
    if any(n == 0 for n in shape):
        yield tuple(slice(0, n) for n in shape)
        return
    # Find the outermost axis to split: the trailing axes after it must fit.
    inner = itemsize
    split = len(shape) - 1
    for axis in range(len(shape) - 1, -1, -1):
        if inner * shape[axis] > max_bytes:
            split = axis
            break
        inner *= shape[axis]
    else:
        yield tuple(slice(0, n) for n in shape)
        return
    step = max(1, max_bytes // inner)
    for outer in np.ndindex(*shape[:split]):
        for start in range(0, shape[split], step):
            stop = min(start + step, shape[split])
            yield (*(slice(i, i + 1) for i in outer), slice(start, stop), *(slice(0, n) for n in shape[split + 1 :]))


def chunk_blocks(shape, chunks, itemsize, max_bytes=BLOCK_BYTES):
    """Slices that cover ``shape`` in C order, each made of whole ``chunks`` (clipped at the edges).

    A compressed chunked file (HDF5, Zarr) written in such blocks compresses
    every chunk once; a block that cuts a chunk makes the library read the
    chunk back, decompress it and compress it again at every later write.
    From the last axis on, a block takes the whole axis while it stays within
    ``max_bytes``, else the most chunks along it that do (at least one).

    Examples
    --------
    >>> [b[0] for b in chunk_blocks((10, 4, 4), (4, 2, 2), 1, max_bytes=4 * 16)]
    [slice(0, 4, None), slice(4, 8, None), slice(8, 10, None)]
    >>> [(b[0], b[1]) for b in chunk_blocks((4, 8), (2, 2), 1, max_bytes=4)][:2]
    [(slice(0, 2, None), slice(0, 2, None)), (slice(0, 2, None), slice(2, 4, None))]
    """
    shape = tuple(int(n) for n in shape)
    if not shape or any(n == 0 for n in shape):
        yield from blocks(shape, itemsize, max_bytes)
        return
    block = [max(1, min(int(c), n)) for c, n in zip(chunks, shape, strict=True)]
    for axis in range(len(shape) - 1, -1, -1):
        others = itemsize * math.prod(block[:axis] + block[axis + 1:])
        fit = max(block[axis], (max_bytes // others) // block[axis] * block[axis])
        block[axis] = min(shape[axis], fit)
        if block[axis] < shape[axis]:
            break
    ranges = [[slice(i, min(i + b, n)) for i in range(0, n, b)] for b, n in zip(block, shape, strict=True)]
    yield from itertools.product(*ranges)


def copy_blocks(target, volume, dtype=None, max_bytes=BLOCK_BYTES) -> None:
    """``target[...] = volume`` one block at a time (reads lazy volumes block by block).

    A chunked ``target`` (its ``chunks`` attribute: h5py, Zarr) is written in
    blocks of whole chunks (:func:`chunk_blocks`).
    """
    shape = tuple(volume.shape)
    dtype = np.dtype(dtype if dtype is not None else volume.dtype)
    itemsize = max(dtype.itemsize, np.dtype(volume.dtype).itemsize)
    chunks = getattr(target, "chunks", None)
    if isinstance(chunks, tuple) and len(chunks) == len(shape) and all(isinstance(c, int) for c in chunks):
        pieces = chunk_blocks(shape, chunks, itemsize, max_bytes)
    else:
        pieces = blocks(shape, itemsize, max_bytes)
    for sl in pieces:
        part = volume[sl] if sl else volume
        target[sl if sl else ()] = np.asarray(part).astype(dtype, copy=False)


def default_chunks(shape, itemsize, target_bytes=2**20):
    """A chunk shape of about ``target_bytes`` (1 MiB) for chunked formats.

    Spatial chunks are near-cubic in 3-D and square in 2-D, never larger than
    the array.

    Examples
    --------
    >>> default_chunks((100, 1000, 1000), 2)
    (64, 64, 128)
    >>> default_chunks((5, 7), 1)
    (5, 7)
    """
    shape = tuple(max(1, int(n)) for n in shape)
    if not shape:
        return ()
    chunks = [1] * len(shape)
    # Grow the chunk axis by axis from the last one, doubling, until it is big enough.
    while True:
        grew = False
        for axis in range(len(shape) - 1, -1, -1):
            if int(np.prod(chunks)) * itemsize >= target_bytes:
                return tuple(chunks)
            if chunks[axis] < shape[axis]:
                chunks[axis] = min(shape[axis], chunks[axis] * 2)
                grew = True
        if not grew:
            return tuple(chunks)


@contextlib.contextmanager
def flushed(mm):
    """Yield the writable memory map ``mm``; flush it if the block succeeds, and unmap it either way."""
    try:
        yield mm
        mm.flush()
    finally:
        del mm


def reserve(path) -> None:
    """Allocate the disk blocks of ``path`` (a new, sparse memory-mapped file) now.

    A write through a memory map into a sparse file on a full disk kills the
    process with SIGBUS; once the blocks are allocated, a full disk is an
    ``OSError`` (``[Errno 28] No space left on device``) here instead.
    Filesystems that cannot allocate ahead (``fallocate`` unsupported) are
    left as they are.
    """
    size = os.path.getsize(path)
    if size == 0:
        return
    fd = os.open(path, os.O_RDWR)
    try:
        _fallocate(fd, size)
    finally:
        os.close(fd)


def _fallocate(fd, size) -> None:
    if not sys.platform.startswith("linux"):
        return  # pragma: no cover
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.fallocate(fd, 0, ctypes.c_int64(0), ctypes.c_int64(size)) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise OSError(code, os.strerror(code))

