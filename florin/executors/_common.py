"""What every executor shares: worker counts, numba threads per worker, item labels."""

from __future__ import annotations

import contextlib
import contextvars
import math
import numbers
import os
import sys
import warnings

import xarray as xr

from florin import steps, tilemeta
from florin.errors import FlorinDeprecationWarning, ParameterError


def _check_count(name, value):
    """``None`` (one per CPU core) or an integer >= 1, else a ParameterError naming ``name``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ParameterError(f"{name} must be an integer >= 1 (or None for one per CPU core), got {value!r}")
    return int(value)


def _worker_count(executor, workers, **old_names):
    """The checked ``workers=`` of an executor, or the value of its one deprecated name for it.

    ``old_names`` holds the old spelling's value (``threads=...``); given, it warns
    with a :class:`~florin.errors.FlorinDeprecationWarning` and stands in for
    ``workers``; given with ``workers`` it is a ParameterError.
    """
    for name, value in old_names.items():
        if value is None:
            continue
        if workers is not None:
            raise ParameterError(f"{executor}(): pass workers= only ({name}= is its deprecated name), got both")
        count = _check_count(name, value)
        warnings.warn(
            f"{executor}({name}=...) is deprecated; use {executor}(workers={count}), the worker count of every "
            "executor",
            FlorinDeprecationWarning,
            stacklevel=3,
        )
        return count
    return _check_count("workers", workers)


def cpu_count() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _kernel_threads_for(workers) -> int:
    return max(1, cpu_count() // max(1, workers))


@contextlib.contextmanager
def _kernel_threads(n):
    """Run with ``n`` numba threads in this thread (numba's setting is thread-local)."""
    numba = sys.modules.get("numba")
    if n is None or numba is None:
        yield
        return
    try:
        n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
        old = numba.get_num_threads()
        if n != old:
            numba.set_num_threads(n)
    except Exception:  # numba without a threading layer: leave it alone
        yield
        return
    try:
        yield
    finally:
        if n != old:
            numba.set_num_threads(old)


# True inside a process or MPI worker, and on an MPI rank while it runs its
# share of an SPMD map: nested process/MPI maps then run in place (no
# process trees, no collective calls from inside an item).
_in_worker = contextvars.ContextVar("florin_in_worker", default=False)
_process_worker = False


def _nested() -> bool:
    return _process_worker or _in_worker.get()


def _tile_info(item):
    """The tile metadata of an item (a tile, or a reference to one), or None."""
    info = getattr(item, "info", None)
    if not isinstance(info, tilemeta.TileInfo):
        info = tilemeta.info_of(item) if isinstance(item, xr.DataArray) else None
    if info is None and hasattr(item, "resolve") and hasattr(item, "tile"):
        info = tilemeta.info_of(item.tile)
    return info


def _label(item, index) -> str:
    info = _tile_info(item)
    return f"tile at origin {info.origin}" if info is not None else f"item {index}"


def _describe_steps(func) -> str:
    return steps.describe(func)


def _chunks(n, workers, chunksize=None):
    """Index ranges: one item each for few items (tiles), about 16 chunks per worker for many (regions)."""
    if chunksize is None:
        chunksize = max(1, math.ceil(n / (16 * max(1, workers))))
    return [range(i, min(n, i + chunksize)) for i in range(0, n, chunksize)]



def _some(labels, k=4) -> str:
    shown = ", ".join(labels[:k])
    more = f" and {len(labels) - k} more" if len(labels) > k else ""
    return f"one of: {shown}{more}" if len(labels) > 1 else (shown or "an item")
