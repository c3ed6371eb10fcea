"""Compile kernels ahead, in a background process, on a cold numba cache (issue 15 item 5).

The first run after an install spends most of its time compiling kernels, one
after the other, on one core. ``compile_ahead`` starts a background process
that compiles the kernels a run will need *later* into numba's cache while the
run itself compiles the first one; when the run reaches a kernel, it finds it in
the cache (or waits on the cross-process lock of :mod:`florin._kernels._jit`
while the background process finishes it, then loads it).

The background process is started only where it can help: the cache directory
is writable and shared (a lock is available) and the cache is cold (some of the
kernels named have no cache index yet); a warm run starts nothing. It is only an
optimisation: if it fails, the run compiles the kernels itself. It is stopped
when the ``with`` block ends and exits by itself if the run's process dies.

Examples
--------
>>> from florin._kernels._ahead import compile_ahead
>>> with compile_ahead("florin._kernels._ahead:classic", kernels=()) as proc:
...     proc is None  # no kernels named: nothing to compile ahead
True
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import subprocess
import sys
import threading
import time

import numpy as np

import florin
import florin.conncomp as conncomp
import florin.morphology as morphology
from florin._kernels import _jit, label, lookup, regions, sizes
from florin._kernels import morphology as morphology_kernels

__all__ = ["classic", "classic_kernels", "compile_ahead"]

log = logging.getLogger("florin")

_ENV = "FLORIN_COMPILE_AHEAD"  # "0": never start a background compile


def classic() -> None:
    """Compile what the classic pipeline (``florin demo``/``segment``) runs after NDNT, in pipeline order.

    The kernels are called on a tiny phantom with the dtypes of the full run
    (a bool mask, uint32 labels, a uint16 intensity image, as the demo's phantom), so numba compiles the
    same signatures; NDNT is left to the run, which compiles it first.
    """
    rng = np.random.default_rng(0)
    volume = florin.as_volume(rng.integers(0, 4096, (12, 40, 40), dtype=np.uint16), spacing=(1.0, 0.5, 0.5),
                              units="um")
    opened = morphology.binary_opening(rng.random((12, 40, 40)) < 0.6)
    labels = morphology.remove_small_holes(conncomp.label(opened), max_size=19)
    conncomp.regionprops(labels, intensity=volume)
    lookup.lookup(np.array([0, 1, 2], np.uint8), np.asarray(labels))  # reconstruct's class table


def classic_kernels() -> list:
    """The kernels :func:`classic` compiles (their cache indexes say whether the cache is cold)."""
    return [morphology_kernels._filter_rows, label._count_runs, label._fill_runs, label._union_blocks, label._number_runs,
            label._write_labels, sizes._sizes_blocks, regions._stats_blocks, lookup._lookup_flat]


def _worth_it(kernels) -> bool:
    if os.environ.get(_ENV, "1") == "0" or not kernels:
        return False
    if _jit.fcntl is None or _jit._uncached:
        return False  # no shared writable cache: what another process compiles is not kept for this one
    indexes = [_jit.index_path(k) for k in kernels]
    return None not in indexes and not all(os.path.exists(p) for p in indexes)


@contextlib.contextmanager
def compile_ahead(target: str, *, kernels):
    """Run ``target`` (``"module:function"``) in a background process for the duration of the block.

    Parameters
    ----------
    target : str
        The function that compiles the kernels, by calling them on small inputs.
    kernels : sequence of numba dispatchers
        The kernels ``target`` compiles; nothing is started when all of them
        have a cache index already (a warm cache), or when the cache is not
        writable or not shared.

    Yields
    ------
    subprocess.Popen or None
        The background process, or None when none was started.

    Examples
    --------
    >>> with compile_ahead("florin._kernels._ahead:classic", kernels=[]) as proc:
    ...     print(proc)
    None
    """
    if not isinstance(target, str) or target.count(":") != 1:
        raise ValueError(f"compile_ahead(): target must be 'module:function', got {target!r}")
    proc = None
    if _worth_it(kernels):
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "florin._kernels._ahead", target, str(os.getpid())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        except OSError as exc:  # pragma: no cover - no fork/exec: the run compiles on its own
            log.debug("compile ahead: not started (%s)", exc)
    try:
        yield proc
    finally:
        if proc is not None:
            _stop(proc)


def _stop(proc) -> None:
    if proc.poll() is None:
        proc.terminate()  # numba writes cache entries atomically: a half-done compile leaves nothing behind
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.returncode not in (0, -15):
        log.debug("compile ahead: the background process exited with %s; the run compiled on its own",
                  proc.returncode)


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(0)  # the run's process died: no orphan keeps compiling


def main(argv) -> None:
    """``python -m florin._kernels._ahead module:function PARENT_PID``."""
    target, parent = argv
    threading.Thread(target=_exit_with, args=(int(parent),), daemon=True).start()
    module, func = target.split(":")
    getattr(importlib.import_module(module), func)()


if __name__ == "__main__":
    main(sys.argv[1:])
