"""Check every output of a run before anything is computed."""

from __future__ import annotations

import os
from pathlib import Path

from florin.errors import OutputExistsError, OutputNotWritableError, ParameterError

__all__ = ["check_outputs", "pipeline_saves"]


def pipeline_saves(pipeline) -> list:
    """Every step of ``pipeline`` (nested pipelines included) that writes a file, in run order.

    A step writes a file when it has a ``path`` and an ``overwrite`` attribute
    (:class:`florin.io.Save` and the CLI's objects table).
    """
    from florin.io import Load

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


def check_outputs(outputs, *, overwrite=False) -> None:
    """Refuse a run whose outputs clash, exist, or cannot be written.

    Parameters
    ----------
    outputs : iterable of (str, path-like) or (str, path-like, bool)
        ``(what, path)`` pairs, e.g. ``("--mask", "m.tif")``; a third item
        overrides ``overwrite`` for that output (a ``save`` step's own flag).
    overwrite : bool
        Whether existing outputs may be replaced.

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
            raise OutputExistsError(f"output {os.fspath(path)!r} already exists; pass --overwrite to replace it")
        folder = _nearest_existing_dir(path)
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise OutputNotWritableError(f"cannot write {what} {os.fspath(path)!r}: folder {os.fspath(folder)!r} "
                                         "is not writable")

