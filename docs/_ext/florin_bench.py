"""``.. florin-bench:: NAME``: one benchmark's figure, table and raw output.

Reads ``_static/bench/NAME.json`` (written by ``benchmarks/bench_NAME.py
--json``, see ``_scripts/plot_benchmarks.py``) and shows ``NAME.png``, a table
of the results and the benchmark's printed output (``NAME.txt``). While a
benchmark has not been run, the directive says how to run it instead of
failing the build.
"""

from __future__ import annotations

import json
import os

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list | tuple):
        return " x ".join(str(v) for v in value)
    return str(value)


class FlorinBenchDirective(SphinxDirective):
    required_arguments = 1
    has_content = False

    def run(self):
        name = self.arguments[0]
        bench_dir = os.path.join(self.env.srcdir, "_static", "bench")
        json_path = os.path.join(bench_dir, f"{name}.json")
        self.env.note_dependency(json_path)
        cmd = f"python docs/_scripts/plot_benchmarks.py {name}"
        lines = []
        if not os.path.exists(json_path):
            lines += [
                ".. note::",
                "",
                f"   No results yet: ``benchmarks/bench_{name}.py`` has not been run for the docs. Run ``{cmd}``.",
                "",
            ]
        else:
            with open(json_path) as f:
                data = json.load(f)
            if os.path.exists(os.path.join(bench_dir, f"{name}.png")):
                lines += [f".. figure:: /_static/bench/{name}.png", f"   :alt: {data.get('title', name)}", ""]
            results = data.get("results", [])
            keys = ["name", "seconds"] + sorted({k for r in results for k in r} - {"name", "seconds"})
            bases = {r.get("group"): r["seconds"] for r in results if r["name"] == data.get("baseline")}
            base = bool(bases)
            if "group" in keys:
                keys = ["group"] + [k for k in keys if k != "group"]
            header = list(keys) + (["relative time"] if base else [])
            lines += [".. list-table::", "   :header-rows: 1", ""]
            lines += [f"   * - {header[0]}"] + [f"     - {h}" for h in header[1:]]
            for r in results:
                ref = bases.get(r.get("group"))
                rel = [f"{r['seconds'] / ref:.2f}x" if ref else ""] if base else []
                row = [_fmt(r.get(k, "")) for k in keys] + rel
                lines += [f"   * - {row[0]}"] + [f"     - {c}" for c in row[1:]]
            lines.append("")
            if data.get("config"):
                cfg = "; ".join(f"{k}: {_fmt(v)}" for k, v in data["config"].items())
                lines += [f"Configuration: {cfg}.", ""]
            txt = os.path.join(bench_dir, f"{name}.txt")
            if os.path.exists(txt):
                self.env.note_dependency(txt)
                lines += [".. rubric:: Output", "", f".. literalinclude:: /_static/bench/{name}.txt",
                          "   :language: text", ""]
        container = nodes.container()
        nested_parse_with_titles(self.state, StringList(lines, source=f"<florin-bench {name}>"), container)
        return container.children


def setup(app):
    app.add_directive("florin-bench", FlorinBenchDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
