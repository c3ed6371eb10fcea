"""The one guard around numba's parallel runtime, shared by every kernel.

numba's ``workqueue`` threading layer (the fallback when neither OpenMP nor TBB
is available) aborts the whole process ("Concurrent access") when parallel
kernels are launched concurrently from several Python threads, as thread
executors do.  Every ``parallel_jit`` launch therefore goes through
:func:`parallel_guard` (or :func:`numba_threads`), which serializes launches
with one process-wide lock under that layer, or before the first parallel
kernel has run and the layer is not yet known.  With a thread-safe layer
(``omp``, ``tbb``) the guard is a no-op.  A lock per kernel module would not
do: two modules could still launch at the same time.
"""

from __future__ import annotations

import contextlib
import threading

import numba

__all__ = ["parallel_guard", "numba_threads"]

# Re-entrant: a guarded helper may call another guarded kernel.
_LOCK = threading.RLock()


def parallel_guard():
    """Return the context manager to hold around calls of ``parallel_jit`` kernels."""
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        return _LOCK
    return contextlib.nullcontext() if layer in ("omp", "tbb") else _LOCK


@contextlib.contextmanager
def numba_threads(n: int):
    """Run parallel kernels with ``n`` numba threads under :func:`parallel_guard`.

    ``numba.set_num_threads`` is thread-local, so concurrent callers do not
    interfere; the previous count is restored afterwards.
    """
    with parallel_guard():
        old = numba.get_num_threads()
        if n != old:
            numba.set_num_threads(n)
        try:
            yield
        finally:
            if n != old:
                numba.set_num_threads(old)
