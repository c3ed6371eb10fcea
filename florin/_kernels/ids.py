"""Id arithmetic of blockwise labeling on plain arrays (numba): one parallel pass per block.

Blockwise labeling (:mod:`florin.blockwise.label`) writes *provisional* ids
(a block's local labels plus the block's offset), reads them back on the
blocks' faces as *dense* ids (local labels plus the block's base) and finally
rewrites each block with the merged labels. In numpy each of these is a chain
of full-size temporaries (int64 casts, ``where``, ``searchsorted``, a fancy
index); here each is one pass that writes its result directly.
"""

from __future__ import annotations

import numba
import numpy as np

from florin._kernels._alloc import empty
from florin._kernels._jit import parallel_jit
from florin._kernels._threads import parallel_guard

__all__ = ["compact", "relabel", "shift"]

_CHUNK = 1 << 16


@parallel_jit
def _shift(src, offset, out):
    n = src.shape[0]
    for c in numba.prange((n + _CHUNK - 1) // _CHUNK):
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            v = src[i]
            out[i] = v + offset if v != 0 else 0


@parallel_jit
def _compact(src, offsets, bases, out):
    n = src.shape[0]
    nb = offsets.shape[0]
    for c in numba.prange((n + _CHUNK - 1) // _CHUNK):
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            v = np.int64(src[i])
            if v == 0:
                out[i] = 0
                continue
            lo, hi = 0, nb  # the last block whose offset is below v
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if offsets[mid] < v:
                    lo = mid
                else:
                    hi = mid
            out[i] = v - offsets[lo] + bases[lo]


@parallel_jit
def _relabel(src, offset, final, out):
    n = src.shape[0]
    for c in numba.prange((n + _CHUNK - 1) // _CHUNK):
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            v = np.int64(src[i])
            out[i] = final[v - offset] if v != 0 else 0


def _flat(arr):
    return np.ascontiguousarray(arr).reshape(-1)


def shift(local, offset, dtype):
    """``local + offset`` where ``local`` is nonzero, 0 elsewhere, as a new array of ``dtype``.

    Examples
    --------
    >>> shift(np.array([[0, 1], [2, 0]], np.uint32), 10, np.uint32)
    array([[ 0, 11],
           [12,  0]], dtype=uint32)
    """
    out = empty(np.shape(local), dtype)
    with parallel_guard():
        _shift(_flat(local), out.dtype.type(offset), out.reshape(-1))
    return out


def compact(ids, offsets, bases):
    """Provisional ids (``local + offsets[t]``) to dense ids (``local + bases[t]``) as int64; 0 stays 0.

    ``offsets`` (increasing, ``offsets[0] == 0``) are the blocks' offsets and
    ``bases`` their bases; ``t`` is the last block whose offset is below the id.

    Examples
    --------
    >>> compact(np.array([0, 1, 12, 13], np.uint32), np.array([0, 10]), np.array([0, 3]))
    array([0, 1, 5, 6])
    """
    out = empty(np.shape(ids), np.int64)
    with parallel_guard():
        _compact(_flat(ids), np.ascontiguousarray(offsets, np.int64), np.ascontiguousarray(bases, np.int64),
                 out.reshape(-1))
    return out


def relabel(ids, offset, final, dtype):
    """``final[ids - offset]`` where ``ids`` is nonzero, 0 elsewhere, as a new array of ``dtype``.

    Examples
    --------
    >>> relabel(np.array([0, 11, 12], np.uint32), 10, np.array([0, 5, 4]), np.uint32)
    array([0, 5, 4], dtype=uint32)
    """
    out = empty(np.shape(ids), dtype)
    with parallel_guard():
        _relabel(_flat(ids), np.int64(offset), np.ascontiguousarray(final), out.reshape(-1))
    return out
