"""The planner: whole-volume steps on volumes above the memory budget run blockwise, by their declared kind.

When a step of a pipeline gets a volume that lives on disk (an on-disk
scratch volume the implicit join wrote because it was above the run's memory
budget, or a lazily read file) and the step's in-memory form would not fit
the budget (:data:`BYTES_PER_VOXEL` per voxel), the pipeline asks the planner
instead of calling the step. The planner reads only the step's declarations
(:mod:`florin.steps`), never which operator it is:

* a ``map`` step (it declares a finite halo) runs tile by tile over blocks of
  the volume, with its halo, under the run's block executor (below), and the
  blocks' cores are joined into a new scratch volume;
* a step that declares its blockwise form (``blockwise_impl``, e.g.
  ``conncomp.label``, the size filters, ``regionprops`` and ``reconstruct``,
  whose kinds are ``label-merge``, ``reduce`` and ``lookup``) is given the
  datum, an allocator within the budget and the blocks, and returns what the
  step would;
* anything else (``whole``, or a step that declares nothing) is called as it
  is.

The blocks run under the *block executor* of the run (:func:`block_executor`):
the pipeline running the step when it maps in parallel, else the parallel
executor nested in that pipeline nearest to the step (``Serial(load(),
tile(...), Multiprocess(ndnt(...)), save(...), conncomp.label(), ...)`` labels
with the ``Multiprocess`` workers), else this process. The per-block functions
receive the input and the destination as references (:mod:`florin.blockwise._arrays`):
each worker reads its block from the file or the scratch memory map and writes
its result into the scratch memory map (or the output file) itself, and sends
back only small summaries (label counts, face pairs, region statistics), so
the volume never passes through the parent. An executor whose workers cannot
reach the parent's scratch files says so with ``maps_blocks()`` (``florin.MPI``
in SPMD mode, where every rank has its own scratch directory): the blocks then
run in this process.

The result equals the in-memory one voxel for voxel (the blockwise forms are
exact; floating-point intensity sums of ``regionprops`` up to summation order).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import xarray as xr

from florin import _run, tilemeta
from florin import steps as _steps
from florin.io._blocks import blocks
from florin.memory import sealed
from florin.regions import Regions
from florin.tiling import Tiles, tile_infos

__all__ = ["BYTES_PER_VOXEL", "NOT_PLANNED", "block_executor", "blocks_for", "plan", "source"]

#: What the in-memory form of a whole-volume step is assumed to hold per voxel (labels, masks, temporaries).
BYTES_PER_VOXEL = 16
#: Part of the budget one block (and its temporaries) may take.
BLOCK_FRACTION = 1 / 4

NOT_PLANNED = object()


def on_disk(volume) -> bool:
    """Whether ``volume``'s voxels are on disk (a memory map or a lazily read file), not in memory."""
    if not isinstance(volume, xr.DataArray):
        return False
    data = volume.variable._data
    if isinstance(data, np.ndarray):
        mm = data
        while isinstance(mm, np.ndarray) and not isinstance(mm, np.memmap):
            mm = mm.base
        return isinstance(mm, np.memmap)
    return True  # a lazily indexed backend array (HDF5, Zarr, TIFF pages, ...) or a dask array


def source(volume):
    """What blockwise algorithms slice: the memory map of a volume, or the (lazy) DataArray itself."""
    data = volume.variable._data if isinstance(volume, xr.DataArray) else volume
    return data if isinstance(data, np.ndarray) else volume


def blocks_for(shape, budget) -> list:
    """Boxes partitioning ``shape`` of at most ``BLOCK_FRACTION * budget`` bytes at :data:`BYTES_PER_VOXEL`.

    Slabs along the first axis, split along the next axes when one slice is
    too large.

    Examples
    --------
    >>> [b[0] for b in blocks_for((10, 4, 4), budget=16 * 16 * 4 * 3)]
    [slice(0, 3, None), slice(3, 6, None), slice(6, 9, None), slice(9, 10, None)]
    """
    max_bytes = max(BYTES_PER_VOXEL, int(budget * BLOCK_FRACTION))
    return [tuple(b) for b in blocks(tuple(shape), BYTES_PER_VOXEL, max_bytes=max_bytes)]


