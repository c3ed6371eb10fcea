"""Run the benchmarks/ scripts and draw the plots of the docs' performance page.

Each benchmark script writes its results with ``--json PATH`` in one common
format::

    {
      "benchmark": "objects",                 # the script's name without bench_
      "title": "Connected components + ...",  # plot title
      "config": {"shape": [100, 512, 512], ...},   # shown under the plot
      "results": [                             # one bar per entry, in order
        {"name": "florin ...", "seconds": 0.41, "peak_rss_mib": 310.0, ...},
        ...
      ],
      "baseline": "florin ..."                 # optional: ratios are relative to it
    }

``seconds`` is required; ``peak_rss_mib`` (peak resident memory) adds a memory
panel; an optional ``group`` (e.g. the dtype) draws one panel per group, with
the baseline looked up within each group; other keys are shown in the table of
the performance page. This
script runs every benchmark it knows (``--run``, the default) writing
``docs/_static/bench/<name>.json`` and its stdout to ``<name>.txt``, then draws
``<name>.png`` from every JSON file there (``--plot-only`` skips running).

    python docs/_scripts/plot_benchmarks.py [--plot-only] [--quick] [NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH_DIR = os.path.join(ROOT, "benchmarks")
OUT_DIR = os.path.join(ROOT, "docs", "_static", "bench")

# name -> (arguments for the full run, arguments for --quick)
BENCHMARKS = {
    "ndnt": ([], ["--small"]),
    "objects": (["--repeat", "3"], ["--small", "--repeat", "1"]),
    "parallel": ([], ["--small"]),
    "out_of_core": ([], ["--small"]),
    "tune": ([], ["--small", "--budget", "20"]),
    "kernels": ([], ["--mib", "8", "--rounds", "1"]),
    "pipeline": (["--mib", "64", "--rounds", "2"], ["--mib", "8", "--rounds", "1", "--no-dask"]),
    "seed_tiles": ([], ["--quick"]),
}


def run(name, quick=False):
    script = os.path.join(BENCH_DIR, f"bench_{name}.py")
    if not os.path.exists(script):
        print(f"skip {name}: {script} does not exist yet")
        return False
    json_path = os.path.join(OUT_DIR, f"{name}.json")
    args = BENCHMARKS.get(name, ([], []))[1 if quick else 0]
    cmd = [sys.executable, script, *args, "--json", json_path]
    print("$", " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        print(f"{name}: benchmark failed (exit {proc.returncode})")
        return False
    with open(os.path.join(OUT_DIR, f"{name}.txt"), "w") as f:
        f.write(f"$ python benchmarks/bench_{name}.py {' '.join(args)}\n{proc.stdout}")
    return True


def _config_text(config):
    parts = []
    for key, value in config.items():
        if isinstance(value, list | tuple):
            value = " x ".join(str(v) for v in value)
        parts.append(f"{key} {value}")
    return ", ".join(parts)


def _groups(results):
    groups: dict = {}
    for r in results:
        groups.setdefault(r.get("group"), []).append(r)
    return groups


def _bars(ax, results, baseline, key, unit, labels=True):
    names = [r["name"] for r in results]
    values = [float(r.get(key) or 0.0) for r in results]
    y = list(range(len(results)))[::-1]
    # florin in blue, peers in grey; a benchmark of florin executors only is all blue
    any_florin = any(n.lower().startswith("florin") for n in names)
    colors = ["#2a6f97" if n.lower().startswith("florin") or not any_florin else "#a0a0a0" for n in names]
    ax.barh(y, values, color=colors)
    ax.set_yticks(y, names if labels else [""] * len(y))
    base = next((float(r[key]) for r in results if r["name"] == baseline and r.get(key)), None)
    for yi, v, r in zip(y, values, results, strict=True):
        if r.get(key) is None:
            ax.text(0, yi, " not measured", va="center", fontsize=7, color="#888888")
            continue
        text = f" {v:.3g} {unit}"
        if key == "seconds" and r.get("speedup") is not None:
            text += f"  ({float(r['speedup']):.2f}x speed-up)"
        elif key == "seconds" and base:
            text += f"  ({v / base:.2f}x)"
        ax.text(v, yi, text, va="center", fontsize=8)
    ax.set_xlim(0, (max(values) if values and max(values) > 0 else 1) * 1.5)


def plot(json_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(json_path) as f:
        data = json.load(f)
    groups = _groups(data["results"])
    baseline = data.get("baseline")
    memory_key = next((k for k in ("peak_rss_mib", "peak_extra_mib") if any(k in r for r in data["results"])), None)
    cols = 2 if memory_key else 1
    rows = len(groups)
    per_row = max(len(g) for g in groups.values())
    fig, axes = plt.subplots(rows, cols, figsize=(9 if cols == 1 else 13, (1.0 + 0.42 * per_row) * rows), squeeze=False)
    for row, (group, results) in enumerate(groups.items()):
        ax = axes[row][0]
        _bars(ax, results, baseline, "seconds", "s")
        if any(r.get("speedup") is not None for r in results):
            note = f"  (speed-up over {baseline})" if baseline else "  (speed-up)"
        else:
            note = f"  (ratio: relative to {baseline})" if baseline else ""
        ax.set_xlabel("time [s]" + note, fontsize=8)
        if group is not None:
            ax.set_title(str(group), fontsize=10, loc="left")
        if memory_key:
            ax2 = axes[row][1]
            _bars(ax2, results, baseline, memory_key, "MiB", labels=False)
            ax2.set_xlabel("peak resident memory [MiB]" if memory_key == "peak_rss_mib"
                           else "peak extra memory [MiB]", fontsize=8)
    fig.suptitle(data.get("title", data.get("benchmark", "")), fontsize=11)
    if data.get("config"):
        fig.text(0.01, 0.01, _config_text(data["config"]), fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    png = os.path.splitext(json_path)[0] + ".png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    print(f"wrote {os.path.relpath(png, ROOT)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})")
    parser.add_argument("--plot-only", action="store_true", help="only redraw the plots from the JSON files")
    parser.add_argument("--quick", action="store_true", help="small problem sizes (a smoke test, not for the docs)")
    args = parser.parse_args(argv)
    os.makedirs(OUT_DIR, exist_ok=True)
    names = args.names or list(BENCHMARKS)
    if not args.plot_only:
        for name in names:
            run(name, quick=args.quick)
    for name in names:
        path = os.path.join(OUT_DIR, f"{name}.json")
        if os.path.exists(path):
            plot(path)


if __name__ == "__main__":
    main()
