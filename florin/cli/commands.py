"""florin's own CLI commands, registered through ``florin_register_commands``."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import numpy as np
import typer

from florin.errors import InputFileError

__all__ = ["register"]


def info(file: Path = typer.Argument(..., help="Volume file to describe.")):
    """Show shape, dtype, spacing and format of a volume file."""
    from florin.io import read
    from florin.registry import get_registry
    from florin.volume import get_spacing

    fmt = get_registry().format_for_path(file)
    vol = read(file)
    lazy = not isinstance(vol.data, np.ndarray) or isinstance(vol.data, np.memmap)
    typer.echo(f"file:    {file}")
    typer.echo(f"format:  {fmt.name}")
    typer.echo(f"shape:   {tuple(vol.shape)}  dims: {', '.join(vol.dims)}")
    typer.echo(f"dtype:   {vol.dtype}  ({vol.nbytes / 2**20:.1f} MiB{', lazy' if lazy else ''})")
    units = vol.attrs.get("units", "")
    typer.echo(f"spacing: {get_spacing(vol)}{' ' + units if units else ''}")


def plugins():
    """List plugins with their version, what each registers, and failures."""
    from florin.registry import get_registry

    reg = get_registry()
    for plugin in reg.plugins.values():
        version = f" {plugin.version}" if plugin.version else ""
        typer.echo(f"{plugin.name}{version} [{plugin.status}]")
        if plugin.error:
            typer.echo(f"    error: {plugin.error}")
        for kind, names in plugin.registered.items():
            if names:
                typer.echo(f"    {kind}: {', '.join(names)}")


def formats():
    """List the file formats that can be read and written."""
    from florin.registry import EXTRAS, get_registry

    reg = get_registry()
    for fmt in reg.formats.values():
        typer.echo(f"{fmt.name:10s} {' '.join(fmt.extensions):28s} {fmt.description}")
    for name, extra in EXTRAS["formats"].items():
        if name not in reg.formats:
            typer.echo(f"{name:10s} (not installed: pip install 'florin[{extra}]')")


def ops():
    """List operators with their parameters and defaults."""
    from florin.registry import get_registry

    for name, factory in sorted(get_registry().operators.items()):
        sig = factory.signature
        shown = sig.replace(parameters=list(sig.parameters.values())[1:])
        summary = (inspect.getdoc(factory.func) or "").split("\n", 1)[0]
        typer.echo(f"{name}{shown}\n    {summary}")


def run(
    pipeline: Path = typer.Argument(..., help="Pipeline file: a pickle written by Pipeline.dump()."),
    input: str = typer.Argument(None, help="Input volume (omit when the pipeline loads its own input)."),
):
    """Run a serialized pipeline on INPUT."""
    from florin.pipelines import Pipeline

    if not pipeline.exists():
        raise InputFileError(f"pipeline file {os.fspath(pipeline)!r} does not exist")
    if input is not None and not os.path.exists(input):
        raise InputFileError(f"input {input!r} does not exist")
    pipe = Pipeline.from_file(pipeline)
    result = pipe(input) if input is not None else pipe()
    shape = getattr(result, "shape", None)
    typer.echo(f"done: {type(result).__name__}{' ' + str(tuple(shape)) if shape is not None else ''}", err=True)


def register(app: typer.Typer) -> None:
    """Add florin's own commands to ``app``."""
    from florin.registry import get_registry

    reg = get_registry()
    for func in (info, plugins, formats, ops, run):
        app.command(name=func.__name__)(func)
        reg.note_command(func.__name__)


