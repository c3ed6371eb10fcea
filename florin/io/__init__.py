"""Reading and writing volumes, dispatching on the format registry.

Formats are registered through the ``florin_register_formats`` hook (florin's
own TIFF and NPY formats included). :func:`read` and :func:`write` work on
volumes directly; :func:`load` and :func:`save` are the pipeline steps of the
same name (``florin.load`` / ``florin.save``).
"""

from __future__ import annotations

import errno
import inspect
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from florin import _run, tilemeta
from florin.errors import FlorinError, FormatError, InputFileError, MissingInputError, OutputExistsError, ParameterError
from florin.io import ondisk
from florin.io._blocks import copy_blocks
from florin.io.atomic import atomic_path
from florin.io.lazy import sources
from florin.io.ondisk import OnDiskArray
from florin.io.ondisk import create as _create
from florin.registry import get_registry
from florin.steps import NO_DATA
from florin.tiling import Tiles
from florin.volume import as_volume

__all__ = ["Format", "Load", "Save", "create", "load", "read", "save", "write"]


@dataclass(frozen=True)
class Format:
    """A file format florin can read and write.

    Parameters
    ----------
    name : str
        Registry name (``format=`` argument).
    extensions : tuple of str
        File name endings it claims, lower case with the dot (``('.tif', '.tiff')``).
    read : callable
        ``read(path, **options) -> xarray.DataArray``; may return a lazy volume.
    write : callable or None
        ``write(path, volume, **options)``; writes to exactly ``path`` (florin
        passes a temporary path and renames it on success, and has stripped
        the tile metadata from ``volume.attrs``). None derives it from
        ``create`` and ``open_region``: create the file, then copy the volume
        into it block by block (its options are those of ``create``).
    description : str
        One line for ``florin formats``.
    create : callable, optional
        ``create(path, shape, dtype, *, dims, attrs, **options) -> dict``: create
        an empty (zero-filled) file at exactly ``path`` that can then be written
        region by region; returns the read options that locate the array in it
        (e.g. ``{'key': 'data'}``). Formats with ``create`` can be the target of
        :func:`florin.io.create` and of tile-by-tile saves.
    open_region : callable, optional
        ``open_region(path, **locator)``: a context manager yielding an object
        whose ``obj[slices] = values`` writes a region of a file made by ``create``.
    dtypes : tuple of dtype, optional
        The dtypes it writes and reads back unchanged; None (default): every
        numeric dtype and bool. Writing another one is a ``FormatError``.
    ndims : tuple of int
        The smallest and largest number of dims it holds (default ``(1, 32)``);
        writing a volume outside them is a ``FormatError``.
    lazy : bool
        Whether its reader returns a lazy volume (:func:`florin.io.lazy.is_lazy`;
        default True).

    Notes
    -----
    Every registered format, a plugin's included, passes the conformance suite
    ``tests/io/test_format_conformance.py``: a round trip per dtype, lazy
    reads, spacing, no file left by a failing write, and one typed error for a
    missing file and for a bad ``key=``. ``dtypes``, ``ndims`` and ``lazy``
    declare what a format cannot do, so that the suite checks it refuses
    cleanly; whether it takes ``key=`` is its reader's signature.
    """

    name: str
    extensions: tuple
    read: object = field(repr=False)
    write: object = field(repr=False)
    description: str = ""
    create: object = field(default=None, repr=False)
    open_region: object = field(default=None, repr=False)
    dtypes: tuple = None
    ndims: tuple = (1, 32)
    lazy: bool = True

    def __post_init__(self):
        if self.write is None and self.create is not None and self.open_region is not None:
            object.__setattr__(self, "write", _RegionWrite(self.create, self.open_region))


class _RegionWrite:
    """A format's ``write`` derived from its ``create`` and ``open_region``: create, then copy block by block."""

    def __init__(self, create, open_region):
        self.create = create
        self.open_region = open_region

    def __call__(self, path, volume, **options):
        locator = self.create(path, volume.shape, volume.dtype, dims=volume.dims, attrs=dict(volume.attrs),
                              **options) or {}
        if volume.size:
            with self.open_region(path, **locator) as region:
                copy_blocks(region, volume)

    @property
    def __signature__(self):
        # The write options are create's own (without the dims and attrs that come from the volume).
        positional = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ("path", "volume")]
        options = [p for n, p in inspect.signature(self.create).parameters.items()
                   if p.kind is inspect.Parameter.KEYWORD_ONLY and n not in ("dims", "attrs")]
        return inspect.Signature(positional + options)


