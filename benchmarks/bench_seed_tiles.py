"""Benchmark: every seed example's tiled part, with its own tile parameters, tiled vs whole volume (issue 15 item 7).

The tiled parts of examples/ and the seed docs (load and save left out)::

    seed       tile(shape=(10, 64, 64), stride=(10, 32, 32)), ndnt(shape=(10, 64, 64), threshold=0.3), opening
               (first_example, florinate_inline, single_argument, multithread/multiprocess/mpi/mixed_parallelism,
               weak_classification, the seed docs)
    decorator  the same with florinate_decorator's ``scale(scalar=2.0)`` first (a florinated function that
               declares no halo: florin keeps the user's tiles)
    hdf5       tile(shape=(16, 128, 128)), ndnt(shape=(9, 33, 33), threshold=0.3), opening (large_volume_hdf5)
    slurm      tile(shape=(32, 128, 64)), ndnt(shape=(10, 64, 64), threshold=0.3), opening (slurm_pipeline)

each timed on a (64, 512, 512) ``uint16`` phantom (``florin.data.phantom``, seed 0) as
``Serial(tile(...), EXECUTOR(*steps))`` with EXECUTOR Serial, Multithread(workers=2) and Multiprocess(workers=2),
against the whole-volume run ``Serial(*steps)``. After one warm-up of every configuration (JIT, worker pools),
``--repeat`` interleaved rounds run every configuration once each; the best time counts. Every result is checked
equal to the whole-volume one. The load average is printed before and after. Goal: Serial tiled <= 1.5x whole,
2 workers tiled faster than Serial whole.

    python benchmarks/bench_seed_tiles.py [--quick] [--repeat N] [--only NAME ...] [--json PATH]

``--quick`` runs on (32, 256, 256) with one round. ``--json PATH`` writes the results in the benchmarks'
common format (``docs/_scripts/plot_benchmarks.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import best_of  # noqa: E402

import florin  # noqa: E402
import florin.morphology as morphology  # noqa: E402
import florin.thresholding as thresholding  # noqa: E402
from florin.data import phantom  # noqa: E402


@florin.florinate
def scale(image, scalar=1):
    """florinate_decorator's example function (declares no halo)."""
    return image * scalar


def examples():
    """``{name: (tile step, steps)}``: the seed examples' tiled parts."""
    seed_steps = lambda: [thresholding.ndnt(shape=(10, 64, 64), threshold=0.3), morphology.binary_opening()]  # noqa: E731
    return {
        "seed": (lambda: florin.tile(shape=(10, 64, 64), stride=(10, 32, 32)), seed_steps),
        "decorator": (lambda: florin.tile(shape=(10, 64, 64), stride=(10, 32, 32)),
                      lambda: [scale(scalar=2.0), *seed_steps()]),
        "hdf5": (lambda: florin.tile(shape=(16, 128, 128), stride=(16, 128, 128)),
                 lambda: [thresholding.ndnt(shape=(9, 33, 33), threshold=0.3), morphology.binary_opening()]),
        "slurm": (lambda: florin.tile(shape=(32, 128, 64), stride=(32, 128, 64)), seed_steps),
    }


EXECUTORS = {
    "serial": lambda steps: florin.Serial(*steps),
    "multithread2": lambda steps: florin.Multithread(*steps, workers=2),
    "multiprocess2": lambda steps: florin.Multiprocess(*steps, workers=2),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="(32, 256, 256), one round")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved timed rounds (default 3)")
    parser.add_argument("--only", nargs="*", help="example names to run (default: all)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = parser.parse_args(argv)
    shape, repeat = ((32, 256, 256), 1) if args.quick else ((64, 512, 512), args.repeat)
    image = phantom(shape, seed=0).image
    print(f"volume {shape} {image.dtype}; load average before: {os.getloadavg()}", flush=True)
    chosen = {k: v for k, v in examples().items() if not args.only or k in args.only}
    runs = {}
    for name, (make_tile, make_steps) in chosen.items():
        runs[(name, "whole")] = lambda m=make_steps: florin.Serial(*m())(image)
        for executor, wrap in EXECUTORS.items():
            runs[(name, executor)] = lambda t=make_tile, m=make_steps, w=wrap: florin.Serial(t(), w(m()))(image)
    best, results = dict.fromkeys(runs, float("inf")), {}
    for key, run in runs.items():  # warm-up: JIT, worker pools
        results[key] = np.asarray(run().values)
    for _ in range(repeat):
        for key, run in runs.items():
            seconds, _ = best_of(run, 1)
            best[key] = min(best[key], seconds)
    print(f"{'example':10} {'whole s':>8} " + " ".join(f"{e + ' s':>16}" for e in EXECUTORS) + "  serial/whole")
    ok = True
    for name in chosen:
        for executor in EXECUTORS:
            equal = np.array_equal(results[(name, executor)], results[(name, "whole")])
            ok &= equal
            if not equal:
                print(f"MISMATCH: {name} under {executor} differs from the whole-volume result")
        whole = best[(name, "whole")]
        cells = " ".join(f"{best[(name, e)]:16.3f}" for e in EXECUTORS)
        print(f"{name:10} {whole:8.3f} {cells}  {best[(name, 'serial')] / whole:10.2f}x")
    print(f"results equal: {ok}; load average after: {os.getloadavg()}")
    if args.json:
        results = [{"name": f"{name} {e}", "seconds": round(best[(name, e)], 4)}
                   for name in chosen for e in ("whole", *EXECUTORS)]
        with open(args.json, "w") as f:
            json.dump({"benchmark": "seed_tiles", "title": "Seed examples' tiled parts: tiled vs whole volume",
                       "config": {"shape": list(shape), "repeat": repeat}, "results": results}, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
