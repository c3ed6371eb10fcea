"""Benchmark ``florin.tune``: time and whole-volume Dice from 1, 3 and 10 annotated slices.

Run ``python benchmarks/bench_tune.py`` (a (48, 192, 192) phantom) or ``--small``
for a quick run on (24, 96, 96). For each number of painted z slices (evenly
spaced, fully annotated from the ground truth) it tunes with the default search
space and budget, then runs the tuned pipeline on the whole volume, and prints:

* the tuning time, the configurations evaluated (of the grid's), the voxels
  computed per evaluation as a fraction of the volume;
* the score on the searched slices and on the held-out ones;
* the tuned pipeline's Dice on the whole volume against the ground truth;
* with the classes learned too (``classes=``: the painted slices' objects
  labelled 1 cell, 2 vasculature from the ground truth), the per-object
  accuracy on the annotated objects (searched / held-out) and on every object
  of the volume (an object's class: the most frequent one on its voxels); the
  tuning time includes learning them;

next to the Dice of ``florin segment``'s defaults and of ``--auto`` (no
annotation). ``--json PATH`` also writes the rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from florin.data import phantom  # noqa: E402
from florin.tuning import build_pipeline, score_masks, tune  # noqa: E402


def painted(sample, n, *, classes=False):
    """``n`` evenly spaced, fully annotated z slices (and, with ``classes``, their class labels)."""
    annotation = np.zeros(sample.image.shape, np.uint8)
    labels = np.zeros(sample.image.shape, np.uint8)
    depth = sample.image.shape[0]
    for z in np.linspace(0, depth - 1, n + 2)[1:-1].round().astype(int):
        annotation[z] = np.where(sample.labels[z] > 0, 2, 1)
        labels[z] = sample.classes[z]
    return (annotation, labels) if classes else annotation


def object_accuracy(classes_volume, sample):
    """Fraction of the volume's objects whose voxels mostly get their true class."""
    names = classes_volume.attrs["classes"]
    values = classes_volume.values
    n = int(sample.labels.max())
    index = sample.labels.ravel()
    counts = np.zeros((n + 1, int(values.max()) + 1), np.int64)
    np.add.at(counts, (index, values.ravel()), 1)
    counts[:, 0] = 0
    right = sum(names.get(str(int(counts[i].argmax()))) == sample.class_names[int(sample.object_classes[i - 1])]
                for i in range(1, n + 1) if counts[i].any())
    return right / n


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="a (24, 96, 96) phantom")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per tuning run (default 60)")
    parser.add_argument("--slices", default="1,3,10", help="numbers of annotated slices (default 1,3,10)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    shape = (24, 96, 96) if args.small else (48, 192, 192)
    sample = phantom(shape, seed=0)
    truth = sample.labels > 0
    print(f"phantom {shape}, foreground {100 * truth.mean():.1f}%, budget {args.budget:g} s per run")

    def whole(pipeline, classes=False):
        start = time.perf_counter()
        result = pipeline(sample.image)
        dice = score_masks(result.values > 0, truth)
        return (dice, object_accuracy(result, sample)) if classes else (dice, time.perf_counter() - start)

    tune(sample.image, painted(sample, 1), max_evaluations=3, tile=None)  # JIT warm-up, not timed
    rows = []
    default_dice, run_seconds = whole(build_pipeline({"shape": tuple(max(1, round(n / 8)) for n in shape),
                                                      "threshold": 0.25, "polarity": "dark", "opening": 1,
                                                      "min_size": 64}))
    start = time.perf_counter()
    auto_pipe, auto = tune(sample.image)
    auto_seconds = time.perf_counter() - start
    auto_dice, _ = whole(auto_pipe)
    print(f"{'slices':>6} {'tune s':>7} {'evals':>6} {'of grid':>8} {'computed':>9} {'searched':>9} "
          f"{'held-out':>9} {'whole Dice':>10} {'class acc':>9} {'held-out':>8} {'whole':>6}  best")
    for n in (int(v) for v in args.slices.split(",")):
        start = time.perf_counter()
        annotation, labels = painted(sample, n, classes=True)
        pipeline, report = tune(sample.image, annotation, labels=labels, classes={1: "cell", 2: "vasculature"},
                                budget=args.budget)
        seconds = time.perf_counter() - start
        dice, accuracy = whole(pipeline, classes=True)
        held = "-" if report.heldout_score is None else f"{report.heldout_score:.4f}"
        held_acc = "-" if report.heldout_class_accuracy is None else f"{report.heldout_class_accuracy:.3f}"
        p = report.params
        best = (f"shape={','.join(map(str, p['shape']))} t={p['threshold']:g} {p['polarity']} "
                f"open={p['opening']} min={p['min_size']}")
        print(f"{n:>6} {seconds:>7.1f} {report.evaluations:>6} {report.grid_size:>8} "
              f"{100 * report.computed_fraction:>8.1f}% {report.score:>9.4f} {held:>9} {dice:>10.4f} "
              f"{report.class_accuracy:>9.3f} {held_acc:>8} {accuracy:>6.3f}  {best}"
              + ("" if report.stopped == "converged" else f"  ({report.stopped})"))
        rows.append({"name": f"florin tune, {n} annotated slice{'s' if n > 1 else ''}", "seconds": seconds,
                     "whole_dice": round(dice, 4), "searched": round(report.score, 4),
                     "heldout": None if report.heldout_score is None else round(report.heldout_score, 4),
                     "evaluations": report.evaluations, "computed_per_evaluation": round(report.computed_fraction, 3),
                     "class_accuracy": round(report.class_accuracy, 3),
                     "heldout_class_accuracy": None if report.heldout_class_accuracy is None
                     else round(report.heldout_class_accuracy, 3),
                     "whole_class_accuracy": round(accuracy, 3), "best": best, "stopped": report.stopped,
                     "classes": "; ".join(f"{c.name}: {c.describe()}" for c in report.classes)})
    print(f"segment defaults (shape volume/8, dark, 0.25): whole Dice {default_dice:.4f}; "
          f"one whole-volume run {run_seconds:.2f} s")
    print(f"--auto (no annotation, {auto_seconds:.1f} s): whole Dice {auto_dice:.4f}  "
          f"shape={','.join(map(str, auto.params['shape']))} t={auto.params['threshold']:g} "
          f"{auto.params['polarity']} min={auto.params['min_size']}")
    rows.append({"name": "florin segment --auto (no annotation)", "seconds": auto_seconds,
                 "whole_dice": round(auto_dice, 4)})
    rows.append({"name": "segment defaults (no tuning): one whole-volume run", "seconds": run_seconds,
                 "whole_dice": round(default_dice, 4)})
    if args.json:
        config = {"shape": list(shape), "grid": report.grid_size,
                  "budget_s": args.budget, "foreground": round(float(truth.mean()), 3)}
        args.json.write_text(json.dumps({"benchmark": "tune", "title": "Tuning from painted slices: time and "
                                         "whole-volume Dice", "config": config, "results": rows}, indent=2))

if __name__ == "__main__":
    main()
