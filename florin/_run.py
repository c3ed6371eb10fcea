"""State of the pipeline run in progress (inputs being read, step timings)."""

from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass, field

__all__ = ["RunState", "current", "is_writer", "run_state", "set_writer"]


@dataclass
class RunState:
    """What one top-level pipeline call knows while it runs."""

    inputs: set = field(default_factory=set)
    timings: dict = field(default_factory=dict)

    def add_input(self, path) -> None:
        self.inputs.add(os.path.realpath(os.fspath(path)))

    def is_input(self, path) -> bool:
        return os.path.realpath(os.fspath(path)) in self.inputs


_current: contextvars.ContextVar[RunState | None] = contextvars.ContextVar("florin_run", default=None)


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
