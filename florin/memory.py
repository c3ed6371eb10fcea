"""The memory budget of a pipeline run and its on-disk scratch space.

A run has a memory budget (``pipeline(data, memory="2GiB")``, ``florin segment
--memory 2GiB``; by default a quarter of the memory available to the process,
see :func:`default_budget`). Nothing the run joins or computes blockwise is
held in memory above it:

* a volume up to a quarter of the budget (:func:`fits`) is allocated in
  memory, as before;
* a larger one is an on-disk scratch volume, a ``.npy`` memory map in the
  run's scratch directory (``scratch=`` / ``--scratch DIR``, default the
  temporary directory), which the following steps read lazily, tile by tile
  or block by block;
* a whole-volume step on such a volume runs blockwise by its declared kind
  (:mod:`florin.steps`).

The scratch directory of a run is removed when the run ends, successfully or
not. A result that lives in scratch stays readable by the caller (its file
is unlinked, the mapping stays valid until the array is dropped); save it with
a ``florin.save`` step to keep it.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

try:
    import fcntl
except ImportError:  # no flock (Windows): scratch directories carry no owner lock, and none is swept
    fcntl = None

import numpy as np
import psutil
import xarray as xr

from florin.errors import ParameterError

__all__ = ["Scratch", "available_memory", "default_budget", "fits", "is_scratch", "parse_size", "remove_stale_scratch",
           "sealed"]

#: Part of the available memory a run may use by default.
DEFAULT_FRACTION = 0.25
#: A volume is held in memory when it takes at most this part of the budget (the rest is for the steps' work).
IN_MEMORY_FRACTION = 0.25

_UNITS = {
    "": 1, "b": 1,
    "k": 1 << 10, "kib": 1 << 10, "kb": 10**3,
    "m": 1 << 20, "mib": 1 << 20, "mb": 10**6,
    "g": 1 << 30, "gib": 1 << 30, "gb": 10**9,
    "t": 1 << 40, "tib": 1 << 40, "tb": 10**12,
}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value, *, name="memory") -> int:
    """A memory size in bytes from ``512MiB``, ``2GiB``, ``1.5G``, ``800MB`` or a number of bytes.

    ``K``, ``M``, ``G``, ``T`` and ``KiB`` ... ``TiB`` are binary (powers of
    1024), ``KB`` ... ``TB`` decimal; case does not matter.

    Examples
    --------
    >>> parse_size("512MiB"), parse_size("1.5G"), parse_size("2gb"), parse_size(4096)
    (536870912, 1610612736, 2000000000, 4096)
    >>> parse_size("lots")
    Traceback (most recent call last):
    ...
    florin.errors.ParameterError: memory must be a size such as 512MiB, 2GiB, 1.5G or a number of bytes, got 'lots'
    """
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number, unit = float(value), ""
    elif isinstance(value, str) and _SIZE.match(value) and _SIZE.match(value).group(2).lower() in _UNITS:
        match = _SIZE.match(value)
        number, unit = float(match.group(1)), match.group(2).lower()
    else:
        raise ParameterError(
            f"{name} must be a size such as 512MiB, 2GiB, 1.5G or a number of bytes, got {value!r}"
        )
    size = number * _UNITS[unit]
    if not math.isfinite(size) or size < 1:
        raise ParameterError(f"{name} must be at least 1 byte, got {value!r}")
    return int(size)


def _cgroup_room() -> int | None:
    """Bytes the process's cgroup still allows (v2 ``memory.max`` or v1 ``memory.limit_in_bytes``), if limited."""
    candidates = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        path = path.lstrip("/")
        if controllers == "":  # v2 unified hierarchy
            base = Path("/sys/fs/cgroup") / path
            candidates.append((base / "memory.max", base / "memory.current"))
        elif "memory" in controllers.split(","):
            for root in (Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup/memory,cpuacct")):
                base = root / path
                candidates.append((base / "memory.limit_in_bytes", base / "memory.usage_in_bytes"))
    for limit_file, usage_file in candidates:
        try:
            text = limit_file.read_text().strip()
        except OSError:
            continue
        if text == "max" or not text.isdigit():
            continue
        limit = int(text)
        if limit >= 1 << 60:  # v1 "unlimited"
            continue
        try:
            usage = int(usage_file.read_text().strip())
        except (OSError, ValueError):
            usage = 0
        return max(0, limit - usage)
    return None


def available_memory() -> int:
    """Bytes of memory available to this process: psutil's, else ``/proc/meminfo``; capped by its cgroup."""
    available = None
    try:
        available = int(psutil.virtual_memory().available)
    except Exception:
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
        except (OSError, ValueError, IndexError):
            pass
    if available is None:
        available = 4 << 30  # nothing to go by: assume a small machine
    room = _cgroup_room()
    return min(available, room) if room is not None else available


def default_budget() -> int:
    """The memory budget of a run that sets none: :data:`DEFAULT_FRACTION` of :func:`available_memory`."""
    return max(1 << 20, int(available_memory() * DEFAULT_FRACTION))


def fits(nbytes, budget) -> bool:
    """Whether a volume of ``nbytes`` is held in memory under ``budget`` (at most :data:`IN_MEMORY_FRACTION` of it)."""
    return nbytes <= budget * IN_MEMORY_FRACTION


class Scratch:
    """The memory budget and scratch directory of one run.

    Parameters
    ----------
    budget : int
        Bytes the run may hold in memory.
    root : str or path-like, optional
        Where the run's scratch directory is made (default: the temporary
        directory); created if missing.

    Examples
    --------
    >>> scratch = Scratch(budget=1 << 20)
    >>> type(scratch.allocate((4, 4), np.uint8)).__name__, type(scratch.allocate((1024, 1024), np.uint8)).__name__
    ('ndarray', 'memmap')
    >>> path = scratch.path; scratch.close(); os.path.exists(path)
    False
    """

    def __init__(self, budget, root=None):
        self.budget = int(budget)
        self.root = Path(root) if root is not None else None
        self._dir = None
        self._owner = None  # the open owner lock of the scratch directory (held while the run lives)
        self._count = 0

    def __getstate__(self):
        return {**self.__dict__, "_owner": None}  # a copy (in a worker) does not own the directory's lock

    @property
    def path(self) -> Path | None:
        """The scratch directory, once something was written there."""
        return self._dir

    def _directory(self) -> Path:
        if self._dir is None:
            root = self.root if self.root is not None else Path(tempfile.gettempdir())
            try:
                root.mkdir(parents=True, exist_ok=True)
                remove_stale_scratch(root)
                directory = Path(tempfile.mkdtemp(prefix="florin-scratch-", dir=root))
                self._owner = _own(directory)
                self._dir = directory
            except OSError as exc:
                raise ParameterError(f"scratch: cannot create a scratch directory in {os.fspath(root)!r}: {exc}") from None
        return self._dir

    def fits(self, nbytes) -> bool:
        """Whether ``nbytes`` may be held in memory (see :func:`fits`)."""
        return fits(nbytes, self.budget)

    def new_path(self, suffix=".npy") -> Path:
        """A fresh file name in the scratch directory."""
        self._count += 1
        return self._directory() / f"v{self._count:04d}-{uuid.uuid4().hex[:6]}{suffix}"

    def allocate(self, shape, dtype, *, force=False):
        """An array of ``shape`` and ``dtype``: in memory if it fits the budget, else a scratch memory map.

        ``force=True`` always gives a scratch memory map.
        """
        shape, dtype = tuple(int(n) for n in shape), np.dtype(dtype)
        if not force and self.fits(math.prod(shape) * dtype.itemsize):
            return np.empty(shape, dtype)
        return np.lib.format.open_memmap(self.new_path(), mode="w+", dtype=dtype, shape=shape)

    def close(self) -> None:
        """Remove the scratch directory and everything in it."""
        directory, self._dir = self._dir, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
        owner, self._owner = self._owner, None
        if owner is not None:
            os.close(owner)


_OWNER = "owner.lock"


def _own(directory) -> int | None:
    """Put an owner lock, held (``flock``) by this process until it closes it or dies, in ``directory``.

    The lock file is locked before it gets its name, so a run that finds ``owner.lock`` unlocked knows its owner
    is gone. Forked workers share the lock: a directory is not stale while a worker of its run lives.
    """
    if fcntl is None:
        return None
    tmp = Path(directory) / f".{_OWNER}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.replace(tmp, Path(directory) / _OWNER)
    except BaseException:
        os.close(fd)
        raise
    return fd


def remove_stale_scratch(root) -> list[Path]:
    """Remove the ``florin-scratch-*`` directories in ``root`` whose run is gone (killed with SIGKILL, say).

    A directory is stale when its owner lock is no longer held: the process that made it, and every worker
    it forked, have exited. A live run's directory, and one without an owner lock (being created, or made
    by a florin without them), are kept. Returns the directories removed.

    Examples
    --------
    >>> import tempfile
    >>> remove_stale_scratch(tempfile.mkdtemp())
    []
    """
    removed = []
    if fcntl is None:
        return removed
    try:
        candidates = sorted(Path(root).glob("florin-scratch-*"))
    except OSError:
        return removed
    for directory in candidates:
        try:
            fd = os.open(directory / _OWNER, os.O_RDONLY)
        except OSError:
            continue  # no owner lock: cannot prove its run is gone
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # held: the run (or one of its workers) is alive
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
        finally:
            os.close(fd)
    return removed


def _scratch_map(data):
    """The scratch memory map ``data`` (an array) views, else None."""
    mm = data
    while isinstance(mm, np.ndarray) and not isinstance(mm, np.memmap):
        mm = mm.base
    name = os.fspath(mm.filename) if isinstance(mm, np.memmap) and mm.filename else ""
    if "florin-scratch-" in name or ".florin-partial" in name:  # a run's scratch, or a resumable run's records
        return mm
    return None


def is_scratch(array) -> bool:
    """Whether ``array`` (or the data of a DataArray) is a memory map of a scratch volume (or a resumable run's)."""
    data = getattr(getattr(array, "variable", None), "_data", array)
    return _scratch_map(data) is not None


def sealed(volume):
    """``volume`` with a writable scratch memory map replaced by a read-only one of the same file.

    Read-only memory maps are what tiling ships to workers as file references
    (each worker reads its own tile), so the next steps read the scratch volume
    lazily.
    """
    labels = getattr(volume, "labels", None)  # regions measured at the join carry their label volume
    if not isinstance(volume, xr.DataArray) and isinstance(labels, xr.DataArray):
        volume.labels = sealed(labels)
        return volume
    if not isinstance(volume, xr.DataArray):
        return volume
    data = volume.variable._data
    mm = _scratch_map(data) if isinstance(data, np.ndarray) else None
    if mm is None or mm.mode == "r" or mm.shape != data.shape or mm.dtype != data.dtype:
        return volume
    # No flush: maps of one file share the page cache, so the read-only map (and a worker's) sees every
    # write; msync would only force the volume to disk now, in the middle of the run.
    ro = np.load(mm.filename, mmap_mode="r")
    return xr.DataArray(ro, dims=volume.dims, coords=volume.coords, attrs=dict(volume.attrs), name=volume.name)
