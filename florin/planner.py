"""The planner: whole-volume steps on volumes above the memory budget run blockwise, by their declared kind.

When a step of a pipeline gets a volume whose in-memory form would not fit
the budget (:data:`BYTES_PER_VOXEL` per voxel: the step's labels, masks and
temporaries), the pipeline asks the planner instead of calling the step. The
volume may be on disk (an on-disk scratch volume the implicit join wrote
because it was above a quarter of the budget, or a lazily read file) or in
memory (it fits, its step's temporaries do not; under worker processes it is
copied to a scratch volume first, so that they read their blocks from it). The planner reads only the step's declarations
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

The planner also chooses the blocks of a tiled run (:func:`regroup`). A tiled
result whose steps all declare a finite halo is exact, so the user's tile
shape cannot change it and only says how to cut the work: the tiles are
replaced by blocks large enough that the halos cost little, small enough to
keep every worker busy (:data:`BLOCKS_PER_WORKER`) and to hold the blocks in
flight within the run's memory budget, aligned to the input's chunks when it
has some (:func:`block_shape`). ``tile(..., blocks='tiles')`` keeps the
user's tiles.
"""

from __future__ import annotations

import functools
import itertools
import math
import os

import numpy as np
import xarray as xr

from florin import _run, tilemeta
from florin import steps as _steps
from florin.io._blocks import blocks, copy_blocks
from florin.io.lazy import chunks_of
from florin.memory import default_budget, sealed
from florin.regions import Regions
from florin.tiling import Tiles, tile_infos

__all__ = [
    "BLOCKS_PER_WORKER", "BYTES_PER_VOXEL", "NOT_PLANNED", "block_executor", "block_shape", "blocks_for",
    "default_tile", "exact_under_tiling", "plan", "recut", "regroup", "source", "workers_of",
]

#: What the in-memory form of a whole-volume step is assumed to hold per voxel (labels, masks, temporaries).
BYTES_PER_VOXEL = 16
#: Part of the budget one block (and its temporaries) may take.
BLOCK_FRACTION = 1 / 4

#: Blocks per worker a parallel executor gets, at least (so that no worker idles while another finishes).
BLOCKS_PER_WORKER = 2
#: Items an executor keeps in flight per worker (Multithread, Multiprocess: two).
IN_FLIGHT_PER_WORKER = 2

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


