"""Blockwise connected-component labeling, equal to :func:`florin.conncomp.label`.

Pass 1 labels every block with :func:`florin._kernels.label.label` and writes
*provisional* ids ``local + offset`` into ``out`` (or a scratch memory map
when workers cannot share ``out``), where ``offset`` is the
number of voxels of the blocks before it (so blocks never need each other's
counts and ids stay unique and below the volume's size). Pass 2 reads the
one-voxel shells on both sides of every block face (extended by one voxel on
the other axes, which covers edges and corners for any box partition) and
collects the touching id pairs. The parent unions them, renumbers the
components in raster order of their first voxel, and pass 3 rewrites every
block with the final labels.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import numbers
import tempfile
from pathlib import Path

import numpy as np

from florin._kernels import ids as _kids
from florin._kernels import label as _klabel
from florin._kernels import sizes as _ksizes
from florin.blockwise._arrays import Sink, Source, in_process, is_shared_memmap
from florin.errors import ParameterError

__all__ = ["label"]


def _grid(block_shape, shape):
    """The boxes of a regular grid of ``block_shape`` (clipped at the edges), in raster order."""
    ranges = [[slice(i, min(i + b, n)) for i in range(0, n, b)] for b, n in zip(block_shape, shape, strict=True)]
    return list(itertools.product(*ranges))


def _normalize_blocks(blocks, shape):
    """Blocks as tuples of ``slice(start, stop)``; checks that they partition ``shape``.

    ``blocks`` is a block shape (an int for every axis, or one int for all)
    or a list of tuples of slices.
    """
    if isinstance(blocks, numbers.Integral) and not isinstance(blocks, bool):
        blocks = (int(blocks),) * len(shape)
    if isinstance(blocks, str | bytes) or not hasattr(blocks, "__iter__"):
        raise ParameterError(
            f"blocks must be a block shape (one int per axis) or a list of tuples of slices, got {type(blocks).__name__}"
        )
    blocks = list(blocks)
    if blocks and all(isinstance(b, numbers.Integral) and not isinstance(b, bool) for b in blocks):
        if len(blocks) != len(shape) or any(b < 1 for b in blocks):
            raise ParameterError(
                f"blocks: a block shape needs {len(shape)} integers >= 1 (one per axis of {shape}), got {tuple(blocks)}"
            )
        if any(n == 0 for n in shape):
            raise ParameterError(f"blocks: the volume of shape {shape} is empty")
        return _grid([int(b) for b in blocks], shape)
    out = []
    for b in blocks:
        b = b if isinstance(b, tuple) else (b,)
        if len(b) != len(shape) or not all(isinstance(s, slice) for s in b):
            raise ParameterError(f"blocks: every block must be a tuple of {len(shape)} slices, got {b!r}")
        norm = []
        for s, n in zip(b, shape, strict=True):
            start, stop, step = s.indices(n)
            if step != 1 or stop <= start:
                raise ParameterError(f"blocks: block {b!r} must have step 1 and be nonempty inside shape {shape}")
            norm.append(slice(start, stop))
        out.append(tuple(norm))
    if not out:
        raise ParameterError("blocks must not be empty")
    lo = np.array([[s.start for s in b] for b in out], np.int64)
    hi = np.array([[s.stop for s in b] for b in out], np.int64)
    if int(np.prod(hi - lo, axis=1).sum()) != math.prod(shape):
        raise ParameterError(f"blocks must partition the volume of shape {shape}: their sizes do not add up")
    for i in range(len(out) - 1):
        overlap = np.all(np.maximum(lo[i], lo[i + 1 :]) < np.minimum(hi[i], hi[i + 1 :]), axis=1)
        if overlap.any():
            raise ParameterError(f"blocks must partition the volume: {out[i]!r} overlaps another block")
    return out


def _check_arrays(mask, out, what):
    shape = tuple(int(s) for s in mask.shape)
    if len(shape) == 0:
        raise ParameterError(f"{what}: the input needs at least one dimension")
    if tuple(out.shape) != shape:
        raise ParameterError(f"{what}: out has shape {tuple(out.shape)}, the input {shape}; they must match")
    return shape


def _check_connectivity(connectivity, ndim, what):
    if isinstance(connectivity, bool) or not isinstance(connectivity, numbers.Integral):
        raise ParameterError(f"{what}: connectivity must be an integer between 1 and {ndim}, got {connectivity!r}")
    if not 1 <= connectivity <= ndim:
        raise ParameterError(f"{what}: connectivity must be between 1 and {ndim}, got {connectivity}")
    return int(connectivity)


def _label_block(mask, work, connectivity, shape, invert, count, task):
    """Pass 1: label one block, write provisional ids; ``(n, first, pending write, voxels per id or None)``."""
    block, offset = task
    data = mask[block]
    fg = data == 0 if invert else data
    local, n = _klabel.label(fg, connectivity)
    first = _klabel.first_flat_index(local, n, origin=[s.start for s in block], shape=shape)
    sizes = _ksizes.label_sizes(local)[1:] if count else None
    return n, first, work.put(block, _kids.shift(local, offset, work.dtype)), sizes


def _shell_pairs(work, connectivity, shape, offsets, bases, block):
    """Pass 2: pairs of dense ids touching across the faces of one block."""
    found = [np.zeros((0, 2), np.uint64)]
    for a in range(len(shape)):
        ext = [slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(block, shape, strict=True)]
        for e in (block[a].start, block[a].stop):
            if e <= 0 or e >= shape[a]:
                continue
            lo, hi = list(ext), list(ext)
            lo[a], hi[a] = e - 1, e
            la = _kids.compact(work[tuple(lo)], offsets, bases)
            lb = _kids.compact(work[tuple(hi)], offsets, bases)
            found.append(_klabel.boundary_pairs(la, lb, connectivity))
    return np.concatenate(found)


def _relabel_block(work, out, task):
    """Pass 3: one block's provisional ids to final labels (``final[local]``, 0 stays 0); the pending write."""
    block, offset, final = task
    return out.put(block, _kids.relabel(work[block], offset, final, out.dtype))


