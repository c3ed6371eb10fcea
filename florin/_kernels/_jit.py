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

Processes that start together on a cold cache (pytest-xdist workers, MPI ranks,
process-pool workers) compile each kernel once between them: a process about to
compile a kernel takes an exclusive lock on a file beside the kernel's cache
index (``fcntl.flock``, released when the process ends), and numba then loads
what a process holding the lock before it compiled and saved. Without ``fcntl``
(Windows) or a writable cache directory, each process compiles on its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref

import numba
from numba.core import event, sigutils
from numba.core.compiler_lock import global_compiler_lock

try:
    import fcntl
except ImportError:  # Windows: no lock, concurrent processes may compile a kernel twice
    fcntl = None

__all__ = ["jit", "parallel_jit"]

log = logging.getLogger("florin")

_ours: weakref.WeakSet = weakref.WeakSet()  # the dispatchers made by jit / parallel_jit
_uncached: list = []  # names of kernels compiled without the cache
_said = threading.Event()
_held: dict = {}  # lock file -> depth, of the locks this process holds (a recursive compile re-enters)


@contextlib.contextmanager
def _compile_lock(path):
    """Hold the cross-process lock ``path`` (no lock where it cannot be made)."""
    if path in _held:
        _held[path] += 1
        try:
            yield
        finally:
            _held[path] -= 1
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:  # cache directory not writable: numba compiles uncached anyway
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _held[path] = 1
        yield
    finally:
        _held.pop(path, None)
        os.close(fd)  # releases the lock


def index_path(dispatcher):
    """The path of ``dispatcher``'s numba cache index, or None when it has no on-disk cache."""
    return getattr(getattr(getattr(dispatcher, "_cache", None), "_cache_file", None), "_index_path", None)


def _share_compiles(dispatcher):
    """Compile ``dispatcher``'s signatures once across processes sharing its cache."""
    index = index_path(dispatcher)
    if fcntl is None or index is None:
        return
    lock = os.path.splitext(index)[0] + ".lock"
    compile_here = dispatcher.compile

    def compile(sig):
        # numba's in-process lock first, then the file lock: threads never wait on each other in the other order
        with global_compiler_lock:
            args, _ = sigutils.normalize_signature(sig)
            if dispatcher.overloads.get(tuple(args)) is not None:
                return compile_here(sig)
            with _compile_lock(lock):
                return compile_here(sig)  # loads from the cache what another process compiled meanwhile

    dispatcher.compile = compile


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
        else:
            _share_compiles(dispatcher)
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
