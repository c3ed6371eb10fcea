"""The one jit alias used by every kernel.

``cache=True`` keeps compiled machine code on disk so a second process (or an
MPI rank, or a pathos worker) does not pay the compile again; ``nogil=True``
lets thread executors run kernels concurrently.

Where numba finds no writable cache directory (``NUMBA_CACHE_DIR`` and the
``__pycache__`` beside the sources both read-only, as on a shared HPC install),
the kernels are compiled without the cache instead of failing at import. When a
kernel is compiled (a cold cache: the first run after an install), the ``florin``
logger says so once per process ("compiling kernels (first run only)"), which
the command line prints on stderr.
"""

from __future__ import annotations

import logging
import threading
import weakref

import numba
from numba.core import event

__all__ = ["jit", "parallel_jit"]

log = logging.getLogger("florin")

_ours: weakref.WeakSet = weakref.WeakSet()  # the dispatchers made by jit / parallel_jit
_uncached: list = []  # names of kernels compiled without the cache
_said = threading.Event()


def _decorator(**options):
    cached = numba.njit(cache=True, **options)
    plain = numba.njit(cache=False, **options)

    def decorate(func):
        try:
            dispatcher = cached(func)
        except RuntimeError as exc:
            if "no locator available" not in str(exc):
                raise
            # No writable cache directory: compile on every run rather than not run.
            dispatcher = plain(func)
            _uncached.append(func.__qualname__)
        _ours.add(dispatcher)
        return dispatcher

    return decorate


class _Compiling(event.Listener):
    """Says once per process that florin's kernels are being compiled."""

    def on_start(self, ev):
        dispatcher = (ev.data or {}).get("dispatcher")
        if dispatcher is None or dispatcher not in _ours or _said.is_set():
            return
        _said.set()
        if _uncached:
            log.info("compiling kernels (numba's cache directory is not writable, so every run compiles them; "
                     "set NUMBA_CACHE_DIR to a writable directory to keep them)")
        else:
            log.info("compiling kernels (first run only)")

    def on_end(self, ev):
        pass


event.register("numba:compile", _Compiling())

jit = _decorator(nogil=True)
"""Decorator for serial kernels."""

parallel_jit = _decorator(nogil=True, parallel=True)
"""Decorator for kernels that use ``numba.prange``."""
