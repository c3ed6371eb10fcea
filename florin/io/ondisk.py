"""On-disk outputs written region by region: out-of-core joins and tile-by-tile saves.

Two ways for a tiled run to write a result larger than memory:

* ``florin.save(path)`` as the **last step of the tiled pipeline**::

      florin.Serial(
          florin.load("volume.h5"),
          florin.tile(shape=(64, 512, 512)),
          florin.Multiprocess(ndnt(shape=(8, 64, 64)), binary_opening(), florin.save("seg.h5")),
      )

  Each worker writes its tile's core into the output (under a lock file, so
  processes and MPI ranks on a shared file system take turns) and returns a
  reference; the implicit join sees the references, renames the finished file
  into place and returns it as a lazy volume.

* :func:`create` an :class:`OnDiskArray` and join into it::

      out = florin.io.create("seg.h5", like=volume, dtype=bool)
      with out:                       # commit on success, delete on error
          florin.join(tiles, out=out)

  ``florin.save(out)`` inside the tiled pipeline writes into such an array too.

Either way the output is written under a hidden temporary name beside the
target and renamed into place only when it is complete (atomic writes).

A tile-by-tile save belongs to one run: the run takes an exclusive claim on the
target (``.NAME.florin-claim``, locked with ``flock`` for as long as the run
writes it, so a killed run leaves no stale claim) and writes into a temporary
folder whose name carries the run's token (``.NAME.florin-tiles-TOKEN.tmp``); the
token travels to the workers with the save step. A second run that wants the
same output while the first writes it fails at once with
:class:`~florin.errors.OutputBusyError`, and a run only ever removes its own
temporary folder.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import math
import os
import pickle
import socket
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from florin import _run, tilemeta
from florin._signals import deferred, raise_if_received
from florin.errors import FormatError, OutputBusyError, ParameterError, PipelineError
from florin.io._blocks import copy_blocks
from florin.io.atomic import _replace, fsync_file, remove_path
from florin.io.lazy import wrappers
from florin.registry import get_registry
from florin.tiling import TileJoin, register_join
from florin.volume import as_volume, default_dims

__all__ = [
    "OnDiskArray", "WrittenJoin", "claim", "create", "file_lock", "join_written", "save_tile", "save_tiles",
    "tile_saves", "tile_workdir",
]

_MARKER = ".florin-output.json"

try:  # POSIX advisory locks; elsewhere only threads of one process are serialised
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

_thread_locks: dict = {}
_thread_locks_guard = threading.Lock()


@contextlib.contextmanager
def file_lock(path):
    """Exclusive lock on ``path`` (created if needed) across threads and processes."""
    path = os.fspath(path)
    with _thread_locks_guard:
        tlock = _thread_locks.setdefault(path, threading.Lock())
    with tlock:
        if fcntl is None:
            yield
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock


def _format_of(name):
    from florin.io import _format

    return _format(None, name)


def _writable_formats():
    return sorted(n for n, f in get_registry().formats.items() if f.create is not None)


class OnDiskArray(indexing.ExplicitlyIndexedNDArrayMixin):
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
        from florin.io.lazy import close_handles

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
        from florin.io import check_output
        from florin.io.lazy import close_handles

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
    from florin.io import read  # florin.io imports this module

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
    from florin.io import _check_options, _format, check_output

    fmt = _format(path, format)
    if fmt.create is None:
        raise FormatError(
            f"format {fmt.name!r} of {os.fspath(path)!r} cannot be written region by region; "
            f"use one of: {', '.join(_writable_formats())}"
        )
    _check_options(fmt.create, options, fmt, "create")
    shape, dtype, dims, attrs = _meta_of(like, shape, dtype)
    check_output(path, overwrite=overwrite, volume=like if isinstance(like, xr.DataArray) else None)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    workdir = target.parent / f".{target.name}.florin-{uuid.uuid4().hex[:8]}.tmp"
    tmp = workdir / target.name
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


# -- tile-by-tile saves ----------------------------------------------------------------------
class _WrittenTile(BackendArray):
    """Stands for a tile core that ``save`` wrote into an output; never read."""

    __slots__ = ("dtype", "shape", "sink")

    def __init__(self, sink, shape, dtype):
        self.sink = sink
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)

    def __getitem__(self, key):
        raise PipelineError(
            f"a step after `save` in a tiled pipeline needs the tile, but save wrote it to {self.sink.target!r} "
            "and kept only a reference: make save the last step of the tiled pipeline"
        )

    def __reduce__(self):
        return (_WrittenTile, (self.sink, self.shape, self.dtype.str))


def _written_ref(sink, tile, info):
    """A lazy stand-in for ``tile``'s core, carrying the sink it was written to."""
    core = tile[info.core_in_tile] if tuple(tile.shape) == info.tile_shape else tile
    data = indexing.LazilyIndexedArray(_WrittenTile(sink, info.full_shape, sink.dtype))[
        indexing.BasicIndexer(info.core_slices)
    ]
    coords = {k: v.variable for k, v in core.coords.items() if set(v.dims) <= set(core.dims)}
    ref = xr.DataArray(xr.Variable(core.dims, data), coords=coords, attrs=dict(core.attrs), name=core.name)
    return tilemeta.attach(ref, info.as_core())


