"""Locks and claims on output paths, across threads, processes and MPI ranks.

:func:`file_lock` serialises the writes into one output file (a lock file
beside it, locked with ``flock``). :func:`claim` gives one run an exclusive
claim on an output path (``.NAME.florin-claim``, locked with ``flock`` for as
long as the run writes it, so a killed run leaves no stale claim); a second
run that wants the same output fails at once with
:class:`~florin.errors.OutputBusyError`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path

from florin.errors import OutputBusyError

__all__ = ["claim", "file_lock"]

try:  # POSIX advisory locks; elsewhere only threads of one process are serialised
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

_thread_locks: dict = {}
_thread_locks_guard = threading.Lock()


@contextlib.contextmanager
def file_lock(path):
    """Exclusive lock on ``path`` (created if needed) across threads and processes."""
    path = os.fspath(path)
    with _thread_locks_guard:
        tlock = _thread_locks.setdefault(path, threading.Lock())
    with tlock:
        if fcntl is None:
            yield
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock


class _Claim:
    """An exclusive claim on an output path, held by one run until :meth:`release`."""

    def __init__(self, target, path, fd):
        self.target, self.path, self.fd = target, path, fd

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # while still locked: a run waiting on this file sees it is gone and retries
        os.close(self.fd)  # releases the lock
        self.fd = None


def claim(target) -> _Claim:
    """Claim ``target`` for this run, or raise :class:`OutputBusyError` when another run holds it.

    The claim is the lock on ``.NAME.florin-claim`` beside the target (``flock``:
    released by the kernel when its process ends, however it ends, so a killed
    run never blocks the next one). Its file says who holds it and is removed
    on :meth:`_Claim.release`.
    """
    target = Path(target)
    path = target.parent / f".{target.name}.florin-claim"
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise OutputBusyError(
                f"output {os.fspath(target)!r} is being written by another florin run ({holder}); "
                "wait for it to finish or choose another output path"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # its holder released it (and removed the file) while we waited: claim the new one
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
    return _Claim(target, path, fd)
