"""Reading and writing volumes, dispatching on the format registry.

Formats are registered through the ``florin_register_formats`` hook (florin's
own TIFF and NPY formats included). :func:`read` and :func:`write` work on
volumes directly; :func:`load` and :func:`save` are the pipeline steps of the
same name (``florin.load`` / ``florin.save``).
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path

from florin import _run
from florin.errors import FlorinError, FormatError, InputFileError, OutputExistsError, ParameterError
from florin.io.atomic import atomic_path
from florin.volume import as_volume

__all__ = ["Format", "Load", "Save", "load", "read", "save", "write"]


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
    write : callable
        ``write(path, volume, **options)``; writes to exactly ``path`` (florin
        passes a temporary path and renames it on success).
    description : str
        One line for ``florin formats``.
    """

    name: str
    extensions: tuple
    read: object = field(repr=False)
    write: object = field(repr=False)
    description: str = ""


def _registry():
    from florin.registry import get_registry

    return get_registry()


def _format(path, format):
    reg = _registry()
    return reg.format(format) if format is not None else reg.format_for_path(path)


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
        Format-specific options (e.g. ``key=`` for HDF5).

    Returns
    -------
    xarray.DataArray
        Lazy (memory-mapped) where the format allows.

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
        raise InputFileError(f"input file {os.fspath(path)!r} does not exist")
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
    state = _run.current()
    if os.path.exists(path):
        if state is not None and state.is_input(path):
            raise OutputExistsError(f"refusing to write {os.fspath(path)!r}: it is this pipeline's input")
        if not overwrite:
            raise OutputExistsError(f"output {os.fspath(path)!r} already exists; pass overwrite=True to replace it")
    volume = as_volume(volume)
    try:
        with atomic_path(path) as tmp:
            fmt.write(tmp, volume, **options)
    except FlorinError:
        raise
    except Exception as exc:
        raise FormatError(f"cannot write {os.fspath(path)!r} as {fmt.name}: {type(exc).__name__}: {exc}") from exc


class Load:
    """Pipeline step that reads a volume (see :func:`load`)."""

    name = "load"
    per_item = False

    def __init__(self, path=None, *, format=None, **options):
        self.path = path
        self.format = format
        self.options = options
        if format is not None:
            _format(path or "", format)  # unknown format names fail when the pipeline is built

    def __call__(self, data=None):
        from florin.pipelines import _NO_DATA

        if data is _NO_DATA:
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

    def __init__(self, path, *, format=None, overwrite=False, **options):
        if path is None or not isinstance(path, str | os.PathLike):
            raise ParameterError(f"save() needs an output path, got {path!r}")
        self.path = Path(path)
        self.format = format
        self.overwrite = overwrite
        self.options = options
        _check_options(_format(self.path, format).write, options, _format(self.path, format), "writer")

    def __call__(self, data):
        write(self.path, data, format=self.format, overwrite=self.overwrite, **self.options)
        return data

    def to_spec(self) -> dict:
        """This step as a pipeline-file table."""
        spec = {"op": "save", "path": os.fspath(self.path)}
        if self.format is not None:
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
    path : str or path-like
        Output file.
    format : str, optional
        Format name; by default chosen from the extension.
    overwrite : bool
        Replace an existing output (never the pipeline's input).
    **options
        Format-specific write options.
    """
    return Save(path, format=format, overwrite=overwrite, **options)