def _sink_of(item):
    data = getattr(getattr(item, "variable", None), "_data", None)
    return next((d.sink for d in wrappers(data) if isinstance(d, _WrittenTile)), None)


def _tile_sink(save, tile, info, dtype) -> OnDiskArray:
    """Open (creating it if this is the first tile) the temporary output of a tile-by-tile save."""
    if save.out is not None:
        return save.out
    from florin.io import _check_options, _format, check_output

    fmt = _format(save.path, save.format)
    if fmt.create is None:
        raise FormatError(
            f"save({os.fspath(save.path)!r}) inside a tiled pipeline writes tile by tile, which format "
            f"{fmt.name!r} cannot do; use one of {', '.join(_writable_formats())}, or put save after the tiled pipeline"
        )
    _check_options(fmt.create, save.options, fmt, "tile-by-tile writer")
    target = Path(save.path)
    token = getattr(save, "run_token", None)
    if token is None:
        raise PipelineError(f"save({os.fspath(save.path)!r}) got a tile outside a run of a tiled pipeline; "
                            "put it in the pipeline that maps over the tiles", operator="save", origin=info.origin)
    workdir = tile_workdir(target, token)
    if not workdir.is_dir():  # never recreated: the run that owns it failed or was stopped and removed it
        raise PipelineError(f"the temporary output of {os.fspath(target)!r} is gone ({os.fspath(workdir)!r}): "
                            "its run was stopped", operator="save", origin=info.origin)
    lock = workdir / ".lock"
    tmp = workdir / target.name
    marker = workdir / _MARKER
    shape, dtype, dims, attrs = _meta_of(tile, info.full_shape, dtype)
    want = {"shape": list(shape), "dtype": dtype.str, "format": fmt.name, "options": repr(sorted(save.options.items()))}
    with file_lock(lock):
        check_output(target, overwrite=save.overwrite, source=tile.attrs.get("source"))
        if marker.exists() and tmp.exists():
            meta = json.loads(marker.read_text())
            if {k: meta.get(k) for k in want} != want:
                raise PipelineError(
                    f"tiles saved to {os.fspath(target)!r} disagree: this one is {dtype} of {shape}, an earlier one "
                    f"{np.dtype(meta.get('dtype'))} of {tuple(meta.get('shape') or ())}", operator="save",
                    origin=info.origin)
            locator = meta["locator"]
        else:  # the first tile of this run
            locator = fmt.create(tmp, shape, dtype, dims=dims, attrs=attrs, **save.options) or {}
            marker.write_text(json.dumps({**want, "locator": locator}))
    return OnDiskArray(target, tmp, fmt.name, locator, shape, dtype, dims, attrs,
                       overwrite=save.overwrite, lock=lock, workdir=workdir)


def tile_workdir(target: Path, token: str) -> Path:
    """The temporary folder of the run with ``token`` that writes ``target`` tile by tile."""
    return target.parent / f".{target.name}.florin-tiles-{token}.tmp"


# -- one run per output ----------------------------------------------------------------------
class _Claim:
    """An exclusive claim on an output path, held by one run until :meth:`release`."""

    def __init__(self, target, path, fd):
        self.target, self.path, self.fd = target, path, fd

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # while still locked: a run waiting on this file sees it is gone and retries
        os.close(self.fd)  # releases the lock
        self.fd = None


