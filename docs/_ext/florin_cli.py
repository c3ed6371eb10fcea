"""``.. florin-cli::``: the CLI reference, generated from the typer app.

typer vendors its own click (``typer._click``), so sphinx-click does not see
its commands; this directive walks ``typer.main.get_command(build_app())``
itself and renders, for every command (plugin commands included): the usage
line, the help text, and a table of arguments and options with their types,
defaults and help.
"""

from __future__ import annotations

import inspect

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles


def _root_command():
    import typer

    from florin.cli import build_app

    return typer.main.get_command(build_app())


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("`", "\\`").replace("|", "\\|")


def _param_rows(command, ctx):
    """(name, description) of every visible parameter, as ``--help`` shows them."""
    rows = []
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False) or param.name == "help":
            continue
        record = None
        if hasattr(param, "get_help_record"):
            try:
                record = param.get_help_record(ctx)
            except TypeError:
                record = None
        if record is None:
            opts = ", ".join(list(param.opts) + list(getattr(param, "secondary_opts", [])))
            record = (opts, getattr(param, "help", None) or "")
        name, description = record
        kind = "argument" if getattr(param, "param_type_name", "") == "argument" else "option"
        if kind == "argument":
            name = name.split(" ", 1)[0].upper() + (" " + name.split(" ", 1)[1] if " " in name else "")
        rows.append((f"``{name}``", _escape(" ".join(description.split()))))
    return rows


def _table(rows):
    out = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 35 65",
        "",
        "   * - Argument or option",
        "     - Description",
    ]
    for row in rows:
        out.append(f"   * - {row[0]}")
        out.extend(f"     - {cell}" for cell in row[1:])
    out.append("")
    return out


def _render(command, ctx, path, char_index, lines):
    chars = "=-~^\""
    title = " ".join(path)
    if len(path) > 1:
        lines += [f".. _cli-{'-'.join(path[1:])}:", ""]
    lines += [title, chars[char_index] * len(title), ""]
    pieces = command.collect_usage_pieces(ctx)
    lines += ["::", "", f"   {' '.join(path)} {' '.join(pieces)}".rstrip(), ""]
    help_text = inspect.cleandoc(command.help or "")
    if help_text:
        lines += [_escape(help_text), ""]
    rows = _param_rows(command, ctx)
    if rows:
        lines += _table(rows)
    sub = getattr(command, "commands", None)
    if sub:
        for name in command.list_commands(ctx):
            child = command.get_command(ctx, name)
            if child is None or getattr(child, "hidden", False):
                continue
            child_ctx = child.make_context(name, [], parent=ctx, resilient_parsing=True)
            _render(child, child_ctx, [*path, name], min(char_index + 1, len(chars) - 1), lines)


class FlorinCliDirective(SphinxDirective):
    """Render the ``florin`` command tree."""

    has_content = False
    required_arguments = 0

    def run(self):
        root = _root_command()
        ctx = root.make_context("florin", [], resilient_parsing=True)
        lines: list[str] = []
        _render(root, ctx, ["florin"], 1, lines)
        container = nodes.container(classes=["florin-cli"])
        nested_parse_with_titles(self.state, StringList(lines, source="<florin-cli>"), container)
        return container.children


def setup(app):
    app.add_directive("florin-cli", FlorinCliDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