@contextlib.contextmanager
def _provisional(out, shape, map):
    """The array for the provisional ids: ``out`` when every worker can read and write it, else a scratch map.

    That is ``out`` under ``builtins.map`` (one process) or when it is a
    writable memory map (mapped again in each worker). Otherwise (an h5py or
    zarr dataset, an in-memory array under a process pool, an output of
    :func:`florin.io.create`) the ids go to a temporary memory map, removed
    afterwards, and only the final labels are written into ``out``.
    """
    if in_process(map) or is_shared_memmap(out, writable=True):
        yield out
        return
    with tempfile.TemporaryDirectory(prefix="florin-blockwise-") as tmp:
        work = np.lib.format.open_memmap(
            Path(tmp) / "provisional.npy", mode="w+", dtype=_klabel.label_dtype(math.prod(shape)), shape=shape
        )
        try:
            yield work
        finally:
            del work


def _label_into(mask, out, blocks, connectivity, map, what, invert=False, count=False):
    """Blockwise labels of ``mask`` (or of its zeros with ``invert``) into ``out``; returns N.

    With ``count``, returns ``(N, voxels)``: ``voxels[k]`` is the size of label ``k`` (``voxels[0]`` is 0),
    summed from the blocks' own counts, so the size filters need no pass over the labels to count them.
    """
    shape = _check_arrays(mask, out, what)
    connectivity = _check_connectivity(connectivity, len(shape), what)
    out_dtype = np.dtype(out.dtype)
    if out_dtype.kind not in "iu" or np.iinfo(out_dtype).max < math.prod(shape):
        raise ParameterError(
            f"{what}: out must have an integer dtype holding {math.prod(shape)} (the voxel count), "
            f"e.g. {_klabel.label_dtype(math.prod(shape))}; got {out_dtype}"
        )
    blocks = _normalize_blocks(blocks, shape)
    sizes = np.array([math.prod(s.stop - s.start for s in b) for b in blocks], np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    with _provisional(out, shape, map) as work:
        sink, work_sink = Sink(out), Sink(work)
        step1 = functools.partial(_label_block, Source(mask), work_sink, connectivity, shape, invert, count)
        counts, firsts, voxels = [], [], [np.zeros(1, np.int64)]  # voxels per dense id, 0 first
        for n, first, pending, block_voxels in map(step1, list(zip(blocks, offsets.tolist(), strict=True))):
            work_sink.apply(pending)
            counts.append(int(n))
            firsts.append(first)
            if count:
                voxels.append(block_voxels)
        bases = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        n_prov = int(sum(counts))
        step2 = functools.partial(_shell_pairs, Source(work), connectivity, shape, offsets, bases)
        pairs = np.concatenate([np.zeros((0, 2), np.uint64), *map(step2, blocks)])
        relabel = _klabel.merge_pairs(pairs, n_prov)
        relabel = _klabel.renumber_by_first_voxel(relabel, np.concatenate(firsts))
        # each block gets only its own slice of the table (its dense ids are base + 1 .. base + n)
        tasks = [
            (b, off, np.concatenate([[0], relabel[base + 1 : base + n + 1]]))
            for b, off, base, n in zip(blocks, offsets.tolist(), bases.tolist(), counts, strict=True)
        ]
        for pending in map(functools.partial(_relabel_block, Source(work), sink), tasks):
            sink.apply(pending)
    n_final = int(relabel.max()) if relabel.size else 0
    if not count:
        return n_final
    per_label = np.zeros(n_final + 1, np.int64)
    np.add.at(per_label, relabel, np.concatenate(voxels))
    per_label[0] = 0
    return n_final, per_label


def label(mask, out, *, blocks, connectivity=1, map=map) -> int:
    """Label the connected components of a mask block by block.

    The result equals :func:`florin.conncomp.label` of the whole mask voxel
    for voxel, numbering included (``1..N`` in raster order of each
    component's first voxel), while only a block and the one-voxel shells
    around it are read at a time.

    Parameters
    ----------
    mask : array_like
        Sliceable N-D mask (numpy array, ``numpy.memmap``, h5py dataset, zarr
        array); nonzero is foreground. Never modified.
    out : array_like
        Sliceable array of the mask's shape with an integer dtype that holds
        the voxel count (:func:`florin._kernels.label.label_dtype` of the size,
        as the in-memory labels). Receives the labels. It also holds the
        provisional ids between the passes when every worker can read and
        write it (``builtins.map``, or a writable ``numpy.memmap``, which
        process workers map again); otherwise they go to a temporary memory
        map and the parent writes the final labels the workers return.
    blocks : tuple of int or list of tuple of slice
        A block shape (a regular grid, clipped at the edges) or boxes
        partitioning the volume, e.g. ``[i.core_slices for i in
        florin.tiling.tile_infos(shape, tile)]``.
    connectivity : int
        ``1`` (faces) up to ``ndim`` (faces, edges and corners).
    map : callable
        ``map(func, items)`` returning the results in order; ``builtins.map``
        by default, or a thread or process pool's or an executor's map (each
        block is one item; the arrays travel as references, see
        :mod:`florin.blockwise._arrays`).

    Returns
    -------
    int
        The number of components ``N``.

    Raises
    ------
    florin.errors.ParameterError
        When the shapes differ, ``out`` cannot hold the ids, ``blocks`` do not
        partition the volume or ``connectivity`` is out of range.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.array([[1, 1, 0, 1], [0, 0, 0, 1], [1, 0, 1, 1]], bool)
    >>> out = np.zeros(mask.shape, np.uint32)
    >>> label(mask, out, blocks=[(slice(0, 3), slice(0, 2)), (slice(0, 3), slice(2, 4))])
    3
    >>> out
    array([[1, 1, 0, 2],
           [0, 0, 0, 2],
           [3, 0, 2, 2]], dtype=uint32)
    """
    return _label_into(mask, out, blocks, connectivity, map, "blockwise.label()")