def claim(target) -> _Claim:
    """Claim ``target`` for this run, or raise :class:`OutputBusyError` when another run holds it.

    The claim is the lock on ``.NAME.florin-claim`` beside the target (``flock``:
    released by the kernel when its process ends, however it ends, so a killed
    run never blocks the next one). Its file says who holds it and is removed
    on :meth:`_Claim.release`.
    """
    target = Path(target)
    path = target.parent / f".{target.name}.florin-claim"
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise OutputBusyError(
                f"output {os.fspath(target)!r} is being written by another florin run ({holder}); "
                "wait for it to finish or choose another output path"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # its holder released it (and removed the file) while we waited: claim the new one
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
    return _Claim(target, path, fd)


def _tile_save_steps(steps) -> list:
    """The tile-by-tile ``save`` steps (to a path) among ``steps`` and the pipelines nested in them."""
    found = []
    for step in steps:
        if getattr(step, "streams_tiles", False) and getattr(step, "out", None) is None:
            found.append(step)
        elif isinstance(getattr(step, "steps", None), list):
            found += _tile_save_steps(step.steps)
    return found


@contextlib.contextmanager
def tile_saves(steps, *, part=None):
    """Run the tile-by-tile saves among ``steps`` as saves of one run; yield the steps to map.

    For each such save: claim its target (:func:`claim`; a run that holds it
    already is refused at once), check that it may be written, and make the
    run's own temporary folder. The yielded steps are copies whose save steps
    carry the run's token, so that workers write into that folder. On leaving,
    whatever this run left of its temporary outputs (all of them, unless the join
    committed them) is removed and the claims are released: on success, on an
    exception, on Ctrl-C or SIGTERM alike.

    Under MPI in SPMD mode rank 0 claims and makes the folders and every rank
    gets the same tokens (see :func:`florin._run.agree`).

    In a resumable run (``part``: the tiled part's :class:`florin.resume.Part`)
    the tokens, and so the temporary outputs, are the interrupted run's, and
    they are kept when this run fails too.
    """
    saves = _tile_save_steps(steps)
    if not saves:
        yield steps
        return
    claims = []
    workdirs = []

    def start():
        from florin.io import check_output

        tokens = {}
        try:
            with deferred():  # a claim or folder is recorded (to be removed) before Ctrl-C can stop us
                for save in saves:
                    claims.append(claim(save.path))
                    check_output(save.path, overwrite=save.overwrite)
                kept = part.save_tokens(saves, _new_token) if part is not None else {}
                for save in saves:
                    token = kept.get(id(save)) or _new_token()
                    workdir = tile_workdir(Path(save.path), token)
                    workdir.mkdir(exist_ok=id(save) in kept)
                    workdirs.append(workdir)
                    tokens[id(save)] = token
        except BaseException:
            _finish(claims, workdirs)
            raise
        return [tokens[id(save)] for save in saves]

    failed = True
    try:
        tokens = _run.agree(start)
        if not workdirs:  # another rank made them
            workdirs[:] = [tile_workdir(Path(save.path), token) for save, token in zip(saves, tokens, strict=True)]
        yield _bound(steps, dict(zip(map(id, saves), tokens, strict=True)))
        failed = False
    finally:
        _finish(claims, [] if failed and part is not None else workdirs)


def _new_token() -> str:
    return uuid.uuid4().hex[:12]


def _finish(claims, workdirs) -> None:
    with deferred():  # a second Ctrl-C does not stop the cleanup half-way
        for workdir in workdirs:
            _remove_run_folder(workdir)
        while claims:
            claims.pop().release()


def _remove_run_folder(workdir: Path, wait=10.0) -> None:
    """Remove a run's temporary folder, after the tile write in progress in it (if any) is done.

    A worker still writing a tile holds the folder's lock; removing the files
    under it could let it add a file after the removal. Workers that take the
    lock later find the folder gone and write nothing.
    """
    if not workdir.is_dir():
        return
    fd = None
    with contextlib.suppress(OSError):
        fd = os.open(workdir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        break  # a stuck worker: remove the folder anyway
                    time.sleep(0.01)
    try:
        remove_path(workdir)
    finally:
        if fd is not None:
            os.close(fd)


def _bound(steps, tokens) -> list:
    """``steps`` with each tile-by-tile save (nested ones too) replaced by a copy carrying its run's token."""
    bound = []
    for step in steps:
        if id(step) in tokens:
            copied = copy.copy(step)
            copied.run_token = tokens[id(step)]
            step = copied
        elif isinstance(getattr(step, "steps", None), list) and _tile_save_steps(step.steps):
            copied = copy.copy(step)
            copied.steps = _bound(step.steps, tokens)
            step = copied
        bound.append(step)
    return bound


def save_tile(save, tile, info):
    """Write ``tile``'s core into the output of ``save``; return a reference to it."""
    core = tile[info.core_in_tile] if tuple(tile.shape) == info.tile_shape else tile
    if tuple(core.shape) != tuple(info.core_shape):
        raise PipelineError(
            f"tile at origin {info.origin} has shape {tuple(tile.shape)}, expected {info.tile_shape}: "
            "steps inside a tiled pipeline must keep the tile's shape", operator="save", origin=info.origin,
        )
    sink = _tile_sink(save, tile, info, core.dtype)
    sink[info.core_slices] = np.asarray(core)
    return _written_ref(sink, tile, info)


def save_tiles(save, tiles) -> None:
    """Write the (unprocessed) tiles of a volume one by one: the volume, never whole in memory."""
    with tile_saves([save]) as (save,):
        sink = None
        for i in range(len(tiles)):
            tile = tiles[i]
            info = tilemeta.info_of(tile)
            core = tile[info.core_in_tile]
            if sink is None:
                sink = _tile_sink(save, tile, info, core.dtype)
            sink[info.core_slices] = np.asarray(core)
        if sink is not None:
            sink.commit()


class WrittenJoin(TileJoin):
    """The result kind of tiles that ``save`` already wrote into an on-disk output.

    There is nothing to copy: :meth:`finish` checks that every voxel was
    written, commits the output (renames it into place) and returns it as a
    lazy volume with the dims and coords of ``like``.
    """

    name = "written tiles"
    #: An interrupted run's temporary output keeps the tiles it recorded; a resumed run writes the others.
    resumable = True

    @classmethod
    def claims(cls, tile) -> bool:
        return _sink_of(tile) is not None

    @classmethod
    def reopen(cls, record, *, like=None):
        """The result of a join that an earlier run committed (``record`` from :meth:`committed`)."""
        vol = _like(_read(record["outputs"][0], record["format"], record["locator"]), like)
        vol.attrs = pickle.loads(base64.b64decode(record["attrs"]))
        return vol

    def __init__(self, first, *, infos, like=None, out=None, allocate=None):
        super().__init__(first, infos=infos, like=like, out=out, allocate=allocate)
        self.sink = _sink_of(first)
        if out is not None:
            raise PipelineError(f"the tiles were already saved to {self.sink.target!r}; join them without out=")
        self.covered, self.count, self.origins = 0, 0, set()

    def add(self, tile, info) -> None:
        sink = _sink_of(tile)
        if (sink.target, sink.tmp) != (self.sink.target, self.sink.tmp):
            raise PipelineError(f"tiles were saved to different outputs: {sorted({self.sink.target, sink.target})}")
        self.restore(info)

    def restore(self, info, state=None) -> None:
        self.covered += math.prod(info.core_shape)
        self.count += 1
        self.origins.add(tuple(info.origin))

    def flush(self) -> None:
        fsync_file(self.sink.tmp)  # written (and closed) by a worker: on disk before the tile is recorded

    def committed(self):
        attrs = base64.b64encode(pickle.dumps(tilemeta.strip(dict(self.first.attrs)))).decode()
        return {"outputs": [self.sink.target], "format": self.sink.format, "locator": self.sink.locator, "attrs": attrs}

    def finish(self):
        sink = self.sink
        if self.covered != math.prod(sink.shape) or len(self.origins) != self.count:
            raise PipelineError(
                f"the saved tiles cover {self.covered} of the {math.prod(sink.shape)} voxels of {sink.target!r}; "
                "not committing an incomplete output"
            )
        sink.commit()
        vol = sink.volume(like=self.like)
        vol.attrs = tilemeta.strip(dict(self.first.attrs))
        return vol


register_join(WrittenJoin)


def join_written(tiles, infos, *, like=None, out=None):
    """The join of tiles that ``save`` already wrote into an on-disk output, else None (see :class:`WrittenJoin`)."""
    tiles = list(tiles)
    kinds = [WrittenJoin.claims(t) for t in tiles]
    if not any(kinds):
        return None
    if not all(kinds):
        raise PipelineError("some tiles were written by save() and others not; save must end the tiled pipeline")
    joiner = WrittenJoin(tiles[0], infos=sorted(infos, key=lambda i: i.index), like=like, out=out)
    for t, info in zip(tiles, infos, strict=True):
        joiner.add(t, info)
    return joiner.finish()
