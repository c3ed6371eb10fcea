"""``florin segment`` (the classic FLoRIN pipeline) and ``florin demo``."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from pathlib import Path

import typer

import florin
from florin.cli.commands import (
    MEMORY_HELP,
    RESUME_HELP,
    SCRATCH_HELP,
    files,
    resumed_outputs,
    run_options,
    segmenting,
    with_executor,
)
from florin.errors import MissingInputError, OutputExistsError, ParameterError
from florin.registry import get_registry

__all__ = ["build_segment_pipeline", "parse_class", "parse_ints"]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def parse_ints(text, name):
    """``'10,64,64'`` -> ``(10, 64, 64)``; ``'32'`` -> ``32``; None stays None."""
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in str(text).replace("x", ",").split(","))
    except ValueError:
        raise ParameterError(f"{name} must be integers separated by commas (e.g. 10,64,64), got {text!r}") from None
    if any(v < 1 for v in values):
        raise ParameterError(f"{name} entries must be >= 1, got {text!r}")
    return values[0] if len(values) == 1 else values


_RANGE = re.compile(r"^\s*([^.]*?)\s*(\.\.\s*([^.]*?))?\s*$")


def _number(text, spec):
    try:
        value = float(text)
    except ValueError:
        raise ParameterError(f"--class {spec!r}: {text!r} is not a number") from None
    return int(value) if value.is_integer() else value


def parse_class(spec: str):
    """``'cell:area=100..300,depth=10..25'`` -> ``bounds_classifier('cell', area=(100, 300), depth=(10, 25))``.

    ``lo..hi`` is an inclusive range, ``lo..`` or ``..hi`` leave an end open, a
    plain number is an upper bound, and a name without bounds is the default
    class (matches everything; give it last).

    Examples
    --------
    >>> parse_class("cell:area=100..300,depth=..25,width=40").bounds
    {'area': (100, 300), 'depth': (None, 25), 'width': (None, 40)}
    """
    name, _, body = spec.partition(":")
    name = name.strip()
    if not name:
        raise ParameterError(f"--class {spec!r}: give a class name, e.g. 'cell:area=100..300'")
    if "=" in name or ".." in name:
        # 'cell area=1..9' would be a class named "cell area=1..9" that matches everything.
        raise ParameterError(f"--class {spec!r}: put a colon between the class name and its bounds, "
                             "e.g. 'cell:area=100..300'")
    bounds = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        prop, eq, value = part.partition("=")
        if not eq or not prop.strip():
            raise ParameterError(f"--class {spec!r}: {part!r} must look like property=lo..hi")
        if ".." in value:
            lo, hi = (v.strip() for v in value.split("..", 1))
            bounds[prop.strip()] = (_number(lo, spec) if lo else None, _number(hi, spec) if hi else None)
        else:
            bounds[prop.strip()] = _number(value.strip(), spec)
    return florin.bounds_classifier(name, **bounds)


def _classes_from_file(path: Path):
    if not path.exists():
        raise MissingInputError(f"classes file {os.fspath(path)!r} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ParameterError(f"classes file {os.fspath(path)!r}: invalid TOML: {exc}") from None
    entries = data.get("class")
    if not isinstance(entries, list) or not entries:
        raise ParameterError(f"classes file {os.fspath(path)!r} needs [[class]] tables with a name and bounds")
    out = []
    for entry in entries:
        entry = dict(entry)
        name = entry.pop("name", None)
        out.append(florin.bounds_classifier(name, **{k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()}))
    return out


class _SaveObjects:
    """Pipeline step writing the regions table to CSV and passing the regions on."""

    name = "save_objects"
    per_item = False

    def __init__(self, path, overwrite):
        self.path, self.overwrite = Path(path), overwrite

    def __call__(self, regions):
        if self.path.exists() and not self.overwrite:
            raise OutputExistsError(f"output {os.fspath(self.path)!r} already exists; pass --overwrite to replace it")
        regions.to_csv(self.path)
        return regions


def build_segment_pipeline(
    *,
    output,
    shape=None,
    threshold=0.25,
    polarity="dark",
    tile=None,
    stride=None,
    executor="serial",
    workers=None,
    min_size=64,
    connectivity=1,
    classes=(),
    objects=None,
    mask=None,
    overwrite=False,
    input_format=None,
):
    """The classic FLoRIN pipeline as the CLI runs it.

    load -> [tile ->] NDNT -> binary opening [-> join] -> remove small objects ->
    label -> (regionprops -> classify -> reconstruct) -> save.
    Without classes the output is the instance label volume, with classes the
    class-label volume.
    """
    ops = segmenting()
    conncomp, morphology, thresholding = ops.conncomp, ops.morphology, ops.thresholding
    per_voxel = [
        thresholding.ndnt(shape=shape, threshold=threshold, polarity=polarity),
        morphology.binary_opening(),
    ]
    steps = [florin.load(format=input_format)]
    if tile is not None or executor != "serial":
        steps += [florin.tile(shape=tile, stride=stride), with_executor(florin.Serial(*per_voxel), executor, workers)]
    else:
        steps += per_voxel
    if mask is not None:
        steps.append(florin.save(mask, overwrite=overwrite))
    steps += [
        morphology.remove_small_objects(max_size=max(min_size - 1, 0), connectivity=connectivity),
        conncomp.label(connectivity=connectivity),
    ]
    if not classes:
        steps.append(florin.save(output, overwrite=overwrite))
    if classes or objects is not None:
        steps.append(conncomp.regionprops(intensity="input"))
    if classes:
        steps.append(florin.classify(*classes))
    if objects is not None:
        steps.append(_SaveObjects(objects, overwrite))
    if classes:
        steps += [florin.reconstruct(), florin.save(output, overwrite=overwrite)]
    return florin.Serial(*steps)


def segment(
    input: Path = typer.Argument(..., help="Input volume (TIFF, NPY, HDF5, ... see `florin formats`)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output volume: labels, or classes with --class."),
    shape: str = typer.Option(None, "--shape", metavar="Z,Y,X",
                              help="NDNT neighbourhood in z,y,x order, e.g. 10,64,64 (default: volume/8)."),
    threshold: float = typer.Option(None, "--threshold", "-t",
                                    help="NDNT threshold: fraction [0,1] or percent (1,100] (default 0.25)."),
    polarity: str = typer.Option(None, "--polarity",
                                 help="Foreground is 'dark' or 'bright' vs. its neighbourhood (default dark)."),
    tile: str = typer.Option(None, "--tile", metavar="Z,Y,X",
                             help="Tile shape in z,y,x order, e.g. 10,64,64 (default: whole volume when serial; "
                                  "else tiles florin chooses within --memory)."),
    stride: str = typer.Option(None, "--stride", metavar="Z,Y,X",
                               help="Tile stride in z,y,x order, e.g. 10,32,32 (default: the tile shape)."),
    executor: str = typer.Option("serial", "--executor", "-e", help="serial, multithread, multiprocess, mpi, ..."),
    workers: int = typer.Option(None, "--workers", "-j", min=1, help="Workers for the executor."),
    min_size: int = typer.Option(None, "--min-size", min=0, help="Remove objects smaller than this (voxels; default 64)."),
    connectivity: int = typer.Option(1, "--connectivity", min=1, help="1 = faces ... ndim = full."),
    classes: list[str] = typer.Option(None, "--class", metavar="NAME:PROP=LO..HI,...",
                                       help="Class rule, e.g. 'cell:area=100..300' (repeat; first match wins)."),
    classes_file: Path = typer.Option(None, "--classes", help="TOML file of [[class]] tables (name + bounds)."),
    objects: Path = typer.Option(None, "--objects", help="Write the objects table (CSV)."),
    mask: Path = typer.Option(None, "--mask", help="Also write the binary segmentation."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    format: str = typer.Option(None, "--format", "-f", metavar="NAME",
                               help="Input format (see `florin formats`; default: from the extension)."),
    auto: bool = typer.Option(False, "--auto",
                              help="Estimate polarity, --shape, --threshold and --min-size from the volume "
                                   "(options given explicitly win) and print them."),
    memory: str = typer.Option(None, "--memory", "-m", metavar="SIZE", help=MEMORY_HELP),
    scratch: Path = typer.Option(None, "--scratch", metavar="DIR", help=SCRATCH_HELP),
    resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
):
    """Segment a volume with the classic FLoRIN pipeline (NDNT, opening, objects, classes)."""
    io = files()
    budget = run_options(memory, scratch)

    if not input.exists():
        raise MissingInputError(f"input {os.fspath(input)!r} does not exist")
    # With --resume, outputs that the interrupted run committed are not written again (nor refused).
    done = resumed_outputs((output, mask, objects), scratch) if resume else set()
    for out in filter(None, (output, mask, objects)):
        if out.exists() and os.path.samefile(out, input):
            raise ParameterError(f"output {os.fspath(out)!r} is the input; choose another path")
        if out.exists() and not overwrite and os.path.realpath(out) not in done:
            raise ParameterError(f"output {os.fspath(out)!r} already exists; pass --overwrite to replace it")
    for out in filter(None, (output, mask)):
        get_registry().format_for_path(out)
    io.check_outputs([(name, out) for name, out in (("-o", output), ("--mask", mask), ("--objects", objects))
                   if out and os.path.realpath(out) not in done], overwrite=overwrite)
    if objects is not None and objects.suffix.lower() != ".csv":
        raise ParameterError(f"--objects must be a .csv file, got {os.fspath(objects)!r}")
    if polarity is not None and polarity not in ("dark", "bright"):
        raise ParameterError(f"--polarity must be 'dark' or 'bright', got {polarity!r}")
    if threshold is not None and not (0 <= threshold <= 100):
        raise ParameterError(f"--threshold must be a fraction in [0, 1] or a percentage in (1, 100], got {threshold}")
    get_registry().executor(executor)
    rules = [parse_class(c) for c in classes or ()]
    if classes_file is not None:
        rules += _classes_from_file(classes_file)
    if stride is not None and tile is None:
        raise ParameterError("--stride needs --tile: it is the step between tiles (e.g. --tile 10,64,64 "
                             "--stride 10,32,32)")
    vol = io.read(input, format=format)
    if vol.ndim < 2 or vol.size == 0:
        # Checked when loading, not after the whole pipeline ran and the write failed.
        raise ParameterError(f"input {os.fspath(input)!r} has shape {tuple(vol.shape)}: segment needs a 2-D (y, x) "
                             "or 3-D (z, y, x) volume with voxels")
    io.check_single_channel(vol, f"input {os.fspath(input)!r}")
    shape = parse_ints(shape, "--shape")
    if auto:
        shape, threshold, polarity, min_size = _auto_parameters(vol, shape, threshold, polarity, min_size)
    threshold = 0.25 if threshold is None else threshold
    polarity = "dark" if polarity is None else polarity
    min_size = 64 if min_size is None else min_size
    tile_shape = parse_ints(tile, "--tile")
    if tile_shape is None and executor != "serial":
        # the engine's tiles within the budget (the user's would bound the blocks from below)
        tile_shape = segmenting().default_tile(vol.shape, workers or os.cpu_count() or 1, budget.get("memory"))
    pipeline = build_segment_pipeline(
        output=output, shape=shape, threshold=threshold, polarity=polarity,
        tile=tile_shape, stride=parse_ints(stride, "--stride"), executor=executor, workers=workers,
        min_size=min_size, connectivity=connectivity, classes=rules, objects=objects, mask=mask, overwrite=overwrite,
        input_format=format,
    )
    if resume:
        budget["resume"] = True  # NAME.florin-partial beside the first output (the mask, else -o), or in --scratch
    start = time.perf_counter()
    result = _run_with_report(pipeline, input, **budget)
    logging.getLogger("florin").info(f"segmented {tuple(vol.shape)} in {time.perf_counter() - start:.2f} s -> {output}")
    return result


def _auto_parameters(vol, shape, threshold, polarity, min_size):
    """``--auto``: the estimated parameters (:func:`florin.tuning.estimate_parameters`) where none was given."""
    estimate = segmenting().estimate_parameters(vol)
    chosen = {
        "shape": estimate["shape"] if shape is None else shape,
        "threshold": estimate["threshold"] if threshold is None else threshold,
        "polarity": estimate["polarity"] if polarity is None else polarity,
        "min_size": estimate["min_size"] if min_size is None else min_size,
    }
    shape_text = ",".join(map(str, chosen["shape"])) if isinstance(chosen["shape"], tuple) else str(chosen["shape"])
    radius = ",".join(f"{r:g}" for r in estimate["radius"])
    typer.echo(f"auto: --polarity {chosen['polarity']} --shape {shape_text} --threshold {chosen['threshold']:g} "
               f"--min-size {chosen['min_size']}   (object radius ~{radius} voxels, intensity skewness "
               f"{estimate['skewness']:+.2f})")
    return chosen["shape"], chosen["threshold"], chosen["polarity"], chosen["min_size"]


def _run_with_report(pipeline, data, **options):
    """Run ``pipeline`` with a progress bar (on a terminal) and log per-step timings (``options``: memory, scratch...)."""
    progress = _progress()
    with files()._run.observe(progress=progress) as observer:
        if progress is not None:
            progress.start()
        try:
            result = pipeline(data, **options) if data is not None else pipeline(**options)
        finally:
            if progress is not None:
                progress.stop()
    _report_timings(observer.timings)
    return result


def _progress():
    """A rich progress display on stderr when it is a terminal, else None."""
    if not sys.stderr.isatty():
        return None
    return segmenting().progress_bar()


def _report_timings(timings):
    log = logging.getLogger("florin")
    if timings:
        # Names padded and numbers right-aligned to the widest of each, so the decimal points line up.
        width = max(len(k) for k in timings)
        numbers = {name: f"{seconds:.2f}" for name, seconds in timings.items()}
        digits = max(len(n) for n in numbers.values())
        log.info("time per step:")
        for name, number in numbers.items():
            log.info(f"  {name:<{width}}  {number:>{digits}} s")


def demo(
    directory: Path = typer.Argument(Path("florin-demo"), help="Where to write the demo outputs."),
    size: str = typer.Option("48,192,192", "--size", metavar="Z,Y,X", help="Phantom shape in z,y,x order, e.g. 48,192,192."),
    executor: str = typer.Option("serial", "--executor", "-e", help="Executor for the tiles and the classification."),
    workers: int = typer.Option(None, "--workers", "-j", min=1, help="Workers for the executor."),
    seed: int = typer.Option(0, "--seed", help="Phantom seed."),
):
    """Generate a phantom, run the seed's weak-classification pipeline on it and report accuracy."""
    ops = segmenting()
    conncomp, morphology, thresholding = ops.conncomp, ops.morphology, ops.thresholding
    shape = parse_ints(size, "--size")
    if not isinstance(shape, tuple) or len(shape) != 3:
        raise ParameterError(f"--size must be three integers z,y,x, got {size!r}")
    directory.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # On a cold numba cache a background process compiles the kernels of the steps after NDNT while this one
    # compiles NDNT (two cores instead of one); a warm cache starts nothing.
    with ops.compile_demo_ahead():
        sample = ops.phantom(shape, seed=seed)
        volume_path = directory / "volume.tif"
        florin.io.write(volume_path, florin.as_volume(sample.image, spacing=(1.0, 0.5, 0.5), units="um"),
                        overwrite=True)

        def parallel(*steps):
            return with_executor(florin.Serial(*steps), executor, workers)

        pipeline = florin.Serial(
            florin.load(volume_path),
            florin.tile(shape=(10, 64, 64), stride=(10, 32, 32)),
            parallel(thresholding.ndnt(shape=(10, 64, 64), threshold=0.3), morphology.binary_opening()),
            florin.save(directory / "segmented.tiff", overwrite=True),
            conncomp.label(),
            morphology.remove_small_holes(max_size=19),
            conncomp.regionprops(intensity="input"),
            parallel(florin.classify(*(florin.bounds_classifier(n, **b) for n, b in ops.PHANTOM_CLASSES))),
            _SaveObjects(directory / "objects.csv", overwrite=True),
            florin.reconstruct(),
            florin.save(directory / "labeled.tiff", overwrite=True),
        )
        classes = _run_with_report(pipeline, None)
    segmented = florin.io.read(directory / "segmented.tiff").values
    # the same pictures `florin preview volume.tif --labels labeled.tiff` (or segmented.tiff) draws of these files
    volume = florin.io.read(volume_path)
    for png, result in (("preview.png", "labeled.tiff"), ("segmented.png", "segmented.tiff")):
        ops.save_preview(directory / png, volume, florin.io.read(directory / result),
                         title=ops.preview_title(volume_path, result))
    elapsed = time.perf_counter() - start

    table = ops.class_table(classes)
    values = classes.values
    typer.echo(f"florin demo: phantom {shape}, executor {executor}, {elapsed:.1f} s")
    for cid, name in sorted(table.items()):
        n_true = int((sample.object_classes == cid).sum())
        typer.echo(f"  {name:<12} {n_true:4d} true objects, {int((values == cid).sum()):8d} voxels")
    typer.echo(f"  foreground Dice vs. ground truth: {ops.dice(segmented, sample.labels > 0):.3f}")
    typer.echo(f"  objects with their true class:    "
               f"{100 * ops.class_accuracy(sample.labels, sample.object_classes, values):.1f}%")
    typer.echo(f"  outputs in {directory}/: volume.tif segmented.tiff labeled.tiff objects.csv preview.png segmented.png")


def register(app: typer.Typer) -> None:
    """Add ``segment`` and ``demo`` to ``app``."""
    for func in (segment, demo):
        app.command(name=func.__name__)(func)
