"""The documentation: it builds with warnings as errors, and its code runs.

- the Sphinx site in docs/ builds with ``-W`` (API reference from the numpydoc
  docstrings, CLI reference from the typer app);
- every ``pycon`` snippet in the docs' Markdown pages runs as a doctest;
- the README's Python example runs, and its set-up commands point at what exists;
- every example script is shown on some docs page.

Docstring examples of the package run through ``--doctest-modules`` (pyproject).
"""

from __future__ import annotations

import ast
import doctest
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DOC_TOOLS = ("sphinx", "furo", "numpydoc", "myst_parser")


def _markdown_pages():
    return sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)


def _fenced(text: str, language: str) -> list[tuple[int, str]]:
    """(line number, body) of every ```language fenced block."""
    blocks = []
    for match in re.finditer(rf"^```{language}[ \t]*\n(.*?)^```[ \t]*$", text, flags=re.S | re.M):
        blocks.append((text.count("\n", 0, match.start()) + 1, match.group(1)))
    return blocks


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_docs_build_without_warnings(tmp_path):
    missing = [m for m in DOC_TOOLS if importlib.util.find_spec(m) is None]
    if missing:
        message = f"documentation tools not installed: {', '.join(missing)} (pip install -r docs/requirements.txt)"
        if os.environ.get("CI"):  # CI must build the docs: a missing install step is a failure there
            pytest.fail(message)
        pytest.skip(message)
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
           "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")]
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=280, env=env)
    assert proc.returncode == 0, f"docs build failed:\n{proc.stdout[-5000:]}\n{proc.stderr[-10000:]}"
    html = tmp_path / "html"
    for page in ("index", "getting-started", "cli", "api/index", "api/florin", "performance",
                 "examples/weak-classification", "concepts/halos-and-exact-tiling"):
        assert (html / f"{page}.html").exists(), f"{page}.html missing"
    cli = (html / "cli.html").read_text()
    for command in ("florin info", "florin run", "florin plugins"):
        assert command in cli, f"the CLI reference does not show `{command}`"
    assert "thresholding.ndnt" in (html / "api" / "florin.thresholding.html").read_text()
    # long code lines wrap instead of scrolling: the stylesheet ships and every page links it
    assert "pre-wrap" in (html / "_static" / "wrap-code.css").read_text()
    assert "wrap-code.css" in (html / "index.html").read_text()


@pytest.mark.parametrize("page", [p.relative_to(DOCS).as_posix() for p in _markdown_pages()
                                  if _fenced(p.read_text(), "pycon")])
def test_markdown_snippets_run(page, tmp_path, monkeypatch):
    """```pycon blocks of a page run in order in one namespace, as doctests."""
    monkeypatch.chdir(tmp_path)
    text = (DOCS / page).read_text()
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    globs: dict = {}
    report: list[str] = []
    for line, body in _fenced(text, "pycon"):
        test = parser.get_doctest(body, globs, f"{page}:{line}", str(DOCS / page), line)
        runner.run(test, out=report.append, clear_globs=False)
        globs = test.globs  # later blocks see what earlier ones defined
    assert runner.summarize(verbose=False).failed == 0, "".join(report)


def test_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's Python example runs on a volume.tif in the working directory."""
    import numpy as np

    import florin
    from florin.data import phantom

    blocks = _fenced((ROOT / "README.md").read_text(), "python")
    assert blocks, "README.md has no Python example"
    code = blocks[0][1]
    assert len([line for line in code.splitlines() if line.strip()]) <= 12, "keep the README example short"
    monkeypatch.chdir(tmp_path)
    florin.io.write("volume.tif", phantom((16, 96, 96), seed=3).image)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert os.path.exists("segmented.tiff")
    assert np.asarray(florin.io.read("segmented.tiff")).any()


def test_readme_setup_commands_point_at_what_exists():
    readme = (ROOT / "README.md").read_text()
    commands = [line.strip() for _, body in _fenced(readme, "bash") for line in body.splitlines()
                if line.strip().startswith("pip install")]
    assert len(commands) >= 2, "the README shows the two set-up commands"
    for command in commands:
        for script in re.findall(r"python (examples/\S+\.py)", command):
            assert (ROOT / script).exists(), f"README runs {script}, which does not exist"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest -n 2" in ci and any("python -m pytest -n 2" in c for c in commands), \
        "the README's test command is the one CI runs"


def test_every_example_is_documented():
    shown = "\n".join(p.read_text() for p in _markdown_pages())
    for script in sorted((ROOT / "examples").glob("*.py")):
        if script.name.startswith("_"):
            continue
        assert f"examples/{script.name}" in shown, f"examples/{script.name} is not shown on any docs page"


