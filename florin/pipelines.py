"""Deferred pipelines and the executor seam.

A :class:`Pipeline` runs its steps in order on one datum. When the datum is a
collection (tiles from :func:`florin.tile`, regions from
:func:`florin.conncomp.regionprops`) the pipeline maps its per-item steps over
the items with :meth:`Pipeline.map`, the one method an executor overrides, and
the collection rebuilds itself from the results (tiles are joined: the
"implicit join"). A pipeline is itself a step, so pipelines nest, and an inner
pipeline decides how *its* steps are mapped: ``Serial(load(), tile(...),
Multithread(ndnt(...)), save(...))`` thresholds tiles in threads.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import time

import cloudpickle
import numpy as np
import xarray as xr

from florin import _run, pipeline_file, planner, tilemeta
from florin import resume as _resume
from florin import steps as _steps
from florin._signals import raise_if_received
from florin.collection import Collection
from florin.errors import (
    FlorinError,
    InputFileError,
    MissingInputError,
    ParameterError,
    ParameterTypeError,
    PipelineError,
)
from florin.io import read
from florin.io.atomic import atomic_path
from florin.io.outputs import check_pipeline_outputs
from florin.io.tile_sink import tile_saves
from florin.tiling import Tile, Tiles
from florin.volume import as_volume, like

__all__ = ["Pipeline", "Serial"]

_NO_DATA = _steps.NO_DATA


class Pipeline:
    """A sequence of steps run on data; subclasses choose how items are mapped.

    Parameters
    ----------
    *steps : callable
        Operators (from :func:`florin.florinate`), plain one-argument callables
        (``np.squeeze``), IO steps (:func:`florin.load`, :func:`florin.save`),
        :func:`florin.tile`, or other pipelines.

    Examples
    --------
    >>> import numpy as np
    >>> import florin
    >>> double = florin.florinate(lambda image, k=2: image * k)
    >>> florin.Serial(double(k=3), np.negative)(np.array([1, 2])).values.tolist()
    [-3, -6]
    """

    #: Registry name of the executor (``--executor NAME`` in the CLI).
    name = "pipeline"
    #: A pipeline receives collections whole and maps its own steps over them.
    per_item = False
    #: True when ``map`` calls ``func`` in this process (progress can tick per item).
    in_process = False
    #: As a step of another pipeline, a pipeline runs on the whole volume (:func:`florin.steps.kind`).
    blockwise = "whole"

    def __init__(self, *steps):
        if len(steps) == 1 and isinstance(steps[0], list | tuple):
            steps = tuple(steps[0])
        for i, step in enumerate(steps):
            if not callable(step):
                raise PipelineError(
                    f"step {i + 1} of {type(self).__name__} is {step!r}, which is not callable; "
                    "steps are operators such as florin.thresholding.ndnt(...), functions, or pipelines"
                )
        self.steps = list(steps)
        _check_tiled_parts(self.steps)

    # -- running -------------------------------------------------------------------------
    def __call__(self, data=_NO_DATA, *, memory=None, scratch=None, resume=False):
        """Run the pipeline on ``data`` (a path, an array, a DataArray; omitted when the first step loads).

        Parameters
        ----------
        data : str, path-like, array_like or xarray.DataArray, optional
            The input.
        memory : int or str, optional
            The run's memory budget: bytes, or a size such as ``'512MiB'``,
            ``'2GiB'``, ``'1.5G'``. Default: a quarter of the available memory
            (see :mod:`florin.memory`). Joined volumes above a quarter of it go
            to an on-disk scratch volume, and whole-volume steps on those run
            blockwise.
        scratch : str or path-like, optional
            Where the run's scratch directory is made (default: the temporary
            directory). It is removed when the run ends, also after a failure.
        resume : bool or path-like
            Keep per-tile completion records so that the same call after an
            interruption continues where this one stopped and gives the same
            output (see :mod:`florin.resume`): ``True`` keeps them in
            ``NAME.florin-partial/`` beside the first output (or in
            ``scratch``), a path names the folder. The folder is removed when
            the run succeeds and kept when it fails or is stopped.
        """
        if memory is not None or scratch is not None or resume is not False:
            if _run.current() is not None:
                raise PipelineError("memory=, scratch= and resume= are options of the outermost pipeline call only")
        if not isinstance(resume, bool | str | os.PathLike):
            raise ParameterTypeError(f"resume must be True, False or a folder path, got {resume!r}")
        with _run.run_state(memory=memory, scratch=scratch) as (state, top_level):
            if top_level:
                if resume is not False:
                    _start_resume(self, data, state, resume, scratch=scratch, budget_given=memory is not None)
                check_pipeline_outputs(self)  # every output, before anything is computed
                data = self._prepare_input(data, state)
                if isinstance(data, xr.DataArray):
                    state.set_input(data)
            return self.run(data)

    def run(self, data):
        """Run the pipeline on ``data`` (a volume, or a collection to map over)."""
        if isinstance(data, Collection) and not _all_whole_collection(self.steps, data):
            return self.map_collection(self.steps, data)
        return self._run_steps(self.steps, data)

    def imap(self, func, items):
        """Apply ``func`` to every item; yield ``(index, result)`` pairs as they complete.

        This is the executor seam: :class:`Serial` loops, other executors
        override it to use threads, processes, MPI ranks or a cluster, and
        yield each result as soon as it is back, in any order, keeping a
        bounded number of items in flight. The pipeline consumes the pairs as
        they come (the implicit join writes each tile into its destination),
        so no executor holds all the results. Every implementation must yield
        exactly the results the loop would. An executor that overrides only
        :meth:`map` (returning the list) still works: its list is yielded.
        """
        if type(self).map is not Pipeline.map:  # an executor that overrides the list-returning seam only
            yield from enumerate(self.map(func, items))
            return
        for i, item in enumerate(items):
            yield i, func(item)

    def map(self, func, items):
        """Apply ``func`` to every item and return the results in order (a list; see :meth:`imap`)."""
        items = list(items)
        if type(self).imap is Pipeline.imap:
            return [func(item) for item in items]
        results = [None] * len(items)
        with contextlib.closing(self.imap(func, items)) as pairs:
            for i, result in pairs:
                results[i] = result
        return results

    def maps_blocks(self) -> bool:
        """Whether the planner may run the blocks of whole-volume steps under this executor's :meth:`map`.

        True for executors that map in parallel (they override :meth:`imap` or
        :meth:`map`), whose workers read their blocks and write their results
        into the run's scratch files themselves (see :mod:`florin.planner`);
        False for :class:`Serial`. An executor whose workers cannot reach this
        process's scratch files returns False.
        """
        return type(self).imap is not Pipeline.imap or type(self).map is not Pipeline.map

    def _pairs(self, func, items):
        """``(index, result)`` pairs from the seam the most derived executor class overrides (imap or map)."""
        for cls in type(self).__mro__:
            if "imap" in vars(cls):
                return self.imap(func, items)
            if "map" in vars(cls):  # a subclass that overrides only map (e.g. to watch what it ships)
                return (pair for pair in enumerate(self.map(func, items)))
        return self.imap(func, items)

    def map_collection(self, steps, collection: Collection):
        """Map ``steps`` over the items of ``collection`` and rebuild it from the results as they arrive."""
        resume = _run.resuming()
        part = resume.part(collection, steps) if resume is not None and isinstance(collection, Tiles) else None
        if part is not None:
            committed = part.committed_result(like=collection.volume)
            if committed is not None:
                return committed  # an earlier run of this resumed one committed this part's output
        # Tile-by-tile saves write into this run's claimed temporary outputs, removed on any failure
        # (kept for the next run when it resumes).
        with tile_saves(list(steps), part=part) as steps:
            runner = _ItemRunner(steps, type(collection).resolve)
            items = collection.items()
            if part is not None:
                items = part.select(items, collection.infos)
            label = f"{type(self).__name__} over {len(items)} {type(collection).__name__.lower()}"
            with _run.progress_task(len(items), label) as tick, _run.mapping(collection.item_nbytes()):
                if self.in_process:
                    pairs = self._pairs(_Ticking(runner, tick), items)
                else:
                    pairs = _ticked(self._pairs(runner, items), tick)
                pairs = _stopping_on_signal(pairs)
                with contextlib.closing(pairs):  # a failed join stops the work still running
                    if part is not None:
                        rebuilt = collection.rebuild_stream(pairs, records=part)
                    else:
                        rebuilt = collection.rebuild_stream(pairs)
        for step in steps:
            hook = _steps.after_map(step)
            if hook is not None:
                hook(rebuilt)  # e.g. classify warns when no object matched a bounded class
        return rebuilt

    def _run_steps(self, steps, datum):
        i = 0
        merging = None  # on a tile: the step whose result the join still has to merge
        while i < len(steps):
            step = steps[i]
            if isinstance(datum, Collection) and _steps.per_item(step):
                j = i
                while j < len(steps) and self._maps_over(steps[j], datum) and _fits_after(steps[i:j], steps[j]):
                    j += 1
                if j > i:
                    datum = self.map_collection(steps[i:j], datum)
                    i = j
                    continue
            if isinstance(datum, Tiles) and not isinstance(step, Pipeline) and not _steps.accepts_tiles(step):
                datum = datum.volume  # implicit join of untouched tiles: the volume itself
            if isinstance(step, Tile):
                datum = _timed(step, lambda s=step, d=datum, k=i: self._cut(s, d, steps, k))
            else:
                if merging is not None and not isinstance(step, Pipeline) and not _steps.takes_merged_tiles(step):
                    raise _after_merging_error(merging, step)
                datum = _call_step(step, datum, self)
                if _steps.merged_at_join(step) and tilemeta.info_of(datum) is not None:
                    merging = step
            i += 1
        if isinstance(datum, Tiles):
            datum = datum.volume
        return datum

    def _cut(self, step, volume, steps, index):
        """Tile ``volume`` for the steps after ``steps[index]``: the user's tiles, or florin's blocks when exact."""
        halo = self._halo_after(steps, index, volume.shape)
        tiles = step(volume, auto_halo=halo)
        if not step.regroups:
            return tiles
        following = steps[index + 1:]
        if following and isinstance(following[0], Pipeline):
            return planner.regroup(tiles, halo, following[:1], following[0])  # the nested pipeline maps the tiles
        part = []
        for step_after in following:  # the steps _run_steps maps over the tiles
            if not (self._maps_over(step_after, tiles) and _fits_after(part, step_after)):
                break
            part.append(step_after)
        return planner.regroup(tiles, halo, part, self)

    @staticmethod
    def _maps_over(step, collection) -> bool:
        """Whether ``step`` is mapped over the items of ``collection``.

        Over tiles, a per-item step whose halo is unbounded (it needs whole
        objects, e.g. ``remove_small_objects``) is not: the tiles are joined
        before it, as before any whole-volume step.
        """
        if not _steps.per_item(step):
            return False
        if isinstance(collection, Tiles):
            return not _steps.is_unbounded(step, collection.volume.shape)
        return not _steps.whole_collection(step)  # e.g. classify: once on the whole table

    @staticmethod
    def _halo_after(steps, index, full_shape):
        following = steps[index + 1 :]
        if following and isinstance(following[0], Pipeline):
            return following[0].halo(full_shape)
        total = np.zeros(len(full_shape), dtype=object)
        for k, step in enumerate(following):
            halo = _steps.halo(step, full_shape) if _steps.per_item(step) else None
            if halo is None or math.inf in halo or not _fits_after(following[:k], step):
                break  # the tiles are joined before this step
            total = total + np.array(halo, dtype=object)
        return tuple(total.tolist())

    def halo(self, full_shape) -> tuple:
        """Sum of the halos its steps declare: the context a tile needs for them."""
        total = np.zeros(len(full_shape), dtype=object)
        for step in self.steps:
            total = total + np.array(_steps.halo(step, full_shape), dtype=object)
        return tuple(total.tolist())

    def _prepare_input(self, data, state):
        first = self.steps[0] if self.steps else None
        if first is not None and _steps.reads_paths(first):
            return data  # the load step reads paths and wraps arrays itself
        if data is _NO_DATA:
            raise PipelineError(
                "this pipeline has no input: call it with data (a path or an array), "
                "or start it with florin.load('volume.tif')"
            )
        if isinstance(data, str | os.PathLike):
            state.add_input(data)
            return read(data)
        if isinstance(data, Collection):
            return data
        return as_volume(data)

    # -- serialization --------------------------------------------------------------------
    def dump(self, path) -> None:
        """Serialize the pipeline with cloudpickle (atomically) to ``path``.

        Run it elsewhere with ``python -m florin run PATH INPUT``.
        """

        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            cloudpickle.dump(self, f)

    @staticmethod
    def from_file(path) -> Pipeline:
        """Load a pipeline written by :meth:`dump`."""


        try:
            with open(path, "rb") as f:
                pipeline = pickle.load(f)
        except FileNotFoundError:
            raise MissingInputError(f"pipeline file {os.fspath(path)!r} does not exist") from None
        except Exception as exc:
            raise InputFileError(f"cannot read pipeline file {os.fspath(path)!r}: {exc}") from exc
        if not isinstance(pipeline, Pipeline):
            raise InputFileError(f"{os.fspath(path)!r} holds a {type(pipeline).__name__}, not a florin pipeline")
        return pipeline

    def to_toml(self) -> str:
        """This pipeline as a TOML pipeline file (see :mod:`florin.pipeline_file`)."""
        return pipeline_file.to_toml(self)

    @staticmethod
    def from_toml(source) -> Pipeline:
        """Build a pipeline from TOML text or a ``.toml`` path (see :mod:`florin.pipeline_file`)."""
        return pipeline_file.from_toml(source)

    def __repr__(self):
        inner = ", ".join(repr(s) if not callable(s) or hasattr(s, "steps") or hasattr(s, "args")
                          else _steps.name(s) for s in self.steps)
        return f"{type(self).__name__}({inner})"


class Serial(Pipeline):
    """Pipeline that maps steps over items one after the other in this process.

    Examples
    --------
    >>> import numpy as np
    >>> import florin
    >>> from florin.morphology import binary_opening
    >>> mask = np.zeros((5, 5), bool); mask[1:4, 1:4] = True
    >>> florin.Serial(binary_opening())(mask).values.sum()
    np.int64(5)
    """

    name = "serial"
    in_process = True


class _Ticking:
    """Wraps an item runner to advance a progress bar (in-process executors only)."""

    def __init__(self, runner, tick):
        self.runner, self.tick = runner, tick

    def __call__(self, item):
        result = self.runner(item)
        self.tick()
        return result


def _ticked(pairs, tick):
    """Advance the progress bar as results come back from an executor that runs items elsewhere."""
    with contextlib.closing(pairs):
        for pair in pairs:
            tick()
            yield pair


def _stopping_on_signal(pairs):
    """``pairs`` as they come, stopped by a signal whose interrupt a library swallowed (see :mod:`florin._signals`)."""
    with contextlib.closing(pairs):
        for pair in pairs:
            raise_if_received()
            yield pair


class _ItemRunner:
    """Runs a list of steps on one item; what executors ship to workers."""

    def __init__(self, steps, resolve):
        self.steps = steps
        self.resolve = resolve

    def __call__(self, item):
        datum = self.resolve(item)
        result = Serial(*self.steps)._run_steps(self.steps, datum)
        if isinstance(result, xr.DataArray) and tilemeta.info_of(result) is not None:
            try:
                return tilemeta.crop_to_core(result)
            except ValueError as exc:
                info = tilemeta.info_of(result)
                raise PipelineError(
                    f"a step changed the shape of the tile at origin {info.origin}: {exc}; "
                    "steps inside a tiled pipeline must keep the tile's shape",
                    origin=info.origin,
                ) from None
        return result


def _start_resume(pipeline, data, state, resume, *, scratch, budget_given) -> None:
    """Open the records of a resumable run (``resume=True`` or a folder) and keep the first run's budget."""
    if _run._agreement is not None:
        raise ParameterError("resume= is not available under MPI in SPMD mode (mpiexec ... with florin.MPI); "
                             "run without it")
    folder = _resume.partial_folder(pipeline, scratch=scratch) if resume is True else resume
    state.resume = _resume.Resume.start(pipeline, data, folder, budget=state.scratch.budget, no_data=_NO_DATA)
    if not budget_given:
        state.scratch.budget = state.resume.budget  # the same plan as the interrupted run