def _registry():
    return get_registry()


def _format(path, format):
    reg = _registry()
    if format is not None:
        return format if isinstance(format, Format) else reg.format(format)
    try:
        return reg.format_for_path(path)
    except FormatError:
        # A directory without a format extension is a stack of 2-D slices.
        text = os.fspath(path) if isinstance(path, str | os.PathLike) else ""
        if "stack" in reg.formats and text and (os.path.isdir(text) or text.endswith(("/", os.sep))):
            return reg.formats["stack"]
        raise


def _check_options(func, options, fmt, what):
    params = inspect.signature(func).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    for key in options:
        if key not in valid:
            raise ParameterError(
                f"{fmt.name} {what} does not take option {key!r}; valid options: {', '.join(valid) or 'none'}"
            )


def read(path, *, format=None, **options):
    """Read a volume from ``path``.

    Parameters
    ----------
    path : str or path-like
        File (or directory, for directory-based formats).
    format : str, optional
        Format name; by default chosen from the extension.
    **options
        Format-specific options (e.g. ``key=`` for the HDF5 dataset, Zarr array
        or NetCDF variable; ``level=`` for OME-Zarr; ``lazy=False`` to read the
        voxels now).

    Returns
    -------
    xarray.DataArray
        Lazy: no voxels are read until the volume (or a slice or tile of it)
        is indexed or converted with ``.values``; it pickles as a reference to
        the file (see :mod:`florin.io.lazy`).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "v.npy")
    >>> write(path, np.ones((2, 3), np.uint8))
    >>> read(path).shape
    (2, 3)
    """
    fmt = _format(path, format)
    if not os.path.exists(path):
        raise MissingInputError(f"input file {os.fspath(path)!r} does not exist")
    _check_options(fmt.read, options, fmt, "reader")
    try:
        vol = fmt.read(path, **options)
    except FlorinError:
        raise
    except Exception as exc:
        raise InputFileError(
            f"cannot read {os.fspath(path)!r} as {fmt.name}: {type(exc).__name__}: {exc}"
        ) from exc
    vol = as_volume(vol)
    vol.attrs.setdefault("source", os.fspath(path))
    return vol


def write(path, volume, *, format=None, overwrite=False, **options) -> None:
    """Write ``volume`` to ``path`` atomically.

    Parameters
    ----------
    path : str or path-like
        Output file; parent directories are created.
    volume : array_like or xarray.DataArray
        What to write.
    format : str, optional
        Format name; by default chosen from the extension.
    overwrite : bool
        Replace an existing output. An input of the running pipeline is never
        overwritten.
    **options
        Format-specific options (e.g. ``compression=``).

    Notes
    -----
    Under MPI in SPMD mode (``mpiexec -n N python script.py`` with
    :class:`florin.MPI`) only rank 0 writes; on the other ranks this returns
    without writing (see :func:`florin._run.is_writer`).
    """
    if not _run.is_writer():
        return

    fmt = _format(path, format)
    _check_options(fmt.write, options, fmt, "writer")
    volume = as_volume(volume)
    _check_dtype(fmt, volume.dtype, path)
    check_output(path, overwrite=overwrite, volume=volume)
    # Tile metadata describes a run, not the data: stripped here once, for every writer.
    volume = volume.copy(deep=False)
    volume.attrs = tilemeta.strip(dict(volume.attrs))
    try:
        with atomic_path(path) as tmp:
            try:
                fmt.write(tmp, volume, **options)
            except OSError as exc:
                reason = _with_errno(exc, tmp)
                if reason is exc:
                    raise
                raise reason from exc
    except FlorinError:
        raise
    except Exception as exc:
        raise FormatError(f"cannot write {os.fspath(path)!r} as {fmt.name}: {type(exc).__name__}: {exc}") from exc


