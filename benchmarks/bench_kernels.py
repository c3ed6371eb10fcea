"""Benchmark: the classic pipeline's kernels, step by step, with 1 and 2 threads, against scipy / scikit-image.

Steps, each run on the previous step's output as the pipeline runs them:

- ``ndnt``: florin's NDNT (``(5, 33, 33)``, threshold 0.25) on a ``uint16`` volume; peer: the scipy box mean
  (``uniform_filter`` in float32) and the comparison;
- ``binary_opening``: the default radius-1 cross; peer: ``skimage.morphology.binary_opening`` (scipy's
  ``binary_erosion`` and ``binary_dilation``);
- ``remove_small_objects``: objects below 64 voxels, face connectivity; peer:
  ``skimage.morphology.remove_small_objects``;
- ``label``: face connectivity; peer: ``scipy.ndimage.label``;
- ``region_stats``: area, bbox, centroid and intensity statistics; peer: ``skimage.measure.regionprops_table``
  with the same properties.

Every result is checked equal to the peer's (NDNT: the scipy box mean can differ only at float ties, counted).
florin runs with 1 and with 2 numba threads (through the kernels' one threading guard, ``numba_threads``); the
configurations run in interleaved rounds (best of ``--rounds``), the peers once (they are slow), so a busy spell of a
shared machine hits every configuration alike. The load average is printed before and after: thread scaling is
only meaningful when it is below the number of cores.

    python benchmarks/bench_kernels.py [--mib 256] [--rounds 3] [--no-peers] [--json PATH]

``--mib`` is the size of the ``uint16`` input (256 MiB: (512, 512, 512); 1024: (1024, 1024, 512)).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
import warnings

import numpy as np
from scipy import ndimage as ndi

from florin._kernels import morphology as km
from florin._kernels import sizes as ks
from florin._kernels._threads import numba_threads
from florin._kernels.label import label
from florin._kernels.ndnt import ndnt_mask
from florin._kernels.regions import region_stats

NDNT_SHAPE = (5, 33, 33)
THRESHOLD = 0.25
MIN_SIZE = 64
CROSS = ndi.generate_binary_structure(3, 1)


def make_volume(mib, seed=0):
    """A ``uint16`` volume of ``mib`` MiB: smooth blobs of varied brightness, a gradient and noise."""
    voxels = mib * 2**20 // 2
    x = 512
    y = 1024 if voxels >= 1024 * 1024 * 512 else 512
    z = max(8, voxels // (y * x))
    rng = np.random.default_rng(seed)
    coarse = rng.random((z // 8 + 1, y // 8 + 1, x // 8 + 1), dtype=np.float32)
    field = ndi.zoom(coarse, 8, order=1)[:z, :y, :x]
    image = field * 2000 + np.linspace(0, 500, x, dtype=np.float32) + rng.normal(0, 150, (z, y, x)).astype(np.float32)
    return np.clip(image, 0, 65535).astype(np.uint16)


def _usage():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_stime, r.ru_minflt


def _timed(out, step, func):
    """Run ``func``, store ``(wall s, CPU s, result, system s, minor faults)`` as ``out[step]``; return the result.

    The CPU time of a one-thread run is its work, whatever the machine's load; the system time and the minor
    page faults show what first touches of fresh memory cost (they do not scale with threads).
    """
    wall, cpu, (sys0, flt0) = time.perf_counter(), time.process_time(), _usage()
    result = func()
    sys1, flt1 = _usage()
    out[step] = (time.perf_counter() - wall, time.process_time() - cpu, result, sys1 - sys0, flt1 - flt0)
    return result


def florin_steps(image, threads):
    """``{step: (wall, cpu, result)}`` for one run of the kernels with ``threads`` numba threads."""
    out = {}
    with numba_threads(threads):
        mask = _timed(out, "ndnt", lambda: ndnt_mask(image, NDNT_SHAPE, THRESHOLD, threads=threads))
        opened = _timed(
            out,
            "binary_opening",
            lambda: km.binary_dilation(km.binary_erosion(mask, CROSS, threads=threads), CROSS, threads=threads),
        )
        kept = _timed(out, "remove_small_objects", lambda: ks.remove_small_objects(opened, MIN_SIZE, 1))
        labels, n = _timed(out, "label", lambda: label(kept, 1))
        _timed(out, "region_stats", lambda: region_stats(labels, n, image))
    return out


def _box_mean_ndnt(image):
    h = np.array(NDNT_SHAPE) // 2
    total = ndi.uniform_filter(image.astype(np.float32), 2 * h + 1, mode="constant")
    mean = total / ndi.uniform_filter(np.ones(image.shape, np.float32), 2 * h + 1, mode="constant")
    return image <= (1 - THRESHOLD) * mean


def peer_steps(image):
    """The same steps with scipy and scikit-image, one thread."""
    import skimage.morphology as skm
    from skimage.measure import regionprops_table

    out = {}
    props = ("label", "area", "bbox", "centroid", "intensity_mean", "intensity_min")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-image 0.26 deprecates binary_opening
        mask = _timed(out, "ndnt", lambda: _box_mean_ndnt(image))
        opened = _timed(out, "binary_opening", lambda: skm.binary_opening(mask, CROSS))
        kept = _timed(
            out, "remove_small_objects", lambda: skm.remove_small_objects(opened, max_size=MIN_SIZE - 1, connectivity=1)
        )
        labels, _ = _timed(out, "label", lambda: ndi.label(kept, CROSS))
        _timed(out, "region_stats", lambda: regionprops_table(labels, image, properties=props))
    return out


def check(ours, peer, step):
    a, b = ours[step][2], peer[step][2]
    if step == "ndnt":
        return f"{int((a != b).sum())} float-tie voxels differ"
    if step == "label":
        np.testing.assert_array_equal(a[0], b[0])
    elif step == "region_stats":
        np.testing.assert_array_equal(a["area"], b["area"])
    else:
        np.testing.assert_array_equal(a, b)
    return "equal"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="size of the uint16 input in MiB (default 256)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-peers", action="store_true", help="skip scipy / scikit-image")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = parser.parse_args(argv)

    import numba

    image = make_volume(args.mib)
    print(
        f"volume {image.shape} uint16 ({image.nbytes / 2**20:.0f} MiB), cpus {os.cpu_count()}, "
        f"numba threads {numba.get_num_threads()}, layer after warm-up: ",
        end="",
    )
    florin_steps(image[:8, :64, :64], 2)  # warm-up: load or compile the kernels
    print(numba.threading_layer())
    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")

    steps = ["ndnt", "binary_opening", "remove_small_objects", "label", "region_stats"]
    wall = {1: dict.fromkeys(steps, np.inf), 2: dict.fromkeys(steps, np.inf)}
    cpu = {1: dict.fromkeys(steps, np.inf), 2: dict.fromkeys(steps, np.inf)}
    sys_ = {1: dict.fromkeys(steps, np.inf), 2: dict.fromkeys(steps, np.inf)}
    faults = {1: dict.fromkeys(steps, 0), 2: dict.fromkeys(steps, 0)}
    last = {}
    for r in range(args.rounds):
        for threads in (1, 2) if r % 2 == 0 else (2, 1):
            res = florin_steps(image, threads)
            last[threads] = res
            for s in steps:
                wall[threads][s] = min(wall[threads][s], res[s][0])
                if res[s][1] < cpu[threads][s]:  # the CPU, system time and faults of the least-CPU round
                    cpu[threads][s], sys_[threads][s], faults[threads][s] = res[s][1], res[s][3], res[s][4]
        print(f"  round {r + 1}: load {os.getloadavg()[0]:.2f}")
    for s in steps:  # every thread count gives the same result
        check(last[1], last[2], s)
    peer = None if args.no_peers else peer_steps(image)
    load_after = os.getloadavg()

    header = f"{'step':22s} {'1 thread':>9s} {'2 threads':>10s} {'2 vs 1':>7s} {'cpu 1/2':>13s} {'sys 1/2':>13s} {'minflt 1/2':>15s}"
    if peer:
        header += f" {'peer':>8s} {'peer/2thr':>10s} {'cpu: peer/1thr':>15s}  check"
    print("wall seconds (best of the rounds); peer = scipy / scikit-image, one run; cpu = process time, sys = its "
          "system part and minflt = minor page faults, with 1 / 2 threads (the round of least cpu)")
    print(header)
    rows = []
    for s in [*steps, "all steps"]:
        if s == "all steps":
            t1, t2 = sum(wall[1].values()), sum(wall[2].values())
            c, sy, fl = ({k: sum(d[k].values()) for k in (1, 2)} for d in (cpu, sys_, faults))
        else:
            t1, t2 = wall[1][s], wall[2][s]
            c, sy, fl = ({k: d[k][s] for k in (1, 2)} for d in (cpu, sys_, faults))
        c1 = c[1]
        line = (f"{s:22s} {t1:9.3f} {t2:10.3f} {t1 / t2:6.2f}x {c[1]:6.2f}/{c[2]:<6.2f} {sy[1]:6.2f}/{sy[2]:<6.2f}"
                f" {fl[1]:7d}/{fl[2]:<7d}")
        row = [{"group": s, "name": "florin, 1 thread", "seconds": t1, "cpu_seconds": c1, "sys_seconds": sy[1],
                "minor_faults": fl[1]},
               {"group": s, "name": "florin, 2 threads", "seconds": t2, "cpu_seconds": c[2], "sys_seconds": sy[2],
                "minor_faults": fl[2]}]
        if peer:
            if s == "all steps":
                tp, cp, verdict = sum(v[0] for v in peer.values()), sum(v[1] for v in peer.values()), ""
            else:
                tp, cp, verdict = peer[s][0], peer[s][1], check(last[2], peer, s)
            line += f" {tp:8.3f} {tp / t2:9.1f}x {cp / c1:14.1f}x  {verdict}"
            row.append({"group": s, "name": "scipy / scikit-image", "seconds": tp, "cpu_seconds": cp})
        rows += row
        print(line)
    print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "benchmark": "kernels",
                    "title": "Pipeline kernels: 1 and 2 threads, and scipy / scikit-image",
                    "config": {
                        "shape": list(image.shape),
                        "mib": args.mib,
                        "cpus": os.cpu_count(),
                        "load_before": load_before,
                        "load_after": load_after,
                    },
                    "results": rows,  # the common format of docs/_scripts/plot_benchmarks.py, a group a step
                    "baseline": "florin, 2 threads",
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