def _volume_of(datum):
    if isinstance(datum, xr.DataArray):
        return datum
    if not isinstance(datum, Regions):
        # not getattr(datum, "labels"): on each of thousands of Region items (classify maps over them) the miss
        # builds a did-you-mean message (0.3 s of 2,600 regions)
        return None
    labels = datum.labels  # regions (a lookup step's input) carry their label volume
    return labels if isinstance(labels, xr.DataArray) else None


def _parallel_in(step):
    """The first executor inside ``step`` (itself, or nested in it) that maps in parallel, or None."""
    maps_blocks = getattr(step, "maps_blocks", None)
    if not callable(maps_blocks):
        return None
    if maps_blocks():
        return step
    for inner in getattr(step, "steps", ()):
        found = _parallel_in(inner)
        if found is not None:
            return found
    return None


def block_executor(step, pipeline):
    """The executor whose ``map`` runs the blocks of ``step`` planned inside ``pipeline``, or None (this process).

    ``pipeline`` itself when it maps in parallel (``maps_blocks()``); else the
    parallel executor nested in one of its steps nearest to ``step`` (the one
    before it on a tie); else None.

    Examples
    --------
    >>> import florin
    >>> from florin.conncomp import label
    >>> step = label()
    >>> pipe = florin.Serial(florin.Multithread(abs, workers=2), step, florin.Serial(abs))
    >>> block_executor(step, pipe) is pipe.steps[0], block_executor(step, florin.Serial(step))
    (True, None)
    """
    if _parallel_in(pipeline) is pipeline:
        return pipeline
    steps = list(getattr(pipeline, "steps", ()))
    here = next((k for k, s in enumerate(steps) if s is step), 0)
    nested = [(k, found) for k, s in enumerate(steps) for found in [_parallel_in(s)] if found is not None]
    if not nested:
        return None
    return min(nested, key=lambda kf: (abs(kf[0] - here), kf[0] > here))[1]


def plan(step, datum, pipeline):
    """Run ``step`` on ``datum`` blockwise when it is above the budget; :data:`NOT_PLANNED` otherwise.

    ``pipeline`` is the pipeline running the step; the blocks run under its
    :func:`block_executor`.
    """
    state = _run.current()
    scratch = getattr(state, "scratch", None) if state is not None else None
    volume = _volume_of(datum)
    if scratch is None or volume is None or volume.ndim == 0 or not on_disk(volume):
        return NOT_PLANNED
    if tilemeta.info_of(datum) is not None:
        return NOT_PLANNED  # a tile: the tiled run already bounds it
    if scratch.budget >= math.prod(volume.shape) * BYTES_PER_VOXEL:
        return NOT_PLANNED  # the in-memory form fits
    if not _steps.declares(step):
        return NOT_PLANNED
    shape = tuple(volume.shape)
    executor = block_executor(step, pipeline)
    impl = _steps.blockwise_impl(step)
    if impl is not None:
        result = impl(datum, allocate=_shared_allocator(scratch, executor), blocks=blocks_for(shape, scratch.budget),
                      map=executor.map if executor is not None else map, **_steps.params(step))
        return sealed(result)
    kind = _steps.kind(step, shape)
    if kind == "map" and _steps.per_item(step) and isinstance(datum, xr.DataArray):
        return _tiled_map(step, datum, executor if executor is not None else pipeline, scratch.budget)
    return NOT_PLANNED


def _shared_allocator(scratch, executor):
    """``allocate(shape, dtype)`` for the destinations of a blockwise step.

    Under an executor whose workers are other processes every destination is
    a scratch memory map, which the workers map again and write themselves (an
    in-memory one would make them send their blocks back to this process); in
    this process (threads included), small ones stay in memory.
    """
    if executor is None or executor.in_process:
        return scratch.allocate
    return functools.partial(scratch.allocate, force=True)


def _tiled_map(step, volume, pipeline, budget):
    """A ``map`` step over blocks of the volume, each with the step's halo, joined within the budget."""
    shape = tuple(volume.shape)
    halo = _steps.halo(step, shape)
    first = blocks_for(shape, budget)[0]
    block = tuple(s.stop - s.start for s in first)
    tiles = Tiles(volume, tile_infos(shape, block, halo=tuple(min(int(h), n) for h, n in zip(halo, shape, strict=True))))
    return pipeline.map_collection([step], tiles)
