"""State of the pipeline run in progress (inputs being read, step timings)."""

from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass, field

__all__ = ["RunState", "agree", "current", "is_writer", "run_state", "set_agreement", "set_writer"]


@dataclass
class RunState:
    """What one top-level pipeline call knows while it runs."""

    inputs: set = field(default_factory=set)
    timings: dict = field(default_factory=dict)
    #: The volume the run started from (what ``load`` read or the array the pipeline got),
    #: for steps that measure it, e.g. ``conncomp.regionprops(intensity='input')``.
    input: object = None

    def set_input(self, volume) -> None:
        """Record the run's input volume (the first one only: nested loads do not replace it)."""
        if self.input is None:
            self.input = volume

    def add_input(self, path) -> None:
        self.inputs.add(os.path.realpath(os.fspath(path)))

    def is_input(self, path) -> bool:
        return os.path.realpath(os.fspath(path)) in self.inputs


_current: contextvars.ContextVar[RunState | None] = contextvars.ContextVar("florin_run", default=None)


@dataclass
class Observer:
    """What a caller (the CLI) watches of the runs it starts: step timings and progress.

    ``progress`` is None or an object with rich's ``Progress`` interface
    (``add_task(description, total=)``, ``advance(task, n)``, ``remove_task(task)``).
    """

    timings: dict = field(default_factory=dict)
    progress: object = None


_observer: contextvars.ContextVar[Observer | None] = contextvars.ContextVar("florin_observer", default=None)


@contextlib.contextmanager
def observe(progress=None):
    """Collect step timings (and show progress) of pipeline runs started inside the block."""
    observer = Observer(progress=progress)
    token = _observer.set(observer)
    try:
        yield observer
    finally:
        _observer.reset(token)


@contextlib.contextmanager
def progress_task(total: int, description: str):
    """Yield a callable that advances a progress bar by one item (a no-op when nobody watches)."""
    observer = _observer.get()
    progress = observer.progress if observer is not None else None
    if progress is None or total <= 1:
        yield lambda: None
        return
    task = progress.add_task(description, total=total)
    try:
        yield lambda: progress.advance(task, 1)
    finally:
        progress.remove_task(task)


def current() -> RunState | None:
    """The state of the run in progress, or None outside a pipeline call."""
    return _current.get()


@contextlib.contextmanager
def run_state():
    """Open a run unless one is already open (nested pipelines share it)."""
    state = _current.get()
    if state is not None:
        yield state, False
        return
    state = RunState()
    observer = _observer.get()
    if observer is not None:
        state.timings = observer.timings
    token = _current.set(state)
    try:
        yield state, True
    finally:
        _current.reset(token)


# -- who writes outputs ----------------------------------------------------------------------
# Under ``mpiexec -n N python script.py`` (florin.MPI's SPMD mode) every rank runs
# the whole script and holds the same results; only rank 0 may write files.
# florin.executors.MPI calls set_writer(False) on the other ranks and
# florin.io.write() returns without writing when is_writer() is False.
_writer = True


def set_writer(enabled: bool) -> None:
    """Allow (True, the default) or suppress (False) writing outputs in this process."""
    global _writer
    _writer = bool(enabled)


def is_writer() -> bool:
    """Whether this process writes outputs (False on MPI SPMD ranks other than 0)."""
    return _writer


# -- where joined volumes go ------------------------------------------------------------------
def allocate(shape, dtype):
    """A destination array for a joined volume of the running pipeline.

    In memory, or an on-disk scratch volume when the volume would exceed the
    run's memory budget (see :mod:`florin.memory`).
    """
    import numpy as np

    state = current()
    scratch = getattr(state, "scratch", None) if state is not None else None
    if scratch is not None:
        return scratch.allocate(shape, dtype)
    return np.empty(tuple(shape), np.dtype(dtype))


# -- decisions taken once for a whole MPI job -------------------------------------------------------
# Under florin.MPI's SPMD mode every rank runs the same code; what must be the same on every rank
# and done only once (claiming an output, naming its temporary folder) runs on rank 0, and every
# rank gets its result. florin.executors.MPI installs that with set_agreement().
_agreement = None


def set_agreement(func) -> None:
    """Install ``func(thunk)``, which runs ``thunk`` once for the job and returns its result everywhere (None: here)."""
    global _agreement
    _agreement = func


def agree(thunk):
    """``thunk()``, run once for the job: here, or under MPI SPMD on rank 0 with its result (or error) on every rank."""
    if _agreement is None:
        return thunk()
    return _agreement(thunk)
