"""A table lookup over a label volume on plain arrays (numba): ``florin.reconstruct``'s engine.

``lookup(lut, labels)`` is ``lut[np.minimum(labels, len(lut) - 1)]`` in one
parallel pass, without numpy's two full-size temporaries (the clipped labels
and the gathered result before it is copied out).
"""

from __future__ import annotations

import numba
import numpy as np

from florin._kernels._jit import parallel_jit
from florin._kernels._threads import parallel_guard

__all__ = ["lookup"]

_CHUNK = 1 << 16


@parallel_jit
def _lookup_flat(lut, flat, out, last):
    n = flat.shape[0]
    for c in numba.prange((n + _CHUNK - 1) // _CHUNK):
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            v = flat[i]
            out[i] = lut[v if v < last else last]


def lookup(lut, labels, out=None):
    """``lut[labels]`` with labels beyond the table clipped to its last entry; labels must be >= 0.

    Parameters
    ----------
    lut : numpy.ndarray
        1-D table, non-empty.
    labels : numpy.ndarray
        Non-negative integer labels, any shape.
    out : numpy.ndarray, optional
        Array of ``labels``' shape and ``lut``'s dtype to write into.

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> import numpy as np
    >>> lookup(np.array([0, 7, 0], np.uint8), np.array([[0, 1, 5]], np.uint32))
    array([[0, 7, 0]], dtype=uint8)
    """
    labels = np.asarray(labels)
    if out is None:
        out = np.empty(labels.shape, lut.dtype)
    if labels.size == 0:
        return out
    if labels.dtype.kind not in "iu" or not labels.dtype.isnative or not out.flags.c_contiguous:
        out[...] = lut[np.minimum(labels, len(lut) - 1)]  # what numba does not take: numpy
        return out
    last = min(len(lut) - 1, int(np.iinfo(labels.dtype).max))
    with parallel_guard():
        _lookup_flat(lut, np.ascontiguousarray(labels).reshape(-1), out.reshape(-1), labels.dtype.type(last))
    return out
