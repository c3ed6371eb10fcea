"""Benchmark the NDNT kernel against what a user would otherwise write.

Run ``python benchmarks/bench_ndnt.py`` (full size: a (128, 512, 512) volume,
neighborhood (11, 65, 65)) or ``--small`` for a quick smoke run.  For float32
and uint16 volumes it times, in one process:

* florin's NDNT kernel with 1 thread and with all numba threads;
* ``scipy.ndimage.uniform_filter`` (float32 box mean) + compare;
* ``skimage.filters.threshold_local(method='mean')`` + compare (timed once: slow);
* a numpy copy of the input (the memory-bandwidth floor);

and prints the times and their ratios, plus the peak extra memory of one NDNT
call, measured by sampling the process RSS in a thread, next to the analytic
figure (output mask + per-thread rolling planes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numba
import numpy as np
import psutil
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import best_of  # noqa: E402  (benchmarks/, the script's folder)

from florin._kernels.ndnt import ndnt_mask  # noqa: E402

T = 0.25  # threshold (fraction)


class RssPeak:
    """Sample the process RSS every 0.5 ms; ``peak - base`` is the extra memory."""

    def __init__(self):
        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.0005)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def make_volume(shape, rng):
    """A smooth background with noise and dark blobs, float32 in [0, 1]."""
    z, y, x = np.meshgrid(*[np.linspace(0, 1, n, dtype=np.float32) for n in shape], indexing="ij", sparse=True)
    vol = 0.5 + 0.2 * np.sin(3 * x + 2 * y + z)
    vol = vol + rng.random(shape, dtype=np.float32) * 0.2
    centres = rng.integers(0, shape, size=(max(4, vol.size // 200_000), 3))
    for c in centres:
        sl = tuple(slice(max(0, ci - 3), ci + 3) for ci in c)
        vol[sl] *= 0.3
    return np.ascontiguousarray(vol, dtype=np.float32)


def fmt_mb(n):
    return f"{n / 2**20:8.1f} MiB"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="quick smoke run on a (32, 128, 128) volume")
    parser.add_argument("--repeat", type=int, default=3, help="timings are the best of this many runs")
    parser.add_argument("--skip-skimage", action="store_true", help="do not time skimage.threshold_local")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON (docs/_scripts/plot_benchmarks.py)")
    args = parser.parse_args(argv)

    shape, nshape = ((32, 128, 128), (5, 17, 17)) if args.small else ((128, 512, 512), (11, 65, 65))
    all_threads = numba.config.NUMBA_NUM_THREADS
    print(f"volume {shape}, neighborhood {nshape}, threshold {T}, numba threads available: {all_threads}")
    print(f"load average before: {os.getloadavg()}")
    rng = np.random.default_rng(0)
    f32 = make_volume(shape, rng)
    u16 = (f32 * 4000).astype(np.uint16)

    # compile once, outside the timings (cache=True makes later processes skip this)
    for vol in (f32, u16):
        small = np.ascontiguousarray(vol[:8, :40, :40])
        ndnt_mask(small, nshape, T, threads=1)
        ndnt_mask(small, nshape, T, threads=all_threads)

    results, records = {}, []
    for name, vol in (("float32", f32), ("uint16", u16)):
        print(f"\n== {name}: {fmt_mb(vol.nbytes).strip()} input")
        # memory first, in a clean state
        with RssPeak() as rss:
            mask = ndnt_mask(vol, nshape, T, threads=all_threads)
        planes = all_threads * shape[1] * shape[2] * 8
        print(
            f"peak extra RSS of one NDNT call: {fmt_mb(rss.peak - rss.base)}"
            f"  (analytic: mask {fmt_mb(mask.nbytes).strip()} + rolling planes <= {fmt_mb(planes).strip()};"
            f" beyond the mask {((rss.peak - rss.base) - mask.nbytes) / vol.nbytes:.2f}x the input)"
        )
        del mask

        t1, _ = best_of(lambda vol=vol: ndnt_mask(vol, nshape, T, threads=1), args.repeat)
        tn, _ = best_of(lambda vol=vol: ndnt_mask(vol, nshape, T, threads=all_threads), args.repeat)

        def scipy_user(vol=vol):
            image = vol if vol.dtype == np.float32 else vol.astype(np.float32)
            mean = ndi.uniform_filter(image, nshape, mode="constant")
            return image <= (1 - T) * mean

        ts, _ = best_of(scipy_user, args.repeat)
        tc, _ = best_of(lambda vol=vol: vol.copy(), args.repeat)
        tk = None
        if not args.skip_skimage:
            from skimage.filters import threshold_local

            block = tuple(s | 1 for s in nshape)  # threshold_local needs odd block sizes

            def skimage_user(vol=vol, block=block):
                thr = threshold_local(vol, block_size=block, method="mean", mode="constant")
                return vol <= (1 - T) * thr

            tk, _ = best_of(skimage_user, 1)
        results[name] = (t1, tn, ts, tk, tc)
        extra = (rss.peak - rss.base) / 2**20
        records += [
            {"group": name, "name": "florin NDNT, 1 thread", "seconds": t1, "peak_extra_mib": extra},
            {"group": name, "name": f"florin NDNT, {all_threads} threads", "seconds": tn},
            {"group": name, "name": "scipy uniform_filter + compare", "seconds": ts},
        ]
        if tk is not None:
            records.append({"group": name, "name": "skimage threshold_local(mean)", "seconds": tk})
        records.append({"group": name, "name": "numpy copy of the input", "seconds": tc})
        print(f"florin NDNT, 1 thread          {t1:8.3f} s")
        print(f"florin NDNT, {all_threads} threads         {tn:8.3f} s   speed-up vs 1 thread: {t1 / tn:5.2f}x")
        print(f"scipy uniform_filter + compare {ts:8.3f} s   florin 1 thread is {ts / t1:5.1f}x faster")
        if tk is not None:
            print(f"skimage threshold_local(mean)  {tk:8.3f} s   florin 1 thread is {tk / t1:5.1f}x faster")
        print(f"numpy copy of the input        {tc:8.3f} s   florin 1 thread = {t1 / tc:5.1f} copies")
    print(f"\nload average after: {os.getloadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({
                "benchmark": "ndnt",
                "title": "NDNT vs. what a user would write",
                "config": {"shape": list(shape), "neighborhood": list(nshape), "threshold": T,
                           "threads": all_threads, "cpus": os.cpu_count()},
                "results": records,
                "baseline": "florin NDNT, 1 thread",
            }, f, indent=2)
    return results


if __name__ == "__main__":
    main()
