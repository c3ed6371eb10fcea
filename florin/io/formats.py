"""Formats, and reading and writing whole volumes with them.

:class:`Format` describes a file format (registered through the
``florin_register_formats`` hook); :func:`read` and :func:`write` dispatch on
the registry, and :func:`check_output` decides whether a path may be written.
All are re-exported by :mod:`florin.io`.
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
from florin.io._blocks import copy_blocks
from florin.io.atomic import atomic_path
from florin.io.lazy import sources
from florin.registry import get_registry
from florin.volume import as_volume

__all__ = ["Format", "check_output", "read", "write"]


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