def test_benchmark_plots_script_knows_every_benchmark():
    """Each benchmarks/bench_NAME.py has a section on the performance page and is run by the plot script."""
    page = (DOCS / "performance.md").read_text()
    spec = importlib.util.spec_from_file_location("plot_benchmarks", DOCS / "_scripts" / "plot_benchmarks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for script in (ROOT / "benchmarks").glob("bench_*.py"):
        name = script.stem[len("bench_"):]
        assert name in module.BENCHMARKS, f"docs/_scripts/plot_benchmarks.py does not run {script.name}"
        assert f"{{florin-bench}} {name}" in page, f"docs/performance.md has no section for {script.name}"


@pytest.mark.skipif(shutil.which("florin") is None, reason="the florin console script is not installed")
def test_cli_reference_lists_every_command():
    import typer

    from florin.cli import build_app

    root = typer.main.get_command(build_app())
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import florin_cli
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    ctx = root.make_context("florin", [], resilient_parsing=True)
    lines: list[str] = []
    florin_cli._render(root, ctx, ["florin"], 1, lines)
    text = "\n".join(lines)
    for name in root.list_commands(ctx):
        assert f"florin {name}" in text


def _literalinclude(page: Path, target: str, options: dict) -> str:
    """The text a ``literalinclude`` shows (the options florin's pages use)."""
    text = (page.parent / target).resolve().read_text()
    if "pyobject" in options:
        node = next(n for n in ast.parse(text).body if getattr(n, "name", None) == options["pyobject"])
        lines = text.splitlines()[node.lineno - 1 - len(node.decorator_list) : node.end_lineno]
        return "\n".join(lines) + "\n"
    if "start-after" in options:
        text = text.split(options["start-after"].strip('"'), 1)[1].split("\n", 1)[1]
    if "end-before" in options:
        text = text.split(options["end-before"].strip('"'), 1)[0].rsplit("\n", 1)[0] + "\n"
    if "dedent" in options:
        n = int(options["dedent"])
        text = "".join(line[n:] if line.strip() else line for line in text.splitlines(keepends=True))
    return text


def _python_excerpts():
    """(id, code, fragment) of every Python excerpt on the Markdown pages.

    An excerpt is a fenced ```python block or a ``literalinclude`` with ``:language: python``. It is a
    *fragment* when it says so where the reader sees it: a first line ``# fragment: ...`` in a fenced block, or a
    ``:caption:`` containing "fragment" on an include.
    """
    found = []
    for page in _markdown_pages():
        text = page.read_text()
        rel = page.relative_to(DOCS).as_posix()
        for line, body in _fenced(text, "python"):
            found.append((f"{rel}:{line}", body, body.lstrip().lower().startswith("# fragment")))
        for match in re.finditer(r"^```\{literalinclude\} (\S+)\n((?::[\w-]+:.*\n)*)", text, flags=re.M):
            options = dict(re.findall(r"^:([\w-]+):\s*(.*)$", match.group(2), flags=re.M))
            if options.get("language") != "python":
                continue
            line = text.count("\n", 0, match.start()) + 1
            code = _literalinclude(page, match.group(1), options)
            found.append((f"{rel}:{line}", code, "fragment" in options.get("caption", "").lower()))
    return found


_EXCERPTS = _python_excerpts()


def test_python_excerpts_are_found():
    # the pages show the seed's examples through includes: if the parser finds none, it is broken
    assert sum(1 for _, _, fragment in _EXCERPTS if not fragment) >= 3
    assert any(name.startswith("examples/first-example.md") for name, _, _ in _EXCERPTS)


@pytest.mark.parametrize("name,code", [(n, c) for n, c, fragment in _EXCERPTS if not fragment],
                         ids=[n for n, _, fragment in _EXCERPTS if not fragment])
def test_python_excerpt_runs_as_shown(name, code, tmp_path, monkeypatch):
    """A Python excerpt that is not marked as a fragment runs on its own, as the reader sees it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [name, str(tmp_path / "out")])
    namespace = {"__name__": "__excerpt__"}
    exec(compile(code, name, "exec"), namespace)  # noqa: S102 - the docs' own code


@pytest.mark.parametrize("name,code", [(n, c) for n, c, fragment in _EXCERPTS if fragment],
                         ids=[n for n, _, fragment in _EXCERPTS if fragment])
def test_python_fragment_compiles(name, code):
    """A fragment need not run alone (it continues the page), but it is valid Python."""
    compile(textwrap.dedent(code), name, "exec")


def test_architecture_page_names_every_module_and_only_real_ones():
    """docs/concepts/architecture.md stays true: the modules it names exist, and every package module is on it."""
    page = (DOCS / "concepts" / "architecture.md").read_text()
    named = set(re.findall(r"\bflorin(?:\.[A-Za-z_]+)+", page))

    def exists(dotted):
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            for attr in parts[i:]:
                if not hasattr(obj, attr):
                    return False
                obj = getattr(obj, attr)
            return True
        return False

    missing = sorted(n for n in named if not exists(n))
    assert not missing, f"the architecture page names what does not exist: {missing}"
    package = ROOT / "florin"
    modules = {p.stem for p in package.glob("*.py") if p.stem not in ("__init__", "__main__")} | {
        p.name for p in package.iterdir() if (p / "__init__.py").exists()}
    unnamed = sorted(m for m in modules if f"florin.{m}" not in page and not m.startswith("_"))
    assert not unnamed, f"the architecture page does not place these modules: {unnamed}"