def _all_whole_collection(steps, collection) -> bool:
    """Whether every step is called once on the whole ``collection`` (not tiles) instead of mapped over its items."""
    return (not isinstance(collection, Tiles) and bool(steps)
            and all(_steps.whole_collection(s) and not isinstance(s, Pipeline) for s in steps))


def _fits_after(previous, step) -> bool:
    """Whether ``step`` can run on the tiles left by ``previous`` steps before they are joined.

    After a step whose tile results the join still has to merge (it declares
    ``merged_at_join``, e.g. labels), only steps that declare
    ``takes_merged_tiles`` can.
    """
    return _steps.takes_merged_tiles(step) or not any(_steps.merged_at_join(s) for s in previous)


def _flat_steps(steps):
    for step in steps:
        if isinstance(step, Pipeline):
            yield from _flat_steps(step.steps)
        else:
            yield step


def _after_merging_error(merging, step):
    first, then = _steps.name(merging), _steps.name(step)
    return PipelineError(
        f"step `{then}` comes after `{first}` inside a tiled pipeline, where the result of `{first}` on each tile "
        f"is only complete after the tiles are joined (and `{then}` does not take such tiles); "
        f"put `{then}` after the tiled pipeline",
        operator=then,
    )


def _check_tiled_parts(steps):
    """Refuse a tiled part whose steps would see tile results not yet merged by the join.

    A tiled part is a nested pipeline right after ``tile()``: all its steps (its
    own nested pipelines included) run on each tile before the join. In a flat
    pipeline the tiles are joined before such a step instead (see ``_run_steps``).
    """
    for k, step in enumerate(steps[:-1]):
        if isinstance(step, Tile) and isinstance(steps[k + 1], Pipeline):
            merging = None
            for inner in _flat_steps(steps[k + 1].steps):
                if merging is not None and not _steps.takes_merged_tiles(inner):
                    raise _after_merging_error(merging, inner)
                if _steps.merged_at_join(inner):
                    merging = inner


