"""Benchmark: connected components + region statistics against peers.

Volume: Gaussian-smoothed white noise (sigma 1.0 voxel, seed 0) thresholded at
its 70th percentile; at (100, 512, 512) that gives about 24k objects at
connectivity 1 (face connectivity; one large percolating object plus many
small ones). Compared, each as labeling + per-object area, bbox and centroid:

- florin API: ``florin.conncomp.label`` + ``florin.conncomp.regionprops`` (the public
  path: DataArrays in and out, a ``Regions`` collection with the full property table)
- florin kernels: ``florin._kernels.label.label`` + ``florin._kernels.regions.region_stats``
- scikit-image: ``skimage.measure.label`` + ``regionprops_table(properties=
  ('label', 'area', 'bbox', 'centroid'))``
- cc3d: ``cc3d.connected_components`` + ``cc3d.statistics``

Goals: florin >= 5x faster than scikit-image and within 1.5x of cc3d (checked for
both florin paths; ratios are relative to the public API path).
Times are the best of ``--repeat`` runs after a warm-up (scikit-image: one run,
it is slow). ``--small`` runs on (20, 256, 256) for a quick check.

    python benchmarks/bench_objects.py [--small] [--repeat N] [--connectivity 1|2|3] [--json PATH]

``--json PATH`` also writes the results in the benchmarks' common format (see
``docs/_scripts/plot_benchmarks.py``), from which the docs' performance page
draws its plot.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
from _timing import best_of  # benchmarks/, the script's folder
from scipy import ndimage as ndi

from florin._kernels.label import label
from florin._kernels.regions import region_stats

SIGMA = 1.0
PERCENTILE = 70
CC3D_CONNECTIVITY = {1: 6, 2: 18, 3: 26}


def make_volume(shape, seed=0):
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(shape, dtype=np.float32)
    smooth = ndi.gaussian_filter(noise, SIGMA)
    return smooth > np.percentile(smooth, PERCENTILE)


def run_florin(mask, connectivity):
    labels, n = label(mask, connectivity)
    stats = region_stats(labels, n)
    return n, stats


def run_florin_api(mask, connectivity):
    import florin.conncomp as conncomp

    labels = conncomp.label(mask, connectivity=connectivity)
    regions = conncomp.regionprops(labels)
    return len(regions), regions


def run_skimage(mask, connectivity):
    from skimage.measure import label as sk_label
    from skimage.measure import regionprops_table

    labels, n = sk_label(mask, connectivity=connectivity, return_num=True)
    table = regionprops_table(labels, properties=("label", "area", "bbox", "centroid"))
    return n, table


def run_cc3d(mask, connectivity):
    import cc3d

    labels, n = cc3d.connected_components(mask, connectivity=CC3D_CONNECTIVITY[connectivity], return_N=True)
    stats = cc3d.statistics(labels)
    return n, stats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="(20, 256, 256) quick run")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--connectivity", type=int, default=1, choices=(1, 2, 3))
    parser.add_argument("--no-skimage", action="store_true", help="skip scikit-image (slow)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = parser.parse_args(argv)
    shape = (20, 256, 256) if args.small else (100, 512, 512)
    c = args.connectivity

    import numba

    print(
        f"volume {shape}, sigma {SIGMA}, threshold at {PERCENTILE}th percentile, "
        f"connectivity {c}; numba threads {numba.get_num_threads()}, cpus {os.cpu_count()}"
    )
    mask = make_volume(shape)
    print(f"foreground fraction {mask.mean():.3f}")

    run_florin(mask[:2], c)  # warm-up (loads or compiles the kernels)
    t_florin, (n, stats) = best_of(lambda: run_florin(mask, c), args.repeat)
    lab_time, _ = best_of(lambda: label(mask, c), args.repeat)
    run_florin_api(mask[:2], c)
    t_api, (n_api, regions) = best_of(lambda: run_florin_api(mask, c), args.repeat)
    assert n_api == n
    np.testing.assert_array_equal(regions.table["area"], stats["area"])
    print(f"objects: {n}")
    rows = [
        ("florin API (conncomp.label + regionprops)", t_api, n_api),
        ("florin kernels (label + region_stats)", t_florin, n),
    ]
    print(f"  florin label alone: {lab_time:.3f} s")

    try:
        import cc3d  # noqa: F401
    except ImportError:
        print("cc3d not installed: skipped")
    else:
        run_cc3d(mask[:2], c)
        t_cc3d, (n_cc3d, st) = best_of(lambda: run_cc3d(mask, c), args.repeat)
        np.testing.assert_array_equal(st["voxel_counts"][1:], stats["area"])
        rows.append(("cc3d (connected_components + statistics)", t_cc3d, n_cc3d))

    if not args.no_skimage:
        t_sk, (n_sk, table) = best_of(lambda: run_skimage(mask, c), 1)
        np.testing.assert_array_equal(table["area"], stats["area"])
        rows.append(("scikit-image (label + regionprops_table)", t_sk, n_sk))

    print(f"{'implementation':44s} {'time [s]':>9s} {'objects':>8s} {'vs florin API':>14s}")
    for name, t, count in rows:
        print(f"{name:44s} {t:9.3f} {count:8d} {t / t_api:13.2f}x")
    goals = {"cc3d": 1 / 1.5, "scikit-image": 5.0}
    for name, t, _ in rows[2:]:
        peer = name.split()[0]
        for ours, t_ours in (("florin API", t_api), ("florin kernels", t_florin)):
            speedup = t / t_ours
            verdict = "met" if speedup >= goals[peer] else "NOT met"
            print(f"{ours} speed-up over {peer}: {speedup:.2f}x (goal >= {goals[peer]:.2f}x: {verdict})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({
                "benchmark": "objects",
                "title": "Connected components + region statistics",
                "config": {"shape": list(shape), "connectivity": c, "objects": int(n),
                           "threads": numba.get_num_threads(), "cpus": os.cpu_count()},
                "results": [{"name": name, "seconds": t, "objects": int(count)} for name, t, count in rows],
                "baseline": rows[0][0],
            }, f, indent=2)


if __name__ == "__main__":
    main()
