"""Reading and writing volumes, dispatching on the format registry.

Formats are registered through the ``florin_register_formats`` hook (florin's
own TIFF and NPY formats included). :func:`read` and :func:`write` work on
volumes directly; :func:`load` and :func:`save` are the pipeline steps of the
same name (``florin.load`` / ``florin.save``).
"""

from __future__ import annotations

import os
from pathlib import Path

from florin import _run, tilemeta
from florin.errors import FormatError, ParameterError
from florin.io import tile_sink, written_join  # noqa: F401 (written_join registers its join kind)
from florin.io.formats import (
    Format,
    _check_options,
    _format,
    check_output,  # noqa: F401 (florin.io.check_output, as before the split)
    read,
    write,
)
from florin.io.ondisk_array import OnDiskArray
from florin.io.ondisk_array import create as _create
from florin.steps import NO_DATA
from florin.tiling import Tiles
from florin.volume import as_volume

__all__ = ["Format", "Load", "Save", "create", "load", "read", "save", "write"]


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
                tile_sink.save_tiles(self, data)  # tile by tile: never the whole volume in memory
            else:
                write(self.path, data.volume, format=self.format, overwrite=self.overwrite, **self.options)
            return data
        info = tilemeta.info_of(data)
        if info is not None:
            # (After a step whose tile results the join merges, e.g. labels, pipelines refuse save() here.)
            # Inside a tiled pipeline: write this tile's core into the output.
            return tile_sink.save_tile(self, data, info)
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

    See :func:`florin.io.ondisk_array.create`.
    """
    return _create(path, shape, dtype, like=like, format=format, overwrite=overwrite, **options)