def _check_dtype(fmt, dtype, path):
    """A ``FormatError`` when ``fmt`` declares the dtypes it holds (``Format.dtypes``) and ``dtype`` is not one."""
    if fmt.dtypes is None:
        return
    held = [np.dtype(d) for d in fmt.dtypes]
    if np.dtype(dtype) not in held:
        raise FormatError(
            f"cannot write {os.fspath(path)!r} as {fmt.name}: it holds {', '.join(d.name for d in held)}, "
            f"not {np.dtype(dtype).name}"
        )


def _with_errno(exc, tmp):
    """numpy reports a short write without its errno ("524288 requested and 261616 written"):
    when the disk has no room left for the rest, say so."""
    found = re.search(r"(\d+) requested and (\d+) written", str(exc)) if exc.errno is None else None
    if found is not None:
        missing = int(found.group(1)) - int(found.group(2))
        try:
            full = shutil.disk_usage(Path(tmp).parent).free < missing
        except OSError:
            full = False
        if full:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return exc


def check_output(path, *, overwrite=False, volume=None, source=None) -> None:
    """Raise :class:`OutputExistsError` unless ``path`` may be written.

    ``path`` must not be an input of the running pipeline, nor a file that
    ``volume`` is lazily read from (or ``source``), and must not exist unless
    ``overwrite`` is true.
    """
    real = os.path.realpath(os.fspath(path))
    state = _run.current()
    reads = [os.path.realpath(p) for p in sources(volume)] if volume is not None else []
    if source is not None:
        reads.append(os.path.realpath(os.fspath(source)))
    if real in reads or (state is not None and state.is_input(path) and os.path.exists(path)):
        raise OutputExistsError(
            f"refusing to write {os.fspath(path)!r}: it is the input being read; choose another output path"
        )
    if os.path.exists(path) and not overwrite:
        raise OutputExistsError(f"output {os.fspath(path)!r} already exists; pass overwrite=True to replace it")


class Load:
    """Pipeline step that reads a volume (see :func:`load`)."""

    name = "load"
    per_item = False
    #: It reads the pipeline's raw input (a path, or an array it wraps) itself.
    reads_paths = True

    def __init__(self, path=None, *, format=None, **options):
        self.path = path
        self.format = format
        self.options = options
        if format is not None:
            _format(path or "", format)  # unknown format names fail when the pipeline is built

    def __call__(self, data=None):
        if data is NO_DATA:
            data = None
        if self.path is not None and data is not None:
            raise ParameterError(
                f"load({os.fspath(self.path)!r}) already names its input; call the pipeline without data "
                "or use florin.load() without a path"
            )
        source = self.path if self.path is not None else data
        if source is None:
            raise ParameterError("load() has no input: give it a path, or call the pipeline with a path or array")
        state = _run.current()
        if isinstance(source, str | os.PathLike):
            if state is not None:
                state.add_input(source)
            volume = read(source, format=self.format, **self.options)
        else:
            volume = as_volume(source)
        if state is not None:
            state.set_input(volume)
        return volume

    def to_spec(self) -> dict:
        """This step as a pipeline-file table."""
        spec = {"op": "load"}
        if self.path is not None:
            spec["path"] = os.fspath(self.path)
        if self.format is not None:
            spec["format"] = self.format
        return {**spec, **self.options}

    def __repr__(self):
        return f"load({os.fspath(self.path)!r})" if self.path is not None else "load()"


