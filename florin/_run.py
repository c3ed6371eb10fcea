"""State of the pipeline run in progress (inputs being read, step timings)."""

from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass, field

import numpy as np

from florin import memory as _memory

__all__ = ["RunState", "agree", "current", "is_writer", "run_state", "set_agreement", "set_writer"]


@dataclass
class RunState:
    """What one top-level pipeline call knows while it runs."""

    inputs: set = field(default_factory=set)
    timings: dict = field(default_factory=dict)
    #: The volume the run started from (what ``load`` read or the array the pipeline got),
    #: for steps that measure it, e.g. ``conncomp.regionprops(intensity='input')``.
    input: object = None
    #: The run's memory budget and scratch directory (a :class:`florin.memory.Scratch`).
    scratch: object = None
    #: The completion records of a resumable run (a :class:`florin.resume.Resume`), else None.
    resume: object = None

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
def run_state(*, memory=None, scratch=None):
    """Open a run unless one is already open (nested pipelines share it).

    A new run gets a memory budget (``memory``: bytes or a size such as
    ``'2GiB'``; default :func:`florin.memory.default_budget`) and a scratch
    directory under ``scratch`` (default: the temporary directory), removed
    when the run ends, whether it succeeded or failed. The records of a
    resumable run (``state.resume``) are removed when it succeeded and kept
    when it failed or was stopped.
    """
    state = _current.get()
    if state is not None:
        yield state, False
        return
    budget = _memory.parse_size(memory) if memory is not None else _memory.default_budget()
    state = RunState(scratch=_memory.Scratch(budget, scratch))
    observer = _observer.get()
    if observer is not None:
        state.timings = observer.timings
    token = _current.set(state)
    succeeded = False
    try:
        yield state, True
        succeeded = True
    finally:
        _current.reset(token)
        state.scratch.close()
        if state.resume is not None:
            state.resume.close(keep=not succeeded)


def resuming():
    """The completion records of the resumable run in progress (a :class:`florin.resume.Resume`), or None."""
    state = current()
    return state.resume if state is not None else None


def budget() -> int | None:
    """The memory budget of the run in progress (bytes), or None outside a run."""
    state = current()
    return state.scratch.budget if state is not None and state.scratch is not None else None


_item_bytes: contextvars.ContextVar[int] = contextvars.ContextVar("florin_item_bytes", default=0)


@contextlib.contextmanager
def mapping(item_bytes):
    """Tell executors, while a collection is mapped, about how many bytes one item and its result hold."""
    token = _item_bytes.set(int(item_bytes))
    try:
        yield
    finally:
        _item_bytes.reset(token)


def max_in_flight(default, item_bytes=None):
    """How many items an executor may have in flight: ``default``, fewer when the budget is tight.

    ``item_bytes`` (default: what :func:`mapping` says) is the memory one item
    in flight takes; at most a quarter of the run's budget is given to items
    in flight, and at least one item always is. Outside a run it is ``default``.
    """
    item_bytes = _item_bytes.get() if item_bytes is None else item_bytes
    limit = budget()
    if limit is None or not item_bytes:
        return max(1, int(default))
    return max(1, min(int(default), int(limit // (4 * item_bytes))))


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