def recut(shape, blocks, *, bytes_per_voxel, halo=None) -> list:
    """Boxes of a grid for a blockwise form that holds ``bytes_per_voxel`` per voxel of a block with its halo.

    ``blocks`` are the planner's (:func:`blocks_for`: sized at
    :data:`BYTES_PER_VOXEL`); the new blocks, with ``halo`` (per axis), hold
    no more memory than the largest of them at ``bytes_per_voxel``, are at
    least as many, and are cut along every axis but the last (:func:`block_shape`),
    so that a block reads runs of whole rows of a memory map (page
    fragments would read a volume that the page cache cannot hold from disk
    many times over) and has less surface than a thin slab of the same size.

    Examples
    --------
    >>> slabs = [(slice(z, z + 4), slice(0, 64), slice(0, 64)) for z in range(0, 64, 4)]
    >>> grid = recut((64, 64, 64), slabs, bytes_per_voxel=4, halo=(1, 1, 1))  # blocks 4 times larger, as compact
    >>> len(grid), grid[0]
    (16, (slice(0, 16, None), slice(0, 16, None), slice(0, 64, None)))
    """
    shape = tuple(int(n) for n in shape)
    halo = tuple(min(int(h), n) for h, n in zip(halo, shape, strict=True)) if halo is not None else (0,) * len(shape)
    largest = max(math.prod(s.stop - s.start for s in b) for b in blocks)
    max_voxels = max(1, largest * BYTES_PER_VOXEL // max(1, int(bytes_per_voxel)))
    rows = (1,) * (len(shape) - 1) + (shape[-1],)
    core = block_shape(shape, halo, max_voxels=max_voxels, min_blocks=len(blocks), chunks=rows)
    ranges = [[slice(i, min(i + c, n)) for i in range(0, n, c)] for c, n in zip(core, shape, strict=True)]
    return list(itertools.product(*ranges))


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
    if scratch is None or volume is None or volume.ndim == 0:
        return NOT_PLANNED
    if tilemeta.info_of(datum) is not None:
        return NOT_PLANNED  # a tile: the tiled run already bounds it
    if scratch.budget >= math.prod(volume.shape) * BYTES_PER_VOXEL:
        return NOT_PLANNED  # the in-memory form fits
    if not _steps.declares(step):
        return NOT_PLANNED
    shape = tuple(volume.shape)
    executor = block_executor(step, pipeline)
    if executor is not None and not executor.in_process and not on_disk(volume):
        # A volume held in memory (it fits the budget, its step's temporaries do not) goes to scratch
        # once, so that worker processes read their blocks from the file instead of each getting a copy.
        datum = _spilled(datum, scratch)
    impl = _steps.blockwise_impl(step)
    if impl is not None:
        result = impl(datum, allocate=_shared_allocator(scratch, executor), blocks=blocks_for(shape, scratch.budget),
                      map=executor.map if executor is not None else map, **_steps.params(step))
        return sealed(result)
    kind = _steps.kind(step, shape)
    if kind == "map" and _steps.per_item(step) and isinstance(datum, xr.DataArray):
        return _tiled_map(step, datum, executor if executor is not None else pipeline, scratch.budget)
    return NOT_PLANNED


def _spilled(datum, scratch):
    """``datum`` with its volume (a regions table's: its labels) copied into a read-only scratch memory map."""
    volume = _volume_of(datum)
    mm = scratch.allocate(volume.shape, volume.dtype, force=True)
    copy_blocks(mm, volume.values)
    copy = sealed(xr.DataArray(mm, dims=volume.dims, coords=volume.coords, attrs=dict(volume.attrs), name=volume.name))
    if isinstance(datum, xr.DataArray):
        return copy
    datum.labels = copy
    return datum


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


# -- the blocks of a tiled run ---------------------------------------------------------------
def exact_under_tiling(steps, full_shape) -> bool:
    """Whether the tiled result of ``steps`` cannot depend on the tiles, so florin may choose its blocks.

    True when every step (nested pipelines' steps included) declares a finite
    halo (:func:`florin.steps.declares_halo`) and runs block by block
    (kind ``'map'``, its tile results joined as plain arrays), or writes the
    tiles it is given (``florin.save``). A step that declares no halo (its
    result may depend on the tile, e.g. a per-tile Otsu threshold), labels
    merged at the join, or an empty tiled part: False.

    Examples
    --------
    >>> import numpy as np
    >>> from florin.morphology import binary_opening
    >>> exact_under_tiling([binary_opening()], (8, 8)), exact_under_tiling([binary_opening(), np.negative], (8, 8))
    (True, False)
    """
    flat = []
    pending = list(steps)
    while pending:
        step = pending.pop(0)
        if _is_pipeline(step):
            pending[:0] = list(step.steps)
        else:
            flat.append(step)
    if not flat:
        return False
    for step in flat:
        if _steps.accepts_tiles(step):
            continue  # writes each tile's core (the written kind)
        if _steps.merged_at_join(step) or _steps.takes_merged_tiles(step) or not _steps.declares_halo(step):
            return False
        if _steps.kind(step, full_shape) != "map" or _steps.is_unbounded(step, full_shape):
            return False
    return True


def _is_pipeline(step) -> bool:
    """Whether ``step`` is a nested pipeline (read by its methods: florin.pipelines imports this module)."""
    return callable(getattr(step, "imap", None)) and isinstance(getattr(step, "steps", None), list | tuple)


def workers_of(executor) -> int:
    """How many items ``executor`` (a pipeline) runs at once: 1 for a loop (Serial), else its ``workers``."""
    cls = type(executor)
    base = next(c for c in reversed(cls.__mro__) if "imap" in vars(c))  # florin.pipelines.Pipeline
    if cls.imap is base.imap and cls.map is base.map:
        return 1
    workers = getattr(executor, "workers", None)
    if not isinstance(workers, int) or workers < 1:
        workers = os.cpu_count() or 1
    return workers


def _axis_cores(n, chunk) -> list:
    """Core sizes to try on an axis of ``n`` voxels, largest first (multiples of ``chunk`` when given)."""
    cores, k = [], 1
    while k <= n:
        core = -(-n // k)  # the distinct values of ceil(n / k): O(sqrt(n)) of them
        aligned = min(n, chunk * -(-core // chunk)) if chunk else core
        if not cores or aligned < cores[-1]:
            cores.append(aligned)
        k = -(-n // (core - 1)) if core > 1 else n + 1
    return cores


def _axis_read(n, core, h):
    """Voxels read along an axis of ``n`` cut into cores of ``core``, each with ``h`` of halo (clipped)."""
    total = n
    for boundary in range(core, n, core):
        total += min(boundary, h) + min(n - boundary, h)
    return total


def block_shape(full_shape, halo, *, max_voxels, min_blocks=1, chunks=None) -> tuple:
    """The core shape of the blocks a tiled run with ``halo`` cuts ``full_shape`` into.

    Starting from one block (the whole volume), the axis whose split reads the
    fewest extra voxels (the blocks' halos) is split next, until there are at
    least ``min_blocks`` blocks and a block with its halo holds at most
    ``max_voxels`` voxels (or no axis can be split further). With ``chunks``
    (the input's chunk shape), block cores are multiples of the chunks.

    Parameters
    ----------
    full_shape : tuple of int
        The volume's shape.
    halo : tuple of int
        The steps' halo per axis.
    max_voxels : int
        Most voxels of one block with its halo.
    min_blocks : int
        Fewest blocks (parallelism).
    chunks : tuple of int, optional
        The input's chunk shape.

    Examples
    --------
    >>> block_shape((64, 512, 512), (7, 34, 34), max_voxels=2**40)
    (64, 512, 512)
    >>> block_shape((64, 512, 512), (7, 34, 34), max_voxels=2**40, min_blocks=4)  # reads fewer halo voxels than (64, 128, 512)
    (64, 256, 256)
    >>> block_shape((64, 512, 512), (7, 34, 34), max_voxels=2**40, min_blocks=4, chunks=(16, 200, 200))
    (64, 400, 400)
    """
    full_shape = tuple(int(n) for n in full_shape)
    halo = tuple(int(min(h, n)) for h, n in zip(halo, full_shape, strict=True))
    chunks = tuple(chunks) if chunks is not None else (None,) * len(full_shape)
    options = [_axis_cores(n, c) for n, c in zip(full_shape, chunks, strict=True)]
    at = [0] * len(full_shape)  # the option each axis is at

    def current(axis=None, option=None):
        return [o[option if a == axis else at[a]] for a, o in enumerate(options)]

    def count(core_shape):
        return math.prod(-(-n // c) for n, c in zip(full_shape, core_shape, strict=True))

    def biggest(core_shape):
        return math.prod(min(n, c + 2 * h) for n, c, h in zip(full_shape, core_shape, halo, strict=True))

    reads = [_axis_read(n, o[0], h) for n, o, h in zip(full_shape, options, halo, strict=True)]
    while count(current()) < min_blocks or biggest(current()) > max_voxels:
        # Split the axis that does the most for the unmet limits per extra voxel read (log ratios); on each
        # axis the first finer cut that does anything for them.
        cores, cost, best = current(), math.prod(reads), None
        for a in range(len(full_shape)):
            for option in range(at[a] + 1, len(options[a])):
                trial = current(a, option)
                gain = 0.0
                if count(cores) < min_blocks:
                    gain += math.log(count(trial) / count(cores))
                if biggest(cores) > max_voxels:
                    gain += math.log(biggest(cores) / biggest(trial))
                if gain > 0:
                    read = _axis_read(full_shape[a], trial[a], halo[a])
                    extra = math.log(math.prod(reads[:a] + [read] + reads[a + 1:]) / cost)
                    key = (gain / extra if extra > 0 else math.inf, full_shape[a])
                    if best is None or key > best[0]:
                        best = (key, a, option, read)
                    break
        if best is None:
            break  # no finer cut helps: every axis is cut as finely as it can be (or its halo spans it)
        _, a, at[a], reads[a] = best
    cores = current()
    return tuple(cores)


def default_tile(shape, workers, budget=None) -> tuple:
    """The tile shape of a parallel run that names none (``florin segment -e multiprocess`` without ``--tile``).

    At least :data:`BLOCKS_PER_WORKER` tiles per worker, each small enough
    that the tiles in flight hold at most :data:`BLOCK_FRACTION` of the memory
    ``budget`` (default: the run's, else :func:`florin.memory.default_budget`)
    at :data:`BYTES_PER_VOXEL`: slabs along the first axis, or boxes of whole
    rows when one slice is too large or the slices too few. :func:`regroup` then re-cuts them for
    the steps' halos when the result cannot depend on them.

    Examples
    --------
    >>> default_tile((64, 512, 512), 2, budget=2**40)
    (16, 512, 512)
    >>> default_tile((64, 512, 512), 2, budget=64 * 2**20)
    (1, 512, 512)
    """
    shape = tuple(int(n) for n in shape)
    workers = max(1, int(workers))
    if budget is None:
        budget = _run.budget() or default_budget()
    max_voxels = max(1, int(budget * BLOCK_FRACTION) // (IN_FLIGHT_PER_WORKER * workers * BYTES_PER_VOXEL))
    min_blocks = BLOCKS_PER_WORKER * workers
    plane = math.prod(shape[1:])
    if plane <= max_voxels and shape[0] >= min_blocks:  # slabs along the first axis
        return (max(1, min(-(-shape[0] // min_blocks), max_voxels // plane)), *shape[1:])
    rows = (1,) * (len(shape) - 1) + (shape[-1],)
    return block_shape(shape, (1,) * len(shape), max_voxels=max_voxels, min_blocks=min_blocks, chunks=rows)


def regroup(tiles, halo, steps, executor):
    """``tiles`` as the blocks florin chooses for ``steps`` under ``executor``, when that is exact; else ``tiles``.

    Only when :func:`exact_under_tiling` holds: every block gets ``halo`` (the
    steps' declared halo, as the tiles have; the user's stride overlap is not
    needed), its core is a part of the volume, and the blocks partition the
    volume like any tiles, so the join and saves inside the tiled part work
    unchanged. The block shape (:func:`block_shape`) takes at least
    :data:`BLOCKS_PER_WORKER` blocks per worker of a parallel executor, and
    blocks small enough that the items in flight hold at most
    :data:`BLOCK_FRACTION` of the run's memory budget (at
    :data:`BYTES_PER_VOXEL`), but never smaller than the user's tiles.

    A resumable run (``resume=True``) keeps the user's tiles: it may be
    resumed under another executor or memory budget, which would choose other
    blocks than the ones its completion records name.
    """
    volume, infos = tiles.volume, tiles.infos
    shape = tuple(volume.shape)
    if not infos or _run.resuming() is not None or not exact_under_tiling(steps, shape):
        return tiles  # a resumable run keeps the user's tiles: its records must name the same items when resumed
    halo = tuple(int(min(h, n)) for h, n in zip(_steps.normalize_halo(halo, len(shape)), shape, strict=True))
    workers = workers_of(executor)
    min_blocks = 1 if workers == 1 else BLOCKS_PER_WORKER * workers
    budget = _run.budget()
    if budget is None:
        budget = default_budget()
    in_flight = IN_FLIGHT_PER_WORKER * workers
    user_tile = max(math.prod(i.tile_shape) for i in infos)
    max_voxels = max(user_tile, int(budget * BLOCK_FRACTION) // (in_flight * BYTES_PER_VOXEL))
    chunks = chunks_of(volume)  # an HDF5/Zarr input's chunks: every block reads whole chunks
    core = _run.agree(lambda: block_shape(shape, halo, max_voxels=max_voxels, min_blocks=min_blocks, chunks=chunks))
    return Tiles(volume, tile_infos(shape, core, halo=halo))
