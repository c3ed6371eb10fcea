"""Atomic writes: write to a temporary name beside the target, rename on success."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

from florin._signals import deferred, raise_if_received

__all__ = ["atomic_path", "fsync_file", "remove_path"]


def remove_path(path) -> None:
    """Remove a file or a directory tree if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def fsync_file(path) -> None:
    """Flush a file (written by any process) to disk; of a folder (a Zarr store), its own entries only."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def workdir_for(path):
    """The hidden folder beside ``path`` an output is written in before it is put in place, and its name there.

    The folder's parent is created; the folder itself is not (the caller makes it where a failure removes it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    workdir = path.parent / f".{path.name}.florin-{uuid.uuid4().hex[:8]}.tmp"
    return workdir, workdir / path.name


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path; on success move it onto ``path``, on failure delete it.

    The temporary path has the target's file name inside a hidden directory
    beside the target, so writers that look at the suffix, or write companion
    files (``out.npy.json``), work unchanged. On success companions are moved
    first and the main output last, each with an atomic rename; a half-written
    output never appears under the target's name. Directories (Zarr stores)
    are replaced as a whole.

    Examples
    --------
    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "out.txt")
    >>> with atomic_path(target) as tmp:
    ...     _ = open(tmp, "w").write("done")
    >>> open(target).read()
    'done'
    """
    path = Path(path)
    workdir, tmp = workdir_for(path)
    try:
        with deferred():  # Ctrl-C right after the folder is made still removes it
            workdir.mkdir()
        yield tmp
        raise_if_received()  # a signalled run never puts an output in place (even if a library ate the interrupt)
        if not tmp.exists():
            raise FileNotFoundError(f"the writer did not create {path.name}")
        for companion in sorted(workdir.iterdir()):
            if companion.name != path.name:
                _replace(companion, path.parent / companion.name)
        _replace(tmp, path)
    finally:
        with deferred():  # a second Ctrl-C does not stop the removal half-way
            remove_path(workdir)


def _replace(src: Path, dst: Path) -> None:
    if dst.is_dir() and not dst.is_symlink():
        old = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.old")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)
