"""The one jit alias used by every kernel.

``cache=True`` keeps compiled machine code on disk so a second process (or an
MPI rank, or a pathos worker) does not pay the compile again; ``nogil=True``
lets thread executors run kernels concurrently.
"""

import numba

jit = numba.njit(cache=True, nogil=True)
"""Decorator for serial kernels."""

parallel_jit = numba.njit(cache=True, nogil=True, parallel=True)
"""Decorator for kernels that use ``numba.prange``."""
