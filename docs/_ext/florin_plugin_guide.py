"""Render the plugin hooks of ``florin/hookspecs.py`` into ``docs/plugins-hooks.rst``.

Each hook's numpydoc docstring becomes a section of the hook reference that the
plugin-author guide (``docs/plugin-guide.rst``) links to: its summary, its
parameters and its examples. The page is self-contained reStructuredText (no
autodoc or numpydoc needed to render it).

Use it three ways:

* as a Sphinx extension (``extensions = [..., "florin_plugin_guide"]`` with
  ``docs/_ext`` on ``sys.path``): the page is regenerated at ``builder-inited``;
* as a script: ``python docs/_ext/florin_plugin_guide.py`` rewrites the page,
  ``--check`` exits 1 when the committed page is stale;
* from tests: :func:`check_hooks` lists the hooks whose docstring lacks a
  summary, a ``Parameters`` section naming every argument, or ``Examples``
  (``tests/test_hooks_documented.py``).
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.dirname(HERE)
PAGE = os.path.join(DOCS, "plugins-hooks.rst")
PROJECT = "florin"

_SECTION = re.compile(r"^(?P<title>[A-Z][A-Za-z ]+)\n-{3,}\s*$", re.MULTILINE)


def hook_specs(module=None) -> list:
    """The ``(name, function)`` pairs of the hook specifications in ``module``, in source order."""
    if module is None:
        module = importlib.import_module("florin.hookspecs")
    marker = f"{PROJECT}_spec"
    specs = [(name, obj) for name, obj in vars(module).items() if inspect.isfunction(obj) and hasattr(obj, marker)]
    return sorted(specs, key=lambda item: item[1].__code__.co_firstlineno)


def parse_docstring(doc: str | None) -> dict:
    """Split a numpydoc docstring into ``summary``, ``extended`` and its sections.

    Returns a dict with ``summary`` and ``extended`` (text), ``sections`` (title
    -> raw text) and ``parameters`` (a list of ``(name, type, description)``).
    """
    doc = inspect.cleandoc(doc or "")
    matches = list(_SECTION.finditer(doc))
    head = doc[: matches[0].start()] if matches else doc
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", head.strip()) if p.strip()]
    sections = {}
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(doc)
        sections[match.group("title").strip()] = doc[match.end() : end].strip("\n")
    parameters = []
    for line in sections.get("Parameters", "").splitlines():
        if line.strip() and not line.startswith((" ", "\t")):
            name, _, type_ = line.partition(":")
            parameters.append([name.strip(), type_.strip(), []])
        elif line.strip() and parameters:
            parameters[-1][2].append(line.strip())
    return {
        "summary": paragraphs[0] if paragraphs else "",
        "extended": "\n\n".join(paragraphs[1:]),
        "sections": sections,
        "parameters": [(n, t, " ".join(d)) for n, t, d in parameters],
    }


def check_hooks(module=None) -> list[str]:
    """Problems with the hooks' docstrings (an empty list when every hook is documented)."""
    problems = []
    for name, func in hook_specs(module):
        doc = parse_docstring(func.__doc__)
        args = list(inspect.signature(func).parameters)
        if not doc["summary"]:
            problems.append(f"{name}: no docstring summary")
        if "Parameters" not in doc["sections"]:
            problems.append(f"{name}: no 'Parameters' section")
        documented = {n for n, _, _ in doc["parameters"]}
        for arg in args:
            if arg not in documented:
                problems.append(f"{name}: parameter {arg!r} is not documented under 'Parameters'")
        for pname, _, description in doc["parameters"]:
            if pname not in args:
                problems.append(f"{name}: 'Parameters' documents {pname!r}, which the hook does not take")
            elif not description:
                problems.append(f"{name}: parameter {pname!r} has no description")
        if ">>>" not in doc["sections"].get("Examples", ""):
            problems.append(f"{name}: no 'Examples' section with a >>> example")
    return problems


def _indent(text: str, n: int = 3) -> str:
    return textwrap.indent(text, " " * n, lambda line: line.strip() != "")


def render_hook(name: str, func) -> str:
    """One hook as a section with a ``py:function`` description."""
    doc = parse_docstring(func.__doc__)
    signature = f"{name}{inspect.signature(func)}"
    body = [doc["summary"]]
    if doc["extended"]:
        body.append(doc["extended"])
    fields = []
    for pname, type_, description in doc["parameters"]:
        fields.append(f":param {pname}: {description}")
        if type_:
            fields.append(f":type {pname}: {type_}")
    if fields:
        body.append("\n".join(fields))
    for title, text in doc["sections"].items():
        if title in ("Parameters", "Examples"):
            continue
        body.append(f".. rubric:: {title}\n\n{textwrap.dedent(text).strip()}")
    if "Examples" in doc["sections"]:
        body.append(".. rubric:: Examples\n\n" + textwrap.dedent(doc["sections"]["Examples"]).strip())
    title = f"``{name}``"
    return "\n".join(
        [
            title,
            "-" * len(title),
            "",
            f".. py:function:: {signature}",
            f"   :module: {func.__module__}",
            "   :no-index:",
            "",
            _indent("\n\n".join(body)),
            "",
        ]
    )


def render(module=None) -> str:
    """The whole hook-reference page."""
    if module is None:
        module = importlib.import_module("florin.hookspecs")
    specs = hook_specs(module)
    intro = inspect.cleandoc(module.__doc__ or "")
    listing = "\n".join(f"* ``{name}``: {parse_docstring(func.__doc__)['summary']}" for name, func in specs)
    parts = [
        ".. This page is generated from florin/hookspecs.py by docs/_ext/florin_plugin_guide.py; do not edit.",
        "",
        ".. _plugin-hooks:",
        "",
        "Hook reference",
        "==============",
        "",
        intro,
        "",
        f"florin calls {len(specs)} hooks. Implement any of them in the module your entry point names, each "
        "decorated with ``@florin.hookimpl``:",
        "",
        listing,
        "",
    ]
    parts += [render_hook(name, func) for name, func in specs]
    return "\n".join(parts).rstrip() + "\n"


def write(path: str = PAGE) -> bool:
    """Write the page if its content changed; return whether it did."""
    text = render()
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return False
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return True


def _builder_inited(app):
    write(os.path.join(app.srcdir, "plugins-hooks.rst"))


def setup(app):
    """Sphinx entry point: regenerate the hook reference before reading sources."""
    app.connect("builder-inited", _builder_inited)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--check" in argv:
        if not os.path.exists(PAGE):
            print(f"{PAGE} is missing; run python docs/_ext/florin_plugin_guide.py", file=sys.stderr)
            return 1
        with open(PAGE, encoding="utf-8") as f:
            if f.read() != render():
                print(f"{PAGE} is stale; run python docs/_ext/florin_plugin_guide.py", file=sys.stderr)
                return 1
        return 0
    problems = check_hooks()
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    print(("wrote " if write() else "unchanged: ") + os.path.relpath(PAGE))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(DOCS))
    raise SystemExit(main())
