"""Benchmark: ``florin segment`` end to end against the scipy / scikit-image script and dask-image, per step.

One ``uint16`` TIFF (smooth blobs, a gradient and noise, see ``bench_kernels.make_volume``) goes through the classic
pipeline with two classes and an objects table:

- **florin**: ``florin segment IN.tif -o classes.tif --shape 5,33,33 --class small:area=..500 --class large
  --objects objects.csv`` run in this process (``florin.cli.main``); per-step times from florin's own timing summary.
- **script**: what a user writes with scipy / scikit-image: ``tifffile.imread``, the NDNT box mean
  (``uniform_filter`` in float32) and comparison, ``skimage.morphology.binary_opening``, ``remove_small_objects``,
  ``skimage.measure.label``, ``regionprops_table`` (area, bbox, centroid, intensity mean/min/max), the class lookup,
  ``tifffile.imwrite`` and the CSV.
- **dask-image**: the same steps on a dask array in blocks of ``--chunks`` (default (64, 256, 256)) on the threaded
  scheduler: ``map_overlap`` box mean, ``ndmorph.binary_erosion`` / ``binary_dilation`` (scikit-image's borders),
  ``ndmeasure.label``, sizes by ``da.bincount``, a relabel lookup, area, intensity mean and centroid by weighted
  ``da.bincount`` (dask-image's ``ndmeasure.mean`` and friends take ~0.07 s per label, hopeless for thousands of
  objects; its ``find_objects`` needs dask.dataframe and pyarrow, so no bounding boxes or minima), the class
  lookup, the TIFF and the CSV. Each step is
  persisted so that it can be timed (dask would otherwise fuse them).
- **FLoRIN 0.0.2** (``--florin002 WHEEL``): its NDNT alone (integral image), where it still runs. The wheel is not
  downloaded by this script: ``pip download --no-deps florin==0.0.2.post1 -d DIR``.

The implementations run in interleaved rounds in one process (best of ``--rounds`` for the totals), so a busy spell
of a shared machine hits them alike; the load average is printed before and after. The class volumes are compared
(NDNT in float32 may differ from florin's exact decisions at ties: the differing voxels are counted), and so are
the objects tables (objects, areas, intensity means). dask-image is no florin dependency: ``pip install dask-image``.

    python benchmarks/bench_pipeline.py [--mib 64] [--rounds 2] [--no-dask] [--florin002 WHEEL] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import sys
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_kernels import make_volume  # noqa: E402  (benchmarks/, the script's folder)

NDNT_SHAPE = (5, 33, 33)
THRESHOLD = 0.25
MIN_SIZE = 64
SMALL_MAX_AREA = 500  # class 1 "small": area <= 500, class 2 "large": the rest
CROSS = ndi.generate_binary_structure(3, 1)
PROPS = ("label", "area", "bbox", "centroid", "intensity_mean", "intensity_min", "intensity_max")


class Steps:
    """Wall seconds per step, in order."""

    def __init__(self):
        self.times = {}

    @contextlib.contextmanager
    def __call__(self, name):
        start = time.perf_counter()
        yield
        self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - start


def run_florin(tif, out):
    import florin.cli.segment as cli_segment
    from florin.cli import main

    args = ["--quiet", "segment", str(tif), "-o", str(out / "florin.tif"), "--shape", ",".join(map(str, NDNT_SHAPE)),
            "--threshold", str(THRESHOLD), "--min-size", str(MIN_SIZE),
            "--class", f"small:area=..{SMALL_MAX_AREA}", "--class", "large",
            "--objects", str(out / "florin.csv"), "--overwrite"]  # fmt: skip
    timings = {}
    report = cli_segment._report_timings  # the CLI's per-step timing summary: keep what it reports
    cli_segment._report_timings = timings.update
    try:
        code = main(args)
    finally:
        cli_segment._report_timings = report
    assert code == 0, f"florin segment exited {code}"
    return timings, out / "florin.tif"


def _classes_of(area):
    return np.concatenate([[0], np.where(area <= SMALL_MAX_AREA, 1, 2)]).astype(np.uint8)


def _box_mean_ndnt(image):
    size = 2 * (np.array(NDNT_SHAPE) // 2) + 1
    total = ndi.uniform_filter(image.astype(np.float32), size, mode="constant")
    mean = total / ndi.uniform_filter(np.ones(image.shape, np.float32), size, mode="constant")
    return image <= (1 - THRESHOLD) * mean


def run_script(tif, out):
    import pandas as pd
    import skimage.measure as skmeasure
    import skimage.morphology as skm

    step = Steps()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-image 0.26 deprecates binary_opening
        with step("load"):
            image = tifffile.imread(tif)
        with step("ndnt"):
            mask = _box_mean_ndnt(image)
        with step("binary_opening"):
            mask = skm.binary_opening(mask, CROSS)
        with step("remove_small_objects"):
            mask = skm.remove_small_objects(mask, max_size=MIN_SIZE - 1, connectivity=1)
        with step("label"):
            labels = skmeasure.label(mask, connectivity=1)
        with step("regionprops"):
            table = skmeasure.regionprops_table(labels, image, properties=PROPS)
        with step("classify"):
            lut = _classes_of(table["area"])
        with step("save_objects"):
            pd.DataFrame(table).assign(cls=lut[1:]).to_csv(out / "script.csv", index=False)
        with step("reconstruct"):
            classes = lut[labels]
        with step("save"):
            tifffile.imwrite(out / "script.tif", classes)
    return step.times, out / "script.tif"


def run_dask(tif, out, chunks):
    import dask
    import dask.array as da
    import pandas as pd
    from dask_image import ndmeasure, ndmorph

    step = Steps()
    h = tuple(s // 2 for s in NDNT_SHAPE)
    size = tuple(2 * x + 1 for x in h)

    def box_sum(block):
        return ndi.uniform_filter(block.astype(np.float32), size, mode="constant")

    with dask.config.set(scheduler="threads"):
        with step("load"):
            image = da.from_array(tifffile.imread(tif), chunks=chunks)
        with step("ndnt"):
            total = image.map_overlap(box_sum, depth=h, boundary=0, dtype=np.float32)
            count = da.ones(image.shape, np.float32, chunks=chunks).map_overlap(box_sum, depth=h, boundary=0)
            mask = (image <= (1 - THRESHOLD) * (total / count)).persist()
        with step("binary_opening"):
            eroded = ndmorph.binary_erosion(mask, CROSS, border_value=1)
            mask = ndmorph.binary_dilation(eroded, CROSS, border_value=0).persist()
        with step("remove_small_objects"):
            labels, n = ndmeasure.label(mask, CROSS)
            labels, n = dask.persist(labels, n)
            n = int(n.compute())
            sizes = da.bincount(labels.ravel(), minlength=n + 1).compute()
            keep = sizes >= MIN_SIZE
            keep[0] = False
            relabel = np.zeros(n + 1, labels.dtype)
            relabel[keep] = np.arange(1, int(keep.sum()) + 1, dtype=labels.dtype)
        with step("label"):
            labels = labels.map_blocks(lambda b: relabel[b], dtype=labels.dtype).persist()
            m = int(keep.sum())
        with step("regionprops"):
            # dask-image's ndmeasure.mean / minimum / ... take ~0.07 s per label (7.5 s for 100 labels here),
            # hopeless for thousands of objects: what a dask user writes instead is weighted bincounts
            # (area, intensity mean, centroid; no per-object minimum, maximum or bounding box).
            index = np.arange(1, m + 1)
            flat = labels.ravel()
            weights = [image.ravel().astype(np.float64)]
            weights += [g.ravel().astype(np.float64) for g in da.indices(image.shape, chunks=chunks)]
            sums = dask.compute(
                da.bincount(flat, minlength=m + 1), *(da.bincount(flat, w, minlength=m + 1) for w in weights)
            )
            area = sums[0][1:]
            mean = sums[1][1:] / area
            centroid = np.stack([c[1:] / area for c in sums[2:]], axis=1)
        with step("classify"):
            lut = _classes_of(np.asarray(area))
        with step("save_objects"):
            table = pd.DataFrame({"label": index, "area": area, "intensity_mean": mean, "cls": lut[1:]})
            table[["centroid-0", "centroid-1", "centroid-2"]] = centroid
            table.to_csv(out / "dask.csv", index=False)
        with step("reconstruct"):
            classes = labels.map_blocks(lambda b: lut[b], dtype=np.uint8).compute()
        with step("save"):
            tifffile.imwrite(out / "dask.tif", classes)
    return step.times, out / "dask.tif"


def compare_objects(mine, theirs):
    """How the objects table ``theirs`` differs from ``mine`` (CSV paths): objects, areas, intensity means."""
    import pandas as pd

    a, b = pd.read_csv(mine), pd.read_csv(theirs)
    if len(a) != len(b):
        return f"{len(b)} objects against florin's {len(a)}"
    # numbering may differ (dask-image's label): sort both by (area, mean)
    a, b = (t.sort_values(["area", "intensity_mean"], ignore_index=True) for t in (a, b))
    areas = int((a["area"] != b["area"]).sum())
    means = int((~np.isclose(a["intensity_mean"], b["intensity_mean"], rtol=1e-9, atol=0)).sum())
    return f"{len(a)} objects, {areas} areas and {means} intensity means differ from florin's"


def load_florin002_ndnt(wheel):
    """FLoRIN 0.0.2's ``ndnt`` function, read from its wheel (numpy only; not imported as ``florin``)."""
    with zipfile.ZipFile(wheel) as zf:
        source = zf.read("florin/ndnt.py").decode()
    spec = importlib.util.spec_from_loader("florin002_ndnt", loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"{wheel}!florin/ndnt.py", "exec"), module.__dict__)  # noqa: S102
    return module.ndnt


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64, help="size of the uint16 input in MiB (default 64)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--chunks", default="64,256,256", help="dask-image block shape (z,y,x)")
    parser.add_argument("--no-dask", action="store_true")
    parser.add_argument("--no-script", action="store_true")
    parser.add_argument("--florin002", metavar="WHEEL", help="FLoRIN 0.0.2 wheel: also time its NDNT")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    chunks = tuple(int(c) for c in args.chunks.split(","))

    import numba

    image = make_volume(args.mib)
    impls = {"florin": None}
    if not args.no_script:
        impls["script"] = None
    if not args.no_dask:
        try:
            import dask_image  # noqa: F401
        except ImportError:
            print("dask-image not installed (pip install dask-image): skipped")
        else:
            impls["dask-image"] = None
    with tempfile.TemporaryDirectory(prefix="florin-bench-") as tmp:
        tmp = Path(tmp)
        tif = tmp / "volume.tif"
        tifffile.imwrite(tif, image)
        print(f"volume {image.shape} uint16 ({image.nbytes / 2**20:.0f} MiB TIFF), cpus {os.cpu_count()}, "
              f"numba threads {numba.get_num_threads()}, dask-image blocks {chunks}")  # fmt: skip
        small = tmp / "small"
        small.mkdir()
        tifffile.imwrite(small / "volume.tif", image[:8, :128, :128])
        run_florin(small / "volume.tif", small)  # warm-up: load or compile the kernels
        load_before = os.getloadavg()
        print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
        runs = {name: [] for name in impls}
        outputs, tables = {}, {}
        for r in range(args.rounds):
            order = list(impls) if r % 2 == 0 else list(impls)[::-1]
            for name in order:
                start = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    if name == "florin":
                        steps, path = run_florin(tif, tmp)
                    elif name == "script":
                        steps, path = run_script(tif, tmp)
                    else:
                        steps, path = run_dask(tif, tmp, chunks)
                total = time.perf_counter() - start
                runs[name].append((total, steps))
                outputs[name] = tifffile.imread(path)
            for name in impls:
                if name != "florin":  # the CSVs of this round, compared before the next round overwrites them
                    tables[name] = compare_objects(tmp / "florin.csv", path.with_suffix(".csv"))
            print(f"  round {r + 1}: " + ", ".join(f"{n} {runs[n][-1][0]:.2f} s" for n in impls)
                  + f"; load {os.getloadavg()[0]:.2f}")  # fmt: skip
        florin002 = None
        if args.florin002:
            ndnt002 = load_florin002_ndnt(args.florin002)
            try:
                start = time.perf_counter()
                ndnt002(image, shape=NDNT_SHAPE, threshold=THRESHOLD)
                florin002 = time.perf_counter() - start
            except Exception as exc:  # it is 2019 code: say why it no longer runs
                # its ndnt.py line 173, np.asarray(grids) of ragged index grids: an error since numpy 1.24
                florin002 = (
                    f"does not run on numpy {np.__version__} (numpy >= 1.24, so every numpy 2, refuses the "
                    f"ragged array its ndnt builds): {type(exc).__name__}: {exc}"
                )
        else:
            florin002 = "not timed: give --florin002 WHEEL (pip download --no-deps florin==0.0.2.post1 -d DIR)"
        load_after = os.getloadavg()

    best = {name: min(r, key=lambda x: x[0]) for name, r in runs.items()}
    print("\nper step, wall seconds, of each implementation's best round:")
    names = list(impls)
    all_steps = []
    for name in names:
        all_steps += [s for s in best[name][1] if s not in all_steps]
    print(f"  {'step':24s}" + "".join(f"{n:>12s}" for n in names))
    for s in all_steps:
        print(f"  {s:24s}" + "".join(f"{best[n][1].get(s, float('nan')):12.2f}" for n in names))
    print(f"  {'total (end to end)':24s}" + "".join(f"{best[n][0]:12.2f}" for n in names))
    ours = best["florin"][0]
    for name in names[1:]:
        print(f"florin end to end vs {name}: {best[name][0] / ours:.2f}x faster")
    for name in names[1:]:
        diff = int((outputs[name] != outputs["florin"]).sum())
        print(f"class volume of {name}: {diff} voxels differ from florin's ({diff / image.size:.2e})")
        print(f"objects table of {name}: {tables[name]}")
    if isinstance(florin002, str):
        print(f"FLoRIN 0.0.2 NDNT: {florin002}")
    else:
        print(
            f"FLoRIN 0.0.2 NDNT alone: {florin002:.2f} s (florin's NDNT step: {best['florin'][1].get('ndnt', 0):.2f} s)"
        )
    print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    if args.json:
        label = {"florin": "florin segment", "script": "scipy/scikit-image script", "dask-image": "dask-image"}
        rows = [{"group": "end to end", "name": label[n], "seconds": best[n][0]} for n in names]
        for s in all_steps:  # the common format of docs/_scripts/plot_benchmarks.py: a panel a step
            rows += [{"group": s, "name": label[n], "seconds": best[n][1].get(s)} for n in names]
        config = {"shape": list(image.shape), "mib": args.mib, "dask blocks": list(chunks), "cpus": os.cpu_count(),
                  "load before": round(load_before[0], 2), "load after": round(load_after[0], 2)}  # fmt: skip
        with open(args.json, "w") as f:
            json.dump({"benchmark": "pipeline", "title": "florin segment end to end, per step", "config": config,
                       "results": rows, "florin002_ndnt": florin002, "baseline": "florin segment"}, f, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