def _planned(step, datum, pipeline):
    """The step run blockwise by the planner when its volume is above the memory budget (else NOT_PLANNED)."""
    if pipeline is None or isinstance(step, Pipeline):
        return planner.NOT_PLANNED
    return planner.plan(step, datum, pipeline)


def _timed(step, thunk):
    state = _run.current()
    start = time.perf_counter()
    try:
        return thunk()
    finally:
        if state is not None:
            name = _steps.name(step)
            state.timings[name] = state.timings.get(name, 0.0) + time.perf_counter() - start


def _note_step(exc, step, datum):
    """Note on a florin error which step raised it on which tile (unless it says so already).

    The message is the step's own; an executor that cannot send the error back
    from a worker still names the operator and origin (see ``executors._wire``).
    """
    info = tilemeta.info_of(datum)
    for attr, value in (("operator", _steps.name(step)), ("origin", info.origin if info is not None else None)):
        if getattr(exc, attr, None) is None:
            try:
                setattr(exc, attr, value)
            except AttributeError:  # __slots__ or a read-only property: leave it
                pass


def _call_step(step, datum, pipeline=None):
    def thunk():
        try:
            result = _planned(step, datum, pipeline)
            if result is planner.NOT_PLANNED:
                result = step(datum)
        except FlorinError as exc:
            _note_step(exc, step, datum)
            raise
        except Exception as exc:
            name = _steps.name(step)
            info = tilemeta.info_of(datum)
            where = f" on the tile at origin {info.origin}" if info is not None else ""
            raise PipelineError(
                f"step `{name}` failed{where}: {type(exc).__name__}: {exc}",
                operator=name,
                origin=info.origin if info is not None else None,
            ) from exc
        if isinstance(datum, xr.DataArray) and isinstance(result, np.ndarray) and result.shape == datum.shape:
            result = like(result, datum)  # plain functions keep the volume's labels
        elif (isinstance(datum, xr.DataArray) and isinstance(result, xr.DataArray)
              and result.shape == datum.shape and any(k not in result.attrs for k in datum.attrs)):
            # xarray < 2025.7 drops attrs in arithmetic (image * k): keep the input's attrs, the
            # tile metadata among them, as newer xarray does.
            result = result.copy(deep=False)
            result.attrs = {**datum.attrs, **result.attrs}
        return result

    if isinstance(step, Pipeline):
        return _timed(step, lambda: step.run(datum))
    output = _steps.output(step)
    resume = _run.resuming() if output is not None and tilemeta.info_of(datum) is None else None
    if resume is not None and resume.is_committed(output):
        return datum  # the run this one resumes committed it, unchanged since: not written again
    result = _timed(step, thunk)
    if resume is not None:
        resume.committed(output)
    return result
