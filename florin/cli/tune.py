"""``florin tune``: find pipeline parameters from an annotation and write a pipeline file."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import typer

from florin.cli.commands import files, segmenting
from florin.cli.segment import parse_ints
from florin.errors import MissingInputError, ParameterError
from florin.registry import get_registry

__all__ = ["register"]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def tune(
    input: Path = typer.Argument(..., help="Input volume (TIFF, NPY, HDF5, ... see `florin formats`)."),
    output: Path = typer.Option(..., "--output", "-o", help="Pipeline file to write (.toml)."),
    annotation: Path = typer.Option(None, "--annotation", "-a",
                                    help="Annotation volume: 0 unlabeled, 1 background, 2 foreground."),
    labels: Path = typer.Option(None, "--labels", "-l",
                                help="A label image of a few objects: instead of --annotation, or with it the labels "
                                     "of its objects (for --classes)."),
    classes: str = typer.Option(None, "--classes", "-c", metavar="SPEC",
                                help="Also learn classes of the --labels objects: inline NAME=LABELS items separated "
                                     "by ';' (e.g. 'cell=1-12;vasculature=13,14'), or a .toml/.json file of "
                                     "name = [labels]."),
    report: Path = typer.Option(None, "--report", "-r", help="Write the score landscape and best result (.png or .html)."),
    metric: str = typer.Option("dice", "--metric", "-m", metavar="NAME", help="dice, jaccard or object_f1 (on annotated voxels)."),
    budget: float = typer.Option(60.0, "--budget", min=0, metavar="SECONDS", help="Seconds the search may take."),
    holdout: float = typer.Option(0.34, "--holdout", min=0, max=0.99, metavar="FRACTION",
                                  help="Fraction of the annotated slice runs held out and only scored."),
    top: int = typer.Option(5, "--top", min=1, metavar="N", help="How many configurations to print."),
    tile: str = typer.Option("auto", "--tile", metavar="Z,Y,X",
                             help="Tile shape of the written pipeline in z,y,x order, e.g. 64,256,256; 'none' for "
                                  "whole-volume steps (default: auto)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    format: str = typer.Option(None, "--format", "-f", metavar="NAME",
                               help="Input format (see `florin formats`; default: from the extension)."),
):
    """Find NDNT, opening and size parameters from an annotation (or estimate them) and write a pipeline file.

    The written file runs unchanged with `florin run PIPELINE.toml VOLUME -o out.tif`. With --classes it also
    classifies the objects (bounds learned from the named --labels objects) and writes the class-label volume.
    """
    io, ops = files(), segmenting()
    for path, name in ((input, "input"), (annotation, "--annotation"), (labels, "--labels")):
        if path is not None and not path.exists():
            raise MissingInputError(f"{name} {os.fspath(path)!r} does not exist")
    if classes is not None and labels is None:
        raise ParameterError("--classes needs --labels (a label image of the annotated objects whose values it names)")
    class_map = None if classes is None else read_classes(classes)
    if output.suffix.lower() != ".toml":
        raise ParameterError(f"--output must be a .toml pipeline file, got {os.fspath(output)!r}")
    for out in filter(None, (output, report)):
        if out.exists() and not overwrite:
            raise ParameterError(f"output {os.fspath(out)!r} already exists; pass --overwrite to replace it")
    if report is not None and report.suffix.lower() not in (".png", ".html"):
        raise ParameterError(f"--report must end in .png or .html, got {os.fspath(report)!r}")
    if report is not None and annotation is None and labels is None:
        raise ParameterError("--report needs --annotation or --labels (without them nothing is searched)")
    tile_shape = None if tile.strip().lower() == "none" else "auto" if tile.strip().lower() == "auto" \
        else parse_ints(tile, "--tile")
    volume = io.read(input, format=format)
    ann = io.read(annotation).values if annotation is not None else None
    lab = io.read(labels).values if labels is not None else None
    try:
        pipeline, result = ops.tune(volume, ann, labels=lab, classes=class_map, metric=metric, budget=budget,
                                    holdout=holdout, top=top, tile=tile_shape)
    except ParameterError as error:  # name the option, not the Python parameter
        text = str(error)
        if text.startswith("classes: "):
            raise type(error)(f"--classes: {text[len('classes: '):]}") from None
        raise
    text = ops.to_toml(pipeline)
    with ops.atomic_path(output) as tmp:
        Path(tmp).write_text(text)
    typer.echo(result.summary())
    if report is not None:
        ops.save_report(report, result, overwrite=overwrite)
        typer.echo(f"report: {report}")
    typer.echo(f"wrote {output}; run it with: florin run {output} {input} -o segmented.tif")
    logging.getLogger("florin").debug(text)


def read_classes(spec: str) -> dict:
    """``--classes``: a .toml/.json file of ``name = [labels]`` (or ``"label" = "name"``), else the inline form.

    Examples
    --------
    >>> read_classes("cell=1-3;vasculature=4")
    {'cell': [1, 2, 3], 'vasculature': [4]}
    """
    path = Path(spec)
    if path.suffix.lower() not in (".toml", ".json"):
        return segmenting().parse_classes_text(spec)
    if not path.exists():
        raise MissingInputError(f"--classes {spec!r} does not exist")
    try:
        data = tomllib.loads(path.read_text()) if path.suffix.lower() == ".toml" else json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ParameterError(f"--classes: {spec!r} is not valid {path.suffix[1:].upper()}: {error}") from None
    if not isinstance(data, dict):
        raise ParameterError(f"--classes: {spec!r} must hold a table of class name = [labels]")
    if data and all(isinstance(k, str) and k.strip().isdigit() for k in data):  # "1" = "cell": label -> name
        return {int(k): v for k, v in data.items()}
    return data


def register(app: typer.Typer) -> None:
    """Add ``tune`` to ``app``."""
    app.command(name="tune")(tune)
    get_registry().note_command("tune")
