"""florin's own CLI commands, registered through ``florin_register_commands``."""

from __future__ import annotations

import inspect
import logging
import os
import runpy
import traceback
from pathlib import Path

import typer

from florin.errors import InputFileError, MissingInputError, ParameterError
from florin.registry import EXTRAS, get_registry

__all__ = ["files", "register", "segmenting"]


def files():
    """:mod:`florin.cli._files` (I/O, pipelines; xarray): the one import of it, when a command first needs it."""
    from florin.cli import _files

    return _files


def segmenting():
    """:mod:`florin.cli._segmenting` (the operators, tuning, previews; numba): the one import of it, on first use."""
    from florin.cli import _segmenting

    return _segmenting


def info(
    file: Path = typer.Argument(..., help="Volume file to describe."),
    format: str = typer.Option(None, "--format", "-f", metavar="NAME",
                               help="Input format (see `florin formats`; default: from the extension)."),
):
    """Show shape, dtype, spacing and format of a volume file."""
    io = files()
    fmt = io._format(file, format)
    vol = io.read(file, format=format)
    lazy = io.is_lazy(vol)
    typer.echo(f"file:    {file}")
    typer.echo(f"format:  {fmt.name}")
    typer.echo(f"shape:   {tuple(vol.shape)}  dims: {', '.join(vol.dims)}")
    typer.echo(f"dtype:   {vol.dtype}  ({vol.nbytes / 2**20:.1f} MiB{', lazy' if lazy else ''})")
    units = vol.attrs.get("units", "")
    typer.echo(f"spacing: {io.get_spacing(vol)}{' ' + units if units else ''}")


def plugins():
    """List plugins with their version, what each registers, and failures."""
    reg = get_registry()
    for plugin in reg.plugins.values():
        version = f" {plugin.version}" if plugin.version else ""
        typer.echo(f"{plugin.name}{version} [{plugin.status}]")
        if plugin.error:
            typer.echo(f"    failed: {plugin.error}")
        for kind, names in plugin.registered.items():
            if names:
                typer.echo(f"    {kind}: {', '.join(names)}")
        for note in plugin.notes:
            typer.echo(f"    note: {note}")


def formats():
    """List the file formats that can be read and written."""
    reg = get_registry()
    rows = [(name, " ".join(extensions), description)
            for name, (extensions, description) in ((n, reg.format_info(n)) for n in reg.formats)]
    rows += [(name, "", f"(not installed: pip install 'florin[{extra}]')")
             for name, extra in EXTRAS["formats"].items() if name not in reg.formats]
    # Columns as wide as their widest entry, so a plugin's longer name or extensions keep the table aligned.
    name_width = max(len(row[0]) for row in rows)
    ext_width = max(len(row[1]) for row in rows)
    for name, extensions, description in rows:
        typer.echo(f"{name:<{name_width}}  {extensions:<{ext_width}}  {description}".rstrip())


def ops():
    """List operators and steps with their parameters and defaults."""
    reg = get_registry()
    for name in sorted(reg.operators):
        signature, summary = reg.describe_operator(name)
        typer.echo(f"{name}{signature}\n    {summary}")


def _load_pipeline(path: Path):
    Pipeline = files().Pipeline

    if not path.exists():
        raise MissingInputError(f"pipeline file {os.fspath(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        return Pipeline.from_toml(path)
    if suffix == ".py":
        namespace = _run_pipeline_script(path)
        pipe = namespace.get("pipeline")
        if not isinstance(pipe, Pipeline):
            raise InputFileError(f"{os.fspath(path)!r} must define a florin pipeline named `pipeline`")
        return pipe
    return Pipeline.from_file(path)


def _run_pipeline_script(path: Path) -> dict:
    """Run a ``.py`` pipeline file; an error in it is an :class:`InputFileError` with its file, line and message."""
    name = os.fspath(path)
    try:
        return runpy.run_path(name, run_name="florin_pipeline")
    except SyntaxError as exc:  # IndentationError too
        where = f"{exc.filename or name}, line {exc.lineno}" if exc.lineno else (exc.filename or name)
        raise InputFileError(f"pipeline file {where}: {type(exc).__name__}: {exc.msg}") from exc
    except (Exception, SystemExit) as exc:
        if isinstance(exc, SystemExit):
            message = f"SystemExit: it called exit({exc.code!r})"
        else:
            message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        target = os.path.realpath(name)
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if os.path.realpath(f.filename) == target]
        where = f"{name}, line {frames[-1].lineno}" if frames else name
        raise InputFileError(f"pipeline file {where}: {message}") from exc


def with_executor(pipeline, name: str | None, workers: int | None = None):
    """Rebuild ``pipeline`` with every (nested) pipeline run by executor ``name``."""
    if name is None:
        return pipeline
    Pipeline = files().Pipeline
    cls = get_registry().executor(name)
    options = {}
    if workers is not None:
        # workers= on every built-in executor; the other names for plugin executors that still use them.
        for key in ("workers", "threads", "processes", "max_workers"):
            if key in inspect.signature(cls.__init__).parameters:
                options[key] = workers
                break
    steps = [with_executor(s, name, workers) if isinstance(s, Pipeline) else s for s in pipeline.steps]
    return cls(*steps, **options)


MEMORY_HELP = "Memory budget of the run, e.g. 512MiB, 2GiB, 1.5G (default: a quarter of the available memory)."
SCRATCH_HELP = "Directory for on-disk intermediates above the budget (default: the temporary directory); removed after."
RESUME_HELP = ("Keep per-tile completion records (NAME.florin-partial beside the first output, or in --scratch) and "
               "continue an interrupted run from them; removed when the run succeeds.")


