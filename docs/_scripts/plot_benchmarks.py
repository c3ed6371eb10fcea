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
panel; other keys are shown in the table of the performance page. This
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


def plot(json_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(json_path) as f:
        data = json.load(f)
    results = data["results"]
    names = [r["name"] for r in results]
    seconds = [float(r["seconds"]) for r in results]
    base = next((float(r["seconds"]) for r in results if r["name"] == data.get("baseline")), None)
    memory = [r.get("peak_rss_mib") for r in results]
    panels = 2 if any(m is not None for m in memory) else 1

    height = 0.9 + 0.45 * len(results)
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, height), squeeze=False)
    ax = axes[0][0]
    y = list(range(len(results)))[::-1]
    colors = ["#2a6f97" if n.lower().startswith("florin") else "#a0a0a0" for n in names]
    ax.barh(y, seconds, color=colors)
    ax.set_yticks(y, names)
    ax.set_xlabel("time [s]" + (f"  (ratio: relative to {data['baseline']})" if base else ""))
    top = max(seconds) if seconds else 1
    for yi, s in zip(y, seconds, strict=True):
        label = f" {s:.3g} s" + (f"  ({s / base:.2f}x)" if base else "")
        ax.text(s, yi, label, va="center", fontsize=8)
    ax.set_xlim(0, top * 1.45)
    if panels == 2:
        ax2 = axes[0][1]
        mem = [m if m is not None else 0 for m in memory]
        ax2.barh(y, mem, color=colors)
        ax2.set_yticks(y, [""] * len(y))
        ax2.set_xlabel("peak resident memory [MiB]")
        for yi, m in zip(y, mem, strict=True):
            ax2.text(m, yi, f" {m:.0f}", va="center", fontsize=8)
        ax2.set_xlim(0, max(mem + [1]) * 1.3)
    fig.suptitle(data.get("title", data.get("benchmark", "")), fontsize=11)
    if data.get("config"):
        fig.text(0.01, 0.01, _config_text(data["config"]), fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
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
