"""Timing shared by the benchmark scripts (they import it from their own folder)."""

from __future__ import annotations

import time


def best_of(func, repeat, *, warmup=False):
    """``(seconds, result)``: the fastest of ``repeat`` calls of ``func``, after one untimed call if ``warmup``."""
    if warmup:
        func()  # JIT compilation, worker pools
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    return best, result
