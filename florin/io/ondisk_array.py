"""The on-disk array: an output file written region by region, atomically (:func:`create`).

:func:`create` makes an :class:`OnDiskArray`; join into it, or save into it::

    out = florin.io.create("seg.h5", like=volume, dtype=bool)
    with out:                       # commit on success, delete on error
        florin.join(tiles, out=out)

``florin.save(out)`` inside a tiled pipeline writes into such an array too.
The output is written under a hidden temporary name beside the target and
renamed into place only when it is complete (atomic writes). Tile-by-tile
saves (:mod:`florin.io.tile_sink`) write into one made on their first tile.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import xarray as xr
from xarray.core import indexing

from florin import tilemeta
from florin._signals import deferred, raise_if_received
from florin.errors import FormatError, ParameterError, PipelineError
from florin.io._blocks import copy_blocks
from florin.io.atomic import _replace, remove_path, workdir_for
from florin.io.formats import _check_dtype, _check_options, _format, check_output, read
from florin.io.lazy import FileBackedArray, close_handles
from florin.io.locks import file_lock
from florin.registry import get_registry
from florin.volume import as_volume, default_dims

__all__ = ["OnDiskArray", "create"]

_MARKER = ".florin-output.json"
"""The file in a tile-by-tile save's temporary folder that records what its first tile created."""


def _format_of(name):
    return _format(None, name)


def _writable_formats():
    return sorted(n for n, f in get_registry().formats.items() if f.create is not None)


class OnDiskArray(indexing.ExplicitlyIndexedNDArrayMixin, FileBackedArray):
    """An output file being written region by region; atomic until :meth:`commit`.

    Made by :func:`create` (or by ``florin.save`` inside a tiled pipeline).
    ``out[slices] = values`` writes a region, from any thread or process
    (writes are serialised by a lock file); the object pickles as a small
    reference, so it can be shipped to workers. Wrapped in a DataArray (as
    :func:`florin.join` does with ``out=``) it stays lazy. Reading it reads the
    file: the temporary one before :meth:`commit`, the target after.

    Use it as a context manager to commit on success and delete the temporary
    file on an exception.
    """

    def __init__(self, target, tmp, format, locator, shape, dtype, dims, attrs, *, overwrite, lock, workdir):
        self.target = os.fspath(target)
        self.tmp = os.fspath(tmp)
        self.format = format
        self.locator = dict(locator)
        self._shape = tuple(int(n) for n in shape)
        self._dtype = np.dtype(dtype)
        self.dims = tuple(dims)
        self.attrs = dict(attrs)
        self.overwrite = overwrite
        self.lock = os.fspath(lock)
        self.workdir = os.fspath(workdir)
        self._committed = False
        self._lazy = None

    @property
    def committed(self) -> bool:
        """Whether the output is complete and in place (committed here or by a copy of this reference)."""
        if not self._committed and not os.path.exists(self.workdir) and os.path.exists(self.target):
            self._committed = True
        return self._committed

    # -- array protocol --------------------------------------------------------------------
    @property
    def shape(self):
        return self._shape

    @property
    def dtype(self):
        return self._dtype

    @property
    def path(self) -> str:
        """Where the data is now: the temporary file, or the target once committed."""
        return self.target if self.committed else self.tmp

    def _lazy_array(self):
        if self._lazy is None or self._lazy[0] != self.path:
            vol = _read(self.path, self.format, self.locator)
            self._lazy = (self.path, vol.variable._data)
        return self._lazy[1]

    def get_duck_array(self):
        return np.asarray(self._lazy_array())

    def __getitem__(self, key):
        if isinstance(key, indexing.ExplicitIndexer):
            return self._lazy_array()[key]
        key = indexing.expanded_indexer(key if isinstance(key, tuple) else (key,), len(self.shape))
        return np.asarray(self._lazy_array()[indexing.BasicIndexer(key)])

    def _oindex_get(self, indexer):
        return self._lazy_array().oindex[indexer]

    def _vindex_get(self, indexer):
        return self._lazy_array().vindex[indexer]

    def __setitem__(self, key, value):
        if isinstance(key, indexing.ExplicitIndexer):
            key = key.tuple
        if self.committed:
            raise PipelineError(f"{self.target!r} is already complete (committed); it cannot be written any more")
        if not os.path.exists(self.tmp):
            raise PipelineError(
                f"the temporary output of {self.target!r} is gone ({self.tmp!r}): "
                "it was committed or removed by another process"
            )
        value = np.asarray(value)
        if value.dtype != self.dtype:
            value = value.astype(self.dtype)
        fmt = _format_of(self.format)
        close_handles(self.tmp)
        with file_lock(self.lock), fmt.open_region(self.tmp, **self.locator) as region:
            region[key] = value

    def fill(self, volume) -> None:
        """Write a whole volume of this shape, block by block."""
        if tuple(volume.shape) != self.shape:
            raise ParameterError(f"cannot write a {tuple(volume.shape)} volume into {self.target!r} of shape {self.shape}")
        copy_blocks(self, volume, self.dtype)

    # -- life cycle ------------------------------------------------------------------------
    def commit(self) -> OnDiskArray:
        """Move the finished file into place (atomically); idempotent."""
        if self.committed:
            return self
        raise_if_received()  # a signalled run never puts an output in place (even if a library ate the interrupt)
        with file_lock(self.lock):
            if not os.path.exists(self.tmp):
                if os.path.exists(self.target):  # another copy of this reference committed it
                    self._committed = True
                    return self
                raise PipelineError(f"the temporary output of {self.target!r} is gone ({self.tmp!r})")
            check_output(self.target, overwrite=self.overwrite)
            close_handles(self.tmp)
            work = Path(self.workdir)
            name = Path(self.target).name
            for companion in sorted(work.iterdir()):
                if companion.name not in (name, _MARKER, ".lock"):
                    _replace(companion, Path(self.target).parent / companion.name)
            _replace(Path(self.tmp), Path(self.target))
            remove_path(work)
            if Path(self.lock).parent != work:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.lock)
        self._committed = True
        self._lazy = None
        return self

    def abort(self) -> None:
        """Delete the temporary output (nothing is written under the target's name)."""
        if not self.committed:
            with deferred():
                remove_path(self.workdir)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.abort()
        return False

    def volume(self, like=None):
        """The output as a lazy volume (dims, spacing and attrs as written)."""
        return _like(_read(self.path, self.format, self.locator), like)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_lazy"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self):
        status = "committed" if self.committed else "pending"
        return f"<OnDiskArray {self.target!r} ({self.format}, {status}): shape={self.shape}, dtype={self.dtype}>"


