"""What the registry can tell about a name without importing it.

Listing what is installed (``florin ops``, ``florin formats``, ``florin --help``)
must not import numba, xarray or dask. Two sources give an operator's signature
and summary, or a format's extensions and description, without an import:

* the built-ins' **catalog**, :mod:`florin._catalog`, generated from the live
  modules by ``python -m florin._metadata``. It records a hash of every module
  it describes; a module edited since is imported instead (correct, only
  slower), and ``tests/test_startup.py`` fails until the catalog is regenerated;
* for a plugin's ``"module:attribute"`` reference, the plugin module's **source**,
  read with :mod:`ast` (a ``def`` decorated with ``florinate``, a
  ``Format(...)`` with literal arguments). Whatever the source does not show
  plainly is imported.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import pprint
import zlib

__all__ = ["builtin_catalog", "describe_format", "describe_operator", "module_hash", "write_catalog"]


def _origin(module: str) -> str | None:
    """The source file of ``module``, found without importing it or its parent packages."""
    import importlib.machinery

    parts = module.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])  # a top-level name: nothing is imported
        for i in range(1, len(parts)):
            if spec is None or spec.submodule_search_locations is None:
                return None
            spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]),
                                                            list(spec.submodule_search_locations))
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None)
    return origin if origin and origin.endswith(".py") and os.path.exists(origin) else None


def module_hash(module: str) -> str | None:
    """CRC-32 of a module's source file, in hex (``None`` when it has no source); it only tells edits apart."""
    origin = _origin(module)
    if origin is None:
        return None
    with open(origin, "rb") as f:
        return f"{zlib.crc32(f.read()):08x}"


# -- the built-ins' catalog -----------------------------------------------------------------------
def builtin_catalog():
    """``(operators, formats, stale)`` from :mod:`florin._catalog`; ``stale`` holds the modules edited since."""
    try:
        from florin import _catalog
    except ImportError:  # pragma: no cover - a checkout without a generated catalog
        return [], [], None
    stale = {m for m, digest in _catalog.MODULES.items() if module_hash(m) != digest}
    return _catalog.OPERATORS, _catalog.FORMATS, stale


def operator_signature(factory) -> str:
    """The parameters ``florin ops`` shows: without the image for a florinated operator, without annotations."""
    sig = getattr(factory, "signature", None)
    params = list(sig.parameters.values())[1:] if sig is not None else list(inspect.signature(factory).parameters.values())
    # Without annotations, as the source-read form of a plugin's reference shows it too.
    params = [p.replace(annotation=inspect.Parameter.empty) for p in params]
    return str(inspect.Signature(params))


def operator_summary(factory) -> str:
    """The first line of the operator's docstring."""
    return (inspect.getdoc(getattr(factory, "func", factory)) or "").split("\n", 1)[0]


def live_catalog():
    """The catalog as the imported built-in modules give it (what :func:`write_catalog` writes)."""
    from florin.builtin import _OPERATOR_MODULES, _STEPS, PARTS
    from florin.operators import Florinated

    operators, modules = [], set()
    for module_name in _OPERATOR_MODULES:
        module = importlib.import_module(module_name)
        prefix = module_name.rsplit(".", 1)[1]
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if isinstance(obj, Florinated):
                operators.append(_operator_row(f"{prefix}.{name}", f"{module_name}:{name}", obj))
        modules.add(module_name)
    for name, where in _STEPS:
        module_name, _, attr = where.partition(":")
        operators.append(_operator_row(name, where, getattr(importlib.import_module(module_name), attr)))
        modules.add(module_name)
    formats = []
    for part in PARTS:
        if part.kind != "format":
            continue
        module_name, _, attr = part.where.partition(":")
        fmt = getattr(importlib.import_module(module_name), attr)
        formats.append({"name": fmt.name, "ref": part.where, "extensions": tuple(fmt.extensions),
                        "description": fmt.description})
        modules.add(module_name)
    return operators, formats, {m: module_hash(m) for m in sorted(modules)}