class Save:
    """Pipeline step that writes its input and passes it on (see :func:`save`)."""

    name = "save"
    per_item = False
    #: Given the tiles of a volume (instead of the joined volume) it writes them one by one.
    accepts_tiles = True
    #: It can take part in a tiled run and write each tile's core into the output.
    streams_tiles = True
    #: Inside a run: the token naming the run's temporary output (set on the run's copy of the step).
    run_token = None

    def __init__(self, path, *, format=None, overwrite=False, **options):
        if isinstance(path, OnDiskArray):
            if format is not None or options:
                raise ParameterError("save(out) with an array from florin.io.create takes no format or options")
            self.path, self.format, self.overwrite, self.options, self.out = Path(path.target), None, True, {}, path
            return
        if path is None or not isinstance(path, str | os.PathLike):
            raise ParameterError(f"save() needs an output path (or an array from florin.io.create), got {path!r}")
        fmt = _format(path, format)
        _check_options(fmt.write, options, fmt, "writer")
        self.path = Path(path)
        self.format = fmt.name
        self.overwrite = overwrite
        self.options = options
        self.out = None

    def __call__(self, data):
        if isinstance(data, Tiles):
            if self.out is not None or _format(self.path, self.format).create is not None:
                ondisk.save_tiles(self, data)  # tile by tile: never the whole volume in memory
            else:
                write(self.path, data.volume, format=self.format, overwrite=self.overwrite, **self.options)
            return data
        info = tilemeta.info_of(data)
        if info is not None:
            # (After a step whose tile results the join merges, e.g. labels, pipelines refuse save() here.)
            # Inside a tiled pipeline: write this tile's core into the output.
            return ondisk.save_tile(self, data, info)
        if self.out is not None:
            self.out.fill(data)
            self.out.commit()
            return data
        write(self.path, data, format=self.format, overwrite=self.overwrite, **self.options)
        return data

    def to_spec(self) -> dict:
        """This step as a pipeline-file table."""
        if self.out is not None:
            raise ParameterError("save(out) to an array from florin.io.create cannot be written to a pipeline file")
        spec = {"op": "save", "path": os.fspath(self.path)}
        try:
            inferred = _format(self.path, None).name
        except FormatError:
            inferred = None
        if self.format != inferred:
            spec["format"] = self.format
        if self.overwrite:
            spec["overwrite"] = True
        return {**spec, **self.options}

    def __repr__(self):
        return f"save({os.fspath(self.path)!r})"


def load(path=None, *, format=None, **options) -> Load:
    """Pipeline step that reads a volume.

    Parameters
    ----------
    path : str or path-like, optional
        File to read. Without it, the step reads the path (or wraps the array)
        the pipeline is called with.
    format : str, optional
        Format name; by default chosen from the extension.
    **options
        Format-specific read options.

    Examples
    --------
    >>> import numpy as np
    >>> load()(np.zeros((2, 2))).dims
    ('y', 'x')
    """
    return Load(path, format=format, **options)


def save(path, *, format=None, overwrite=False, **options) -> Save:
    """Pipeline step that writes its input atomically and passes it on unchanged.

    Parameters
    ----------
    path : str, path-like or OnDiskArray
        Output file, or an output made with :func:`create`.
    format : str, optional
        Format name; by default chosen from the extension.
    overwrite : bool
        Replace an existing output (never the pipeline's input).
    **options
        Format-specific write options.

    Notes
    -----
    **Out-of-core runs.** As the *last step of a tiled pipeline* (the pipeline
    that maps over tiles, e.g. ``florin.Multiprocess(ndnt(...),
    binary_opening(), florin.save('seg.h5'))``), ``save`` writes each tile's core
    into the output as soon as the tile is done, in whichever worker did it, and
    hands back only a reference; the implicit join then renames the finished
    file into place and returns it as a lazy volume. A result larger than memory
    is never held in memory. This works for formats that can be written region
    by region (HDF5, Zarr, OME-Zarr, TIFF, NPY); writes from several processes
    are serialised by a lock file. Until the join, the output lives under a
    hidden temporary name of the run's own (``.seg.h5.florin-tiles-TOKEN.tmp/``),
    so an interrupted run never leaves a partial file under the real name, and
    the run removes it on any failure. While a run writes an output it holds
    a claim on it (``.seg.h5.florin-claim``): a second run that wants the same
    output meanwhile fails at once with :class:`~florin.errors.OutputBusyError`.

    Placed after the tiled pipeline (``..., florin.Multiprocess(...),
    florin.save('seg.h5')``) it writes the joined volume, which the join holds
    in memory.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> import florin
    >>> path = os.path.join(tempfile.mkdtemp(), "twice.npy")
    >>> pipe = florin.Serial(florin.tile(shape=(2, 2)), florin.Serial(np.negative, florin.save(path)))
    >>> pipe(np.arange(12).reshape(3, 4)).values[2].tolist()
    [-8, -9, -10, -11]
    >>> np.load(path)[2].tolist()
    [-8, -9, -10, -11]
    """
    return Save(path, format=format, overwrite=overwrite, **options)


def create(path, shape=None, dtype=None, *, like=None, format=None, overwrite=False, **options):
    """Create an on-disk output to be written region by region (e.g. by :func:`florin.join`).

    See :func:`florin.io.ondisk.create`.
    """
    return _create(path, shape, dtype, like=like, format=format, overwrite=overwrite, **options)
