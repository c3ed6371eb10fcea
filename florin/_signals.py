"""Ctrl-C (SIGINT) and SIGTERM end a run promptly and cleanly.

The CLI calls :func:`install`. Both signals then raise in the main thread
(``KeyboardInterrupt``, or :class:`Terminated` for SIGTERM), so every ``finally``
on the way out runs: temporary outputs are removed, claims released, worker
pools stopped. Three things could still go wrong, and are handled here:

* Python runs a signal handler wherever the main thread is, and an exception
  raised inside a weakref callback or a ``__del__`` (HDF5 and xarray release
  objects all the time) is printed as "Exception ignored" and dropped: the run
  went on and exited 0. The unraisable-exception hook sees such an interrupt
  and sends the signal again a moment later, so it is raised in ordinary code.
  Once a signal arrived, other exceptions raised where they cannot propagate
  (objects the interrupt caught half-made, released on the way out) are not
  printed either.
* A second Ctrl-C while a temporary output is being removed would stop the
  removal half-way: cleanups run inside :func:`deferred`, which holds a signal
  back until the cleanup is done.
* A worker process forked while the handlers are set would run them on its
  copy of the parent's stack (a second "florin: terminated", a traceback from
  an after-fork hook) until it sets its own: executors start workers inside
  :func:`blocked`, and each worker unblocks the signals once its handlers are
  set. The parent gets a signal that arrived meanwhile right after the start.
* A library can swallow the interrupt whole: multiprocess imports dill inside
  a bare ``except:`` that falls back to pickle, so SIGTERM arriving during that
  import (the first Multiprocess map) left no trace and the run went on to
  commit its output. :func:`raise_if_received` raises the interrupt again where
  florin would make an output final and after each mapped item.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sys
import threading
import time
import warnings

__all__ = ["SIGNALS", "Terminated", "blocked", "deferred", "forget", "hold", "install", "raise_if_received", "received"]

#: The signals that stop a run.
SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the run stops as for Ctrl-C, and the CLI exits with status 143."""


_pending = None  # the last signal that arrived
_deferred = None  # a signal held back by deferred()
_deferring = 0
_previous_hook = None
_installed = False  # inside install(): a signal sent again still finds florin's handler
_installing = threading.Lock()  # install()'s restore and _send_again, one at a time


def _exception(signum) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _handler(signum, frame):
    global _pending, _deferred
    if _pending is None:
        # Work stopped half-way leaves coroutines (zarr's) that were never awaited: expected, not news.
        warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)
    _pending = signum
    if _deferring:
        _deferred = signum
        return
    raise _exception(signum)


def _unraisable(info):
    if isinstance(info.exc_value, KeyboardInterrupt) and _pending is not None:
        # Raised where it could not propagate: send the signal again in a moment (from another thread,
        # so that the main thread is back in ordinary code when its handler runs).

        _thread.start_new_thread(_send_again, (_pending,))  # unlike threading's start(), does not wait
        return
    if _pending is not None:
        # The run is being stopped: objects the interrupt caught half-made or half-used fail as they are
        # released (an event loop interrupted in its constructor...). That is expected, not news.
        return
    (_previous_hook or sys.__unraisablehook__)(info)


def _send_again(signum):
    time.sleep(0.01)
    with _installing:
        if _installed:  # not once install() restored the previous handlers: that would kill the process
            os.kill(os.getpid(), signum)


@contextlib.contextmanager
def install(*, restore=True):
    """While the block runs, SIGINT and SIGTERM raise in the main thread (no-op in other threads).

    The previous handlers and unraisable-exception hook are restored afterwards
    (the CLI's ``main`` is also called in-process, by tests and scripts). With
    ``restore=False`` (the ``florin`` process itself, which exits next) they
    are not: a late signal (a second worker's, one sent again) is recorded and
    cannot kill the process by the default action before it exits with its code.
    """
    global _previous_hook, _pending, _deferred, _deferring, _installed
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {signum: signal.getsignal(signum) for signum in sorted(SIGNALS)}
    hook, _previous_hook = sys.unraisablehook, sys.unraisablehook
    _pending = _deferred = None
    for signum in before:
        signal.signal(signum, _handler)
    sys.unraisablehook = _unraisable
    _installed = True
    try:
        yield
    finally:
        _deferring += 1  # from here on a signal is only recorded: the block ended, its outcome is decided
        with _installing:
            _installed = False
            if restore:
                for signum, handler in before.items():
                    signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if restore:
            sys.unraisablehook = hook
            _pending = _deferred = None
            _deferring = 0


def hold():
    """Until :func:`install`'s block ends, record signals instead of raising them; the signal received so far.

    Called once the run's outcome is decided (the CLI reports it): a signal
    arriving later, or one sent again, no longer raises on the way out.

    Examples
    --------
    >>> with install():
    ...     print(hold())
    None
    """
    global _deferring
    _deferring += 1
    return _pending


@contextlib.contextmanager
def blocked():
    """Block SIGINT and SIGTERM in this thread while the block runs (a worker process starts); deliver them after.

    A process started inside inherits the blocked signals and unblocks them
    itself once its handlers are set (``signal.pthread_sigmask``), so no signal
    runs the parent's handlers in it. Where there is no signal mask, a no-op.

    Examples
    --------
    >>> with blocked():
    ...     pass
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def received():
    """The signal (``signal.SIGINT`` or ``signal.SIGTERM``) that arrived inside :func:`install`, or None."""
    return _pending


def raise_if_received() -> None:
    """Raise the interrupt of a signal that arrived inside :func:`install`, if one did.

    Called where florin makes an output final (the rename into place) and after
    each item a pipeline maps: a signal whose exception some library swallowed
    still stops the run there, before anything is committed. Does nothing when
    no signal arrived, off the main thread, and inside :func:`deferred` (a
    cleanup is running; the signal is raised after it).

    Examples
    --------
    >>> raise_if_received()  # no signal arrived: nothing happens
    """
    if _pending is None or _deferring or threading.current_thread() is not threading.main_thread():
        return
    raise _exception(_pending)


def forget() -> None:
    """Drop the record of signals (in a forked worker: the parent's signals are not the worker's)."""
    global _pending, _deferred, _deferring
    _pending = _deferred = None
    _deferring = 0


@contextlib.contextmanager
def deferred():
    """Hold SIGINT and SIGTERM back while the block runs (a cleanup); raise them after it."""
    global _deferring, _deferred
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _deferred is not None:
            signum, _deferred = _deferred, None
            raise _exception(signum)
