"""Tile-by-tile saves: ``florin.save(path)`` as the last step of a tiled pipeline.

::

    florin.Serial(
        florin.load("volume.h5"),
        florin.tile(shape=(64, 512, 512)),
        florin.Multiprocess(ndnt(shape=(8, 64, 64)), binary_opening(), florin.save("seg.h5")),
    )

Each worker writes its tile's core into the output (under a lock file, so
processes and MPI ranks on a shared file system take turns, see
:mod:`florin.io.locks`) and returns a reference; the implicit join
(:class:`florin.io.written_join.WrittenJoin`) sees the references, renames the
finished file into place and returns it as a lazy volume.

A tile-by-tile save belongs to one run (:func:`tile_saves`): the run takes an
exclusive claim on the target (:func:`florin.io.locks.claim`) and writes into a
temporary folder whose name carries the run's token
(``.NAME.florin-tiles-TOKEN.tmp``); the token travels to the workers with the
save step. A run only ever removes its own temporary folder.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import time
import uuid
from pathlib import Path

import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from florin import _run, tilemeta
from florin._signals import deferred
from florin.errors import FormatError, PipelineError
from florin.io.atomic import remove_path
from florin.io.formats import _check_dtype, _check_options, _format, check_output
from florin.io.lazy import wrappers
from florin.io.locks import claim, fcntl, file_lock
from florin.io.ondisk_array import _MARKER, OnDiskArray, _meta_of, _writable_formats

__all__ = ["save_tile", "save_tiles", "tile_saves", "tile_workdir"]


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
    _check_dtype(fmt, dtype, target)
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