def _operator_row(name, ref, obj):
    return {"name": name, "ref": ref, "signature": operator_signature(obj), "summary": operator_summary(obj)}


def write_catalog(path=None) -> str:
    """Regenerate :mod:`florin._catalog` from the live modules; returns the path written."""
    operators, formats, modules = live_catalog()
    path = path or os.path.join(os.path.dirname(os.path.abspath(__file__)), "_catalog.py")
    text = (
        '"""Generated by ``python -m florin._metadata``: the built-ins as the registry lists them without\n'
        'importing them (see :mod:`florin._metadata`). Do not edit; regenerate after changing an operator or\n'
        'format module."""\n\n'
        f"MODULES = {pprint.pformat(modules, width=110, sort_dicts=False)}\n\n"
        f"OPERATORS = {pprint.pformat(operators, width=110, sort_dicts=False)}\n\n"
        f"FORMATS = {pprint.pformat(formats, width=110, sort_dicts=False)}\n"
    )
    with open(path, "w") as f:
        f.write(text)
    return path


# -- a plugin's reference, read from its source ---------------------------------------------------
def _definition(ref: str):
    module, _, attr = ref.partition(":")
    origin = _origin(module)
    if origin is None or "." in attr:
        return None
    with open(origin, encoding="utf-8") as f:
        tree = ast.parse(f.read(), origin)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == attr:
            return node
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == attr for t in node.targets):
            return node
    return None


def _called(node) -> str:
    func = node.func if isinstance(node, ast.Call) else node
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def describe_operator(ref: str) -> dict | None:
    """``{'signature', 'summary'}`` of a ``def`` decorated with ``florinate``, from its source; else ``None``."""
    try:
        node = _definition(ref)
    except (OSError, SyntaxError, ValueError):
        return None
    if not isinstance(node, ast.FunctionDef) or not any(_called(d) == "florinate" for d in node.decorator_list):
        return None
    args = node.args
    if args.posonlyargs or not args.args:
        return None
    # The image is not a parameter: drop the first positional argument (and its default, if any).
    n_defaults = len(args.defaults)
    first_has_default = n_defaults == len(args.args)
    shown = ast.arguments(posonlyargs=[], args=args.args[1:], vararg=args.vararg, kwonlyargs=args.kwonlyargs,
                          kw_defaults=args.kw_defaults, kwarg=args.kwarg,
                          defaults=args.defaults[1:] if first_has_default else args.defaults)
    for a in [*shown.args, *shown.kwonlyargs, shown.vararg, shown.kwarg]:
        if a is not None:
            a.annotation = None
    signature = f"({ast.unparse(shown)})"
    summary = (ast.get_docstring(node) or "").split("\n", 1)[0]
    return {"signature": signature, "summary": summary}


def describe_format(ref: str) -> dict | None:
    """``{'name', 'extensions', 'description'}`` of ``NAME = Format(...)`` with literal arguments; else ``None``."""
    try:
        node = _definition(ref)
    except (OSError, SyntaxError, ValueError):
        return None
    if not isinstance(node, ast.Assign) or not isinstance(node.value, ast.Call) or _called(node.value) != "Format":
        return None
    call = node.value
    fields = dict(zip(("name", "extensions", "read", "write", "description"), call.args))
    fields.update({k.arg: k.value for k in call.keywords if k.arg})
    try:
        meta = {key: ast.literal_eval(fields[key]) for key in ("name", "extensions") if key in fields}
        meta["description"] = ast.literal_eval(fields["description"]) if "description" in fields else ""
    except ValueError:
        return None
    if set(meta) != {"name", "extensions", "description"}:
        return None
    meta["extensions"] = tuple(meta["extensions"])
    return meta


if __name__ == "__main__":
    print(f"wrote {write_catalog()}")