def resumed_outputs(outputs, scratch, *, pipeline=None, output=None):
    """For ``--resume``: the real paths among ``outputs`` that an interrupted run committed (not refused).

    With ``pipeline``: ``(its records folder, those paths)``; see :func:`florin.resume.partial_folder`.
    """
    io = files()
    found = set()
    for out in filter(None, outputs):
        out = Path(out)
        folder = (Path(scratch) if scratch is not None else out.parent) / (out.name + io.FOLDER_SUFFIX)
        found |= io.committed_outputs(folder)
    if pipeline is None:
        return found
    return io.partial_folder(pipeline, scratch=scratch, output=output), found


def run_options(memory, scratch) -> dict:
    """``memory=`` and ``scratch=`` for a pipeline call, from ``--memory`` and ``--scratch`` (checked now)."""
    options = {}
    if memory is not None:
        options["memory"] = files().parse_size(memory, name="--memory")
    if scratch is not None:
        if scratch.exists() and not scratch.is_dir():
            raise ParameterError(f"--scratch must be a directory, got the file {os.fspath(scratch)!r}")
        options["scratch"] = scratch
    return options


def run(
    pipeline: Path = typer.Argument(..., help="Pipeline file: .toml, a .py defining `pipeline`, or a pickle."),
    input: str = typer.Argument(None, help="Input volume (omit when the pipeline loads its own input)."),
    output: Path = typer.Option(None, "--output", "-o", help="Write the pipeline's result here."),
    executor: str = typer.Option(None, "--executor", "-e", help="Run every (nested) pipeline with this executor."),
    workers: int = typer.Option(None, "--workers", "-j", min=1, help="Workers for the executor."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    format: str = typer.Option(None, "--format", "-f", metavar="NAME",
                               help="Input format (see `florin formats`; default: from the extension)."),
    memory: str = typer.Option(None, "--memory", "-m", metavar="SIZE", help=MEMORY_HELP),
    scratch: Path = typer.Option(None, "--scratch", metavar="DIR", help=SCRATCH_HELP),
    resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
):
    """Run a pipeline file on INPUT."""
    io = files()
    budget = run_options(memory, scratch)

    if input is not None and not os.path.exists(input):
        raise MissingInputError(f"input {input!r} does not exist")
    if output is not None and input is not None and os.path.exists(output) and os.path.samefile(output, input):
        raise ParameterError(f"output {os.fspath(output)!r} is the input; choose another output path")

    pipe = with_executor(_load_pipeline(pipeline), executor, workers)
    saves = io.pipeline_saves(pipe)
    if overwrite:
        for step in saves:  # --overwrite applies to the pipeline's own save steps too
            step.overwrite = True
    done = set()
    if resume:  # the records beside the first save (or in --scratch), else beside -o
        budget["resume"], done = resumed_outputs([step.path for step in saves], scratch, pipeline=pipe, output=output)
    if output is not None:
        get_registry().format_for_path(output)  # fail before running on an unknown extension
        if os.path.exists(output) and not overwrite:
            raise ParameterError(f"output {os.fspath(output)!r} already exists; pass --overwrite to replace it")
    # Every output is checked before anything is computed (those a resumed run committed are not written again).
    io.check_outputs([(f"save step {step.name!r}", step.path, step.overwrite) for step in saves
                   if os.path.realpath(step.path) not in done]
                  + ([("-o", output)] if output is not None else []), overwrite=overwrite)
    if input is not None and format is not None:
        input = io.read(input, format=format)  # lazy: the pipeline's load() passes the volume on
    result = pipe(input, **budget) if input is not None else pipe(**budget)
    if output is not None:
        io.write(output, result, overwrite=overwrite)
    shape = getattr(result, "shape", None)
    logging.getLogger("florin").info(f"done: {type(result).__name__}{' ' + str(tuple(shape)) if shape is not None else ''}")


def preview(
    volume: Path = typer.Argument(..., help="Volume to show (2-D or 3-D)."),
    output: Path = typer.Option(..., "--output", "-o", help="PNG file to write."),
    labels: Path = typer.Option(None, "--labels", "-l", help="Label or class volume to overlay."),
    montage: int = typer.Option(None, "--montage", min=1, help="Show N z slices instead of orthogonal mid-slices."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    format: str = typer.Option(None, "--format", "-f", metavar="NAME",
                               help="Format of VOLUME (see `florin formats`; default: from the extension)."),
):
    """Write a PNG of orthogonal mid-slices (or a z montage) with label overlays."""
    io, draw = files(), segmenting()
    if output.suffix.lower() != ".png":
        raise ParameterError(f"--output must end in .png, got {os.fspath(output)!r}")
    if output.exists() and not overwrite:
        raise ParameterError(f"output {os.fspath(output)!r} already exists; pass --overwrite to replace it")
    io.check_outputs([("-o", output)], overwrite=overwrite)  # its folder is writable, before anything is read
    vol = io.read(volume, format=format)
    lab = io.read(labels) if labels is not None else None
    draw.save_preview(output, vol, lab, montage=montage, title=draw.preview_title(volume, labels))
    logging.getLogger("florin").info(f"wrote {output}")


def register(app: typer.Typer) -> None:
    """Add florin's own commands to ``app``."""
    for func in (info, plugins, formats, ops, run, preview):
        app.command(name=func.__name__)(func)


