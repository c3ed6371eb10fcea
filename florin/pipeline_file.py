"""Pipeline files: a TOML description that maps one-to-one onto the Python API.

Each step is a table. An operator step names a registered operator (``florin
ops`` lists them) or one of the built-in steps ``load``, ``save``, ``tile``,
``join``, ``classify`` and ``reconstruct``, with its parameters as keys
(positional ones under ``args``). A nested pipeline names its ``executor``
(``florin.<Executor>`` options as keys) and has its own ``steps``::

    executor = "serial"

    [[steps]]
    op = "load"

    [[steps]]
    op = "tile"
    shape = [10, 64, 64]
    stride = [10, 32, 32]

    [[steps]]
    executor = "multithread"

      [[steps.steps]]
      op = "thresholding.ndnt"
      shape = [10, 64, 64]
      threshold = 0.3

      [[steps.steps]]
      op = "morphology.binary_opening"

    [[steps]]
    op = "save"
    path = "segmented.tiff"

A plain Python function that can be imported is written as
``op = "python:module.attribute"``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys

import numpy as np
import tomli_w

from florin import steps as _steps
from florin.errors import MissingInputError, ParameterError, ParameterTypeError, PipelineError
from florin.io.metadata import plain
from florin.operators import Operator, florinate
from florin.registry import get_registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["from_dict", "from_toml", "to_dict", "to_toml"]

_PYTHON = "python:"


def _executor_options(pipeline) -> dict:
    # Executors keep each keyword option as an attribute of the same name.
    # Deprecated names (``deprecated_options``, e.g. Multithread's threads= for workers=) are not written.
    options = {}
    deprecated = getattr(pipeline, "deprecated_options", {})
    for name, param in inspect.signature(type(pipeline).__init__).parameters.items():
        if name in deprecated:
            continue
        if param.kind is inspect.Parameter.KEYWORD_ONLY and hasattr(pipeline, name):
            value = getattr(pipeline, name)
            if value is not None and value != param.default:
                options[name] = plain(value)
    return options


def _executor_name(pipeline) -> str:
    for name, cls in get_registry().executors.items():
        if type(pipeline) is cls:
            return name
    raise PipelineError(
        f"{type(pipeline).__name__} is not a registered executor; register it through the "
        "florin_register_executors hook to write it to a pipeline file"
    )


def _is_pipeline(step) -> bool:
    """Whether ``step`` is a pipeline (an executor's: its ``steps`` and its ``imap``); florin.pipelines imports this
    module for ``Pipeline.to_toml``."""
    return isinstance(getattr(step, "steps", None), list) and callable(getattr(step, "imap", None))


def _step_dict(step) -> dict:
    if _is_pipeline(step):
        return to_dict(step)
    spec = _steps.spec(step)
    if spec is not None:
        return plain(spec)
    if isinstance(step, Operator):
        for name, factory in get_registry().operators.items():
            if factory is step.factory:
                entry = {"op": name}
                if step.args:
                    entry["args"] = plain(list(step.args))
                entry.update(plain(step.kwargs))
                return entry
        raise PipelineError(
            f"operator {step.name} is not registered, so it cannot be written to a pipeline file; "
            "register it through the florin_register_operators hook"
        )
    module, qualname = getattr(step, "__module__", None), getattr(step, "__qualname__", "")
    if module and qualname and "<" not in qualname:
        try:
            obj = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            obj = None
        if obj is step:
            return {"op": f"{_PYTHON}{module}.{qualname}"}
    name = _steps.name(step)
    if name in ("squeeze",) and step is np.squeeze:  # numpy functions report numpy._core modules
        return {"op": f"{_PYTHON}numpy.squeeze"}
    raise PipelineError(f"step {name!r} cannot be written to a pipeline file (lambdas and local functions cannot)")


def to_dict(pipeline) -> dict:
    """The pipeline as plain data (what :func:`to_toml` writes)."""
    return {
        "executor": _executor_name(pipeline),
        **_executor_options(pipeline),
        "steps": [_step_dict(step) for step in pipeline.steps],
    }


def to_toml(pipeline) -> str:
    """The pipeline as TOML text.

    Examples
    --------
    >>> import florin
    >>> from florin.morphology import binary_opening
    >>> text = to_toml(florin.Serial(binary_opening()))
    >>> 'executor = "serial"' in text and 'op = "morphology.binary_opening"' in text
    True
    """
    return _inline_short_arrays(tomli_w.dumps(to_dict(pipeline)))


# A multi-line array whose items are one-line scalars (no brackets: nested arrays are collapsed inside out).
_MULTILINE_ARRAY = re.compile(r"\[\n((?:[ ]+[^\[\]\n]+,\n)+)[ ]*\]")


def _inline_short_arrays(text: str, width: int = 80) -> str:
    """``shape = [10, 64, 64]`` instead of tomli_w's one element per line, for arrays up to ``width`` characters."""

    def inline(match):
        items = [line.strip().rstrip(",") for line in match.group(1).splitlines()]
        joined = "[" + ", ".join(items) + "]"
        return joined if len(joined) <= width else match.group(0)

    while True:
        shorter = _MULTILINE_ARRAY.sub(inline, text)
        if shorter == text:
            return text
        text = shorter


def _build_step(entry, where):
    if not isinstance(entry, dict):
        raise ParameterError(f"{where}: a step must be a table, got {entry!r}")
    entry = dict(entry)
    if "executor" in entry:
        return from_dict(entry, where=where)
    if "op" not in entry:
        raise ParameterError(f"{where}: a step needs `op = \"name\"` or `executor = \"name\"`")
    name = entry.pop("op")
    args = entry.pop("args", [])
    if isinstance(name, str) and name.startswith(_PYTHON):
        target = name[len(_PYTHON) :]
        module_name, _, attr = target.rpartition(".")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError):
            raise ParameterError(f"{where}: cannot import {target!r}") from None
        if args or entry:
            factory = florinate(factory)
        else:
            return factory
    else:
        # One namespace: operators and the steps load, save, tile, join, classify, reconstruct.
        factory = get_registry().operator(name)
        from_spec = getattr(factory, "from_spec", None)
        if callable(from_spec):
            return from_spec(entry)
    try:
        return factory(*args, **entry)
    except TypeError as exc:
        raise ParameterError(f"{where}: {exc}") from None


def from_dict(data, *, where="pipeline"):
    """Build a pipeline from plain data (a parsed pipeline file)."""
    data = dict(data)
    executor = data.pop("executor", "serial")
    steps = data.pop("steps", None)
    if not isinstance(steps, list) or not steps:
        raise ParameterTypeError(f"{where}: `steps` must be a non-empty list of step tables, got {steps!r}")
    cls = get_registry().executor(executor)
    built = [_build_step(s, f"{where}, step {i + 1}") for i, s in enumerate(steps)]
    try:
        return cls(*built, **data)
    except TypeError as exc:
        raise ParameterError(f"{where}: executor {executor!r}: {exc}") from None


def from_toml(source):
    """Build a pipeline from TOML text or a path to a ``.toml`` file."""
    if isinstance(source, os.PathLike) or (isinstance(source, str) and source.endswith(".toml") and "\n" not in source):
        path = os.fspath(source)
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8")
        except FileNotFoundError:
            raise MissingInputError(f"pipeline file {path!r} does not exist") from None
        where = path
    else:
        text, where = source, "pipeline"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ParameterError(f"{where}: invalid TOML: {exc}") from None
    return from_dict(data, where=where)
