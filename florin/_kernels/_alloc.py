"""The one allocator of the kernels' large outputs and scratch arrays: ``empty``, in small pages.

numpy asks the kernel for transparent huge pages (``madvise(MADV_HUGEPAGE)``) on every
allocation of 4 MiB or more. Where the machine returns freed memory to its host (a
virtual machine with free page reporting, as our 2-core CI and benchmark machines are),
a fresh huge page is a host fault of 2 MiB: faulting in a new 256 MiB array took
0.3-0.9 s of system time in huge pages against 0.06-0.1 s in 4 KiB pages, and two
threads faulting huge pages at once were slower than one (``label`` with 2 threads
at half the speed of 1 thread on a 512 MiB volume). The kernels' work per voxel is a
few nanoseconds, so that fault time was most of their time and did not scale with
threads. :func:`empty` therefore maps arrays of :data:`SMALL_PAGES_MIN_BYTES` or more
privately and anonymously with ``MADV_NOHUGEPAGE`` before anything touches them; the
threads that write an array first then fault its pages in parallel. Smaller arrays,
and platforms without ``MADV_NOHUGEPAGE``, get ``numpy.empty``.

The array owns its mapping (its ``base`` is the ``mmap``): the memory is unmapped when
the last view of it goes.
"""

from __future__ import annotations

import math
import mmap

import numpy as np

__all__ = ["SMALL_PAGES_MIN_BYTES", "empty"]

SMALL_PAGES_MIN_BYTES = 16 << 20
"""Arrays of at least this many bytes are mapped in small pages."""

_NOHUGE = getattr(mmap, "MADV_NOHUGEPAGE", None)
_FLAGS = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)


def empty(shape, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array, in 4 KiB pages when it is large (``numpy.empty`` otherwise).

    Parameters
    ----------
    shape : int or tuple of int
        Shape of the array.
    dtype : numpy.dtype or type
        Its dtype.

    Returns
    -------
    numpy.ndarray
        Writable, C-contiguous, uninitialised.

    Examples
    --------
    >>> a = empty((2, 3), np.uint32)
    >>> a[...] = 7
    >>> a.shape, a.dtype, int(a.sum())
    ((2, 3), dtype('uint32'), 42)
    """
    dtype = np.dtype(dtype)
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if nbytes < SMALL_PAGES_MIN_BYTES or _NOHUGE is None or not _FLAGS:
        return np.empty(shape, dtype)
    buf = mmap.mmap(-1, nbytes, flags=_FLAGS)
    try:
        buf.madvise(_NOHUGE)
    except OSError:  # a kernel without transparent huge pages: the pages are small anyway
        pass
    return np.frombuffer(buf, dtype, count=count).reshape(shape)