def _read(path, format, locator):
    return read(path, format=format, **locator)


def _like(vol, like):
    """``vol`` (read from an output) with the dims, coords and name of ``like``, if given."""
    if like is None:
        return vol
    coords = {k: v for k, v in like.coords.items() if set(v.dims) <= set(like.dims)}
    return xr.DataArray(xr.Variable(like.dims, vol.variable._data), coords=coords, attrs=dict(vol.attrs),
                        name=like.name)


def _meta_of(like, shape, dtype):
    if like is not None:
        like = as_volume(like)
        dims, attrs = like.dims, tilemeta.strip(dict(like.attrs))
        shape = tuple(like.shape) if shape is None else shape
        dtype = like.dtype if dtype is None else dtype
        info = tilemeta.info_of(like)
        if info is not None:  # a tile stands for its whole volume
            shape = info.full_shape if shape == tuple(like.shape) else shape
    else:
        dims, attrs = None, {}
    if shape is None or dtype is None:
        raise ParameterError("create() needs shape= and dtype=, or like= a volume to take them from")
    shape = tuple(int(n) for n in shape)
    dims = tuple(dims) if dims is not None and len(dims) == len(shape) else default_dims(len(shape))
    if "spacing" in attrs and len(attrs["spacing"]) != len(shape):
        attrs.pop("spacing")
    attrs.pop("source", None)
    return shape, np.dtype(dtype), dims, attrs


def create(path, shape=None, dtype=None, *, like=None, format=None, overwrite=False, **options) -> OnDiskArray:
    """Create an output file to be written region by region, atomically.

    Parameters
    ----------
    path : str or path-like
        The output. Parent directories are created. Until :meth:`OnDiskArray.commit`
        the data lives under a hidden temporary name beside it.
    shape, dtype : optional
        Shape and dtype of the output; default: those of ``like``.
    like : array_like or xarray.DataArray, optional
        Volume whose dims, spacing and attrs (and shape and dtype unless given)
        the output takes.
    format : str, optional
        Format name; by default chosen from the extension. Must support
        region writes (HDF5, Zarr, OME-Zarr, TIFF, NPY).
    overwrite : bool
        Replace an existing output at commit (never a pipeline's input).
    **options
        Format-specific creation options (``key=``, ``chunks=``, ``compression=`` ...).

    Returns
    -------
    OnDiskArray
        Writable with ``out[slices] = values``; pass it as ``florin.join(tiles, out=out)``
        or ``florin.save(out)``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "out.npy")
    >>> with create(path, (4, 4), np.uint8) as out:
    ...     out[:2] = 1
    ...     out[2:] = 2
    >>> np.load(path)[:, 0].tolist()
    [1, 1, 2, 2]
    """
    fmt = _format(path, format)
    if fmt.create is None:
        raise FormatError(
            f"format {fmt.name!r} of {os.fspath(path)!r} cannot be written region by region; "
            f"use one of: {', '.join(_writable_formats())}"
        )
    _check_options(fmt.create, options, fmt, "create")
    shape, dtype, dims, attrs = _meta_of(like, shape, dtype)
    _check_dtype(fmt, dtype, path)  # before anything is created
    check_output(path, overwrite=overwrite, volume=like if isinstance(like, xr.DataArray) else None)
    target = Path(path)
    workdir, tmp = workdir_for(target)
    try:
        with deferred():  # Ctrl-C right after the folder is made still removes it
            workdir.mkdir()
        locator = fmt.create(tmp, shape, dtype, dims=dims, attrs=attrs, **options) or {}
    except BaseException as exc:
        remove_path(workdir)
        if not isinstance(exc, Exception) or isinstance(exc, (FormatError, ParameterError)):
            raise
        raise FormatError(f"cannot create {os.fspath(path)!r} as {fmt.name}: {type(exc).__name__}: {exc}") from exc
    return OnDiskArray(target, tmp, fmt.name, locator, shape, dtype, dims, attrs,
                       overwrite=overwrite, lock=workdir / ".lock", workdir=workdir)

