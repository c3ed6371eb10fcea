"""Check every output of a run before anything is computed."""

from __future__ import annotations

import os
from pathlib import Path

from florin import _run
from florin.errors import OutputExistsError, OutputNotWritableError, ParameterError
from florin.io import Load

__all__ = ["check_outputs", "check_pipeline_outputs", "pipeline_saves"]


def pipeline_saves(pipeline) -> list:
    """Every step of ``pipeline`` (nested pipelines included) that writes a file, in run order.

    A step writes a file when it has a ``path`` and an ``overwrite`` attribute
    (:class:`florin.io.Save` and the CLI's objects table).
    """
    found = []
    for step in getattr(pipeline, "steps", ()):
        if hasattr(step, "steps"):
            found += pipeline_saves(step)
        elif not isinstance(step, Load) and hasattr(step, "path") and hasattr(step, "overwrite"):
            found.append(step)
    return found


def _nearest_existing_dir(path: Path) -> Path:
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def check_outputs(outputs, *, overwrite=False, how="pass --overwrite") -> None:
    """Refuse a run whose outputs clash, exist, or cannot be written.

    Parameters
    ----------
    outputs : iterable of (str, path-like) or (str, path-like, bool)
        ``(what, path)`` pairs, e.g. ``("--mask", "m.tif")``; a third item
        overrides ``overwrite`` for that output (a ``save`` step's own flag).
    overwrite : bool
        Whether existing outputs may be replaced.
    how : str
        How the user allows that, for the message (``"pass --overwrite"``, ``"pass overwrite=True"``).

    Raises
    ------
    ParameterError
        Two outputs share a path.
    OutputExistsError
        An output exists and may not be replaced.
    OutputNotWritableError
        The folder an output goes to is not writable.
    """
    seen = {}
    for entry in outputs:
        what, path = entry[0], Path(entry[1])
        allowed = overwrite or (len(entry) > 2 and entry[2])
        real = os.path.realpath(path)
        if real in seen:
            raise ParameterError(f"{what} {os.fspath(path)!r} is also {seen[real]}; give each output its own path")
        seen[real] = what
        if path.exists() and not allowed:
            raise OutputExistsError(f"output {os.fspath(path)!r} already exists; {how} to replace it")
        folder = _nearest_existing_dir(path)
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise OutputNotWritableError(f"cannot write {what} {os.fspath(path)!r}: folder {os.fspath(folder)!r} "
                                         "is not writable")


def check_pipeline_outputs(pipeline) -> None:
    """Check the outputs of ``pipeline``'s ``save`` steps before it runs (see :func:`check_outputs`).

    Each must not exist unless its step has ``overwrite=True``, its folder must
    be writable, and no two may share a path, so that a run never writes its
    first output and then fails on the second. A resumed run does not check
    the outputs its interrupted run committed (they are not written again). Saves into an array from
    :func:`florin.io.create` were checked when it was created. Under MPI SPMD
    only the rank that writes checks.
    """
    if not _run.is_writer():
        return
    resume = _run.resuming()
    saves = [s for s in pipeline_saves(pipeline) if getattr(s, "out", None) is None
             and not (resume is not None and resume.is_committed(s.path))]
    if saves:
        check_outputs([(f"save step {step!r}", step.path, bool(step.overwrite)) for step in saves],
                      how="pass overwrite=True")
