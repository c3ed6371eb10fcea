"""Benchmark: the same tiled pipeline under every executor, speedups over Serial.

Pipeline (the seed's parallel example, with a tiling suited to the volume)::

    florin.Serial(
        florin.tile(shape=TILE),                      # halo 'auto' from the steps
        EXECUTOR(thresholding.ndnt(shape=(5, 31, 31), threshold=0.25),
                 morphology.binary_opening()),
    )

on a (128, 512, 512) ``uint16`` volume (dark blobs on an uneven, noisy
background; seed 0), with EXECUTOR one of Serial, Multithread(workers=W),
Multiprocess(workers=W), MPI(workers=W) (an MPIPoolExecutor spawning W
workers) and MPI in SPMD mode (``mpiexec -n W python bench_parallel.py``, timed
inside rank 0), W = ``--workers`` (default 2). Every result is checked equal to
Serial's.

For a fair comparison of the executors, NDNT's numba kernel, which is itself
multithreaded, runs with ONE thread everywhere (``NUMBA_NUM_THREADS=1`` is set
before numba is imported, in this process and so in every worker and rank),
unless ``--kernel-threads`` says otherwise. After one warm-up run per executor
(JIT compilation and the start of the worker pools, which florin keeps between
runs, are not timed), ``--repeat`` rounds each run every executor once, so a
slow spell of a shared machine hits all of them alike; each executor's best
time counts. The SPMD run times its own rounds inside rank 0. Goal: 2
processes >= 1.7x Serial.

    python benchmarks/bench_parallel.py [--small] [--workers W] [--repeat N] [--kernel-threads T] [--json PATH]

``--small`` runs on (32, 128, 128) for a quick check. ``--json PATH`` writes the
results in the benchmarks' common format (``docs/_scripts/plot_benchmarks.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

FULL = ((128, 512, 512), (32, 256, 256))  # volume shape, tile shape (16 tiles)
SMALL = ((32, 128, 128), (16, 64, 64))  # 16 tiles
NDNT_SHAPE = (5, 31, 31)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="run on (32, 128, 128) for a quick check")
    parser.add_argument("--workers", type=int, default=2, help="threads / processes / MPI workers (default 2)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="timed rounds (each runs every executor once); the best time is kept (default 5)")
    parser.add_argument("--kernel-threads", type=int, default=1,
                        help="numba threads of the NDNT kernel (default 1: a fair executor comparison)")
    parser.add_argument("--no-mpi", action="store_true", help="skip the MPI runs")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--spmd-rank", action="store_true", help=argparse.SUPPRESS)  # used under mpiexec
    return parser.parse_args(argv)


ARGS = parse_args()
# Before numba is imported (florin imports it): the kernel's thread count.
os.environ["NUMBA_NUM_THREADS"] = str(ARGS.kernel_threads)

import numpy as np  # noqa: E402
from _timing import best_of  # noqa: E402  (benchmarks/, the script's folder)
from scipy import ndimage as ndi  # noqa: E402

import florin  # noqa: E402
import florin.morphology as morphology  # noqa: E402
import florin.thresholding as thresholding  # noqa: E402


def make_volume(shape, seed=0):
    """Dark blobs on an uneven, noisy background (uint16)."""
    rng = np.random.default_rng(seed)
    z, y, x = (np.linspace(0, 1, n, dtype=np.float32) for n in shape)
    background = 20000 + 6000 * (x[None, None, :] + 0.5 * y[None, :, None] + 0.25 * z[:, None, None])
    blobs = ndi.gaussian_filter((rng.random(shape, dtype=np.float32) < 0.002).astype(np.float32), 2.0)
    image = background - 12000 * np.minimum(blobs / max(float(blobs.max()), 1e-6) * 4, 1.0)
    image += rng.normal(0, 600, size=shape).astype(np.float32)
    return np.clip(image, 0, 65535).astype(np.uint16)


def pipeline(make, tile_shape):
    return florin.Serial(
        florin.tile(shape=tile_shape),
        make(thresholding.ndnt(shape=NDNT_SHAPE, threshold=0.25), morphology.binary_opening()),
    )


def _burn(n):
    start = time.perf_counter()
    s = 0
    for i in range(n):
        s += i
    return time.perf_counter() - start


def parallel_capacity(workers, n=3_000_000):
    """How much of ``workers`` cores this machine gives now: ``workers`` busy loops in processes vs one.

    ``workers`` means every core is free; on a shared machine other jobs take
    some, and no executor can beat this ratio.
    """
    import multiprocessing

    one = min(_burn(n) for _ in range(2))
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(_burn, [1000] * workers)
        start = time.perf_counter()
        pool.map(_burn, [n] * workers)
        both = time.perf_counter() - start
    return workers * one / both


def spmd_rank_main(args):
    """Under ``mpiexec -n W``: every rank runs this; rank 0 prints the best time."""
    shape, tile_shape = SMALL if args.small else FULL
    volume = make_volume(shape)
    pipe = pipeline(florin.MPI, tile_shape)
    seconds, result = best_of(lambda: pipe(volume), args.repeat, warmup=True)
    from mpi4py import MPI

    if MPI.COMM_WORLD.Get_rank() == 0:
        print(json.dumps({"seconds": seconds, "sum": int(result.values.sum())}), flush=True)


def run_spmd(args, expected_sum):
    import shutil

    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        return None, "mpiexec not found"
    cmd = [mpiexec, "-n", str(args.workers), sys.executable, os.path.abspath(__file__), "--spmd-rank",
           "--repeat", str(args.repeat), "--kernel-threads", str(args.kernel_threads)]
    if args.small:
        cmd.append("--small")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        return None, f"failed: {proc.stderr.strip()[-300:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if report["sum"] != expected_sum:
        return None, "result differs from Serial"
    return report["seconds"], None


def main(args):
    from florin.executors import cpu_count

    shape, tile_shape = SMALL if args.small else FULL
    w = args.workers
    volume = make_volume(shape)
    n_tiles = len(florin.tile(shape=tile_shape)(volume))
    print(f"volume {shape} uint16 ({volume.nbytes / 2**20:.0f} MiB), {n_tiles} tiles of {tile_shape}, "
          f"NDNT shape {NDNT_SHAPE} + binary_opening; {cpu_count()} CPU cores; {w} workers")
    print(f"NDNT kernel threads: {args.kernel_threads} (NUMBA_NUM_THREADS={os.environ['NUMBA_NUM_THREADS']}) "
          "in Serial and inside every thread, process and MPI worker")
    capacity = parallel_capacity(w)
    print(f"best of {args.repeat} rounds after a warm-up run; machine capacity now: {capacity:.2f} of {w} cores "
          f"({w} busy processes vs 1: the best speedup possible)\n")

    executors = [
        ("Serial", florin.Serial),
        (f"Multithread(workers={w})", lambda *s: florin.Multithread(*s, workers=w)),
        (f"Multiprocess(workers={w})", lambda *s: florin.Multiprocess(*s, workers=w)),
    ]
    mpi_ok = not args.no_mpi
    if mpi_ok:
        try:
            import mpi4py  # noqa: F401

            executors.append((f"MPI(workers={w}) spawn", lambda *s: florin.MPI(*s, workers=w)))
        except ImportError:
            mpi_ok = False
            print("MPI: mpi4py not installed (pip install '.[mpi]'), skipped")

    pipes = [(name, pipeline(make, tile_shape)) for name, make in executors]
    expected = None
    for name, pipe in pipes:  # warm-up (JIT, worker pools), and every result checked against Serial's
        result = pipe(volume).values
        if expected is None:
            expected = result
        elif not np.array_equal(result, expected):
            print(f"{name}: RESULT DIFFERS FROM SERIAL")
            sys.exit(1)
    # Rounds: every executor once per round, so that a slow spell of a shared machine hits all of them alike.
    best = {name: math.inf for name, _ in pipes}
    for _ in range(args.repeat):
        for name, pipe in pipes:
            start = time.perf_counter()
            pipe(volume)
            best[name] = min(best[name], time.perf_counter() - start)
    serial = best["Serial"]
    results = []
    print(f"{'executor':34s} {'seconds':>8s} {'speedup':>8s}")
    for name, _ in pipes:
        seconds = best[name]
        results.append({"name": name, "seconds": round(seconds, 4), "speedup": round(serial / seconds, 2)})
        print(f"{name:34s} {seconds:8.2f} {serial / seconds:7.2f}x", flush=True)
    if mpi_ok:
        name = f"MPI SPMD (mpiexec -n {w})"
        seconds, problem = run_spmd(args, int(expected.sum()))
        if seconds is None:
            print(f"{name:34s} {problem}")
        else:
            results.append({"name": name, "seconds": round(seconds, 4), "speedup": round(serial / seconds, 2)})
            print(f"{name:34s} {seconds:8.2f} {serial / seconds:7.2f}x")

    procs = next((r for r in results if r["name"].startswith("Multiprocess")), None)
    if procs is not None:
        verdict = "met" if procs["speedup"] >= 1.7 else "NOT met"
        print(f"\ngoal {w} processes >= 1.7x Serial: {procs['speedup']:.2f}x, {verdict}")
    print(f"machine capacity after the runs: {parallel_capacity(w):.2f} of {w} cores")
    try:
        print(f"load average (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    except OSError:
        pass

    if args.json:
        with open(args.json, "w") as f:
            json.dump({
                "benchmark": "parallel",
                "title": f"Tiled NDNT + binary_opening, {w} workers, speedup over Serial",
                "config": {"shape": list(shape), "tile": list(tile_shape), "ndnt_shape": list(NDNT_SHAPE),
                           "workers": w, "kernel_threads": args.kernel_threads, "repeat": args.repeat,
                           "capacity": round(capacity, 2)},
                "results": results,
                "baseline": "Serial",
            }, f, indent=2)


if __name__ == "__main__":
    if ARGS.spmd_rank:
        spmd_rank_main(ARGS)
    else:
        main(ARGS)
