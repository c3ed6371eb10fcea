"""Blockwise connected-component labeling, equal to :func:`florin.conncomp.label`.

Pass 1 labels every block with :func:`florin._kernels.label.label` and writes
*provisional* ids ``local + offset`` of its outer layers (one voxel thick, on
every face inside the volume) into a zero-filled scratch volume, where
``offset`` is the number of voxels of the blocks before it (so blocks never
need each other's counts and ids stay unique and below the volume's size).
Only those layers are ever written, so the scratch volume stays sparse: a
voxel next to another block's voxel lies on such a layer. Pass 2 reads the
one-voxel shells on both sides of every block face (extended by one voxel on
the other axes, which covers edges and corners for any box partition) and
collects the touching id pairs; voxels off the layers read as background and
pair with nothing, and they only ever touch voxels of their own block. The
parent unions the pairs, renumbers the components in raster order of their
first voxel, and pass 3 labels every block again (the kernel is
deterministic, so it numbers the block as pass 1 did) and writes the final
labels into ``out``. Labelling a block twice costs less than writing and
reading back 4 or 8 bytes a voxel of provisional ids.
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
from florin._kernels._alloc import empty
from florin.blockwise._arrays import Sink, Source
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


def _local_labels(mask, block, connectivity, invert):
    """The block's own labels (of its zeros with ``invert``) and their count."""
    data = mask[block]
    return _klabel.label(data == 0 if invert else data, connectivity)


def _outer_layers(block, shape):
    """The one-voxel layers of ``block`` on its faces inside the volume: ``(within the block, within the volume)``."""
    layers = []
    for a, (s, n) in enumerate(zip(block, shape, strict=True)):
        for at, inside in ((s.start, s.start > 0), (s.stop - 1, s.stop < n)):
            if inside:
                local = tuple(slice(at - s.start, at - s.start + 1) if b == a else slice(None) for b in range(len(shape)))
                layers.append((local, block[:a] + (slice(at, at + 1),) + block[a + 1 :]))
    return layers


def _label_block(mask, work, connectivity, shape, invert, count, task):
    """Pass 1: label one block, write the provisional ids of its outer layers.

    Returns ``(n, first, pending writes, voxels per id or None)``.
    """
    block, offset = task
    local, n = _local_labels(mask, block, connectivity, invert)
    first = _klabel.first_flat_index(local, n, origin=[s.start for s in block], shape=shape)
    sizes = _ksizes.label_sizes(local)[1:] if count else None
    writes = [work.put(where, _kids.shift(local[layer], offset, work.dtype)) for layer, where in _outer_layers(block, shape)]
    return n, first, writes, sizes


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


def _relabel_block(mask, out, connectivity, invert, task):
    """Pass 3: one block labelled again, its labels made final (``final[local]``, 0 stays 0); the pending write."""
    block, final = task
    data = mask[block]
    target = out.writable(block)  # a block of a memory map (or of an array in this process): written in place
    if target is not None and _klabel._rows_view(target) is None:
        target = None  # cut along its last axes: its rows are not runs of the array
    into = target if target is not None else empty(data.shape, out.dtype)
    try:
        _klabel.label_into(data == 0 if invert else data, into, connectivity, relabel=final)
    except ValueError as exc:  # another count than pass 1's: the block's data changed between the passes
        raise RuntimeError(f"blockwise label: block {block} was numbered differently in pass 1 ({exc})") from None
    return None if target is not None else out.put(block, into)


@contextlib.contextmanager
def _provisional(shape, scratch):
    """A zero-filled volume for the provisional ids of the blocks' outer layers.

    What ``scratch(shape, dtype)`` allocates (zeroed here when it is held in
    memory; a new memory map is a sparse file of zeros), or a temporary
    memory map removed afterwards. Only the blocks' outer layers are written,
    so a memory map stays mostly unwritten, and process workers map it again.
    """
    dtype = _klabel.label_dtype(math.prod(shape))
    if scratch is not None:
        work = scratch(tuple(shape), dtype)
        if not isinstance(work, np.memmap):
            work[...] = 0
        yield work
        return
    with tempfile.TemporaryDirectory(prefix="florin-blockwise-") as tmp:
        work = np.lib.format.open_memmap(Path(tmp) / "provisional.npy", mode="w+", dtype=dtype, shape=shape)
        try:
            yield work
        finally:
            del work


def _label_into(mask, out, blocks, connectivity, map, what, invert=False, count=False, scratch=None):
    """Blockwise labels of ``mask`` (or of its zeros with ``invert``) into ``out``; returns N.

    ``scratch(shape, dtype)`` allocates the provisional ids (see :func:`_provisional`).

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
    with _provisional(shape, scratch) as work:
        sink, work_sink = Sink(out), Sink(work)
        step1 = functools.partial(_label_block, Source(mask), work_sink, connectivity, shape, invert, count)
        counts, firsts, voxels = [], [], [np.zeros(1, np.int64)]  # voxels per dense id, 0 first
        for n, first, writes, block_voxels in map(step1, list(zip(blocks, offsets.tolist(), strict=True))):
            for pending in writes:
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
            (b, np.concatenate([[0], relabel[base + 1 : base + n + 1]]))
            for b, base, n in zip(blocks, bases.tolist(), counts, strict=True)
        ]
        for pending in map(functools.partial(_relabel_block, Source(mask), sink, connectivity, invert), tasks):
            sink.apply(pending)
    n_final = int(relabel.max()) if relabel.size else 0
    if not count:
        return n_final
    per_label = np.zeros(n_final + 1, np.int64)
    np.add.at(per_label, relabel, np.concatenate(voxels))
    per_label[0] = 0
    return n_final, per_label


def label(mask, out, *, blocks, connectivity=1, map=map, scratch=None) -> int:
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
        as the in-memory labels). Receives the final labels (from the workers
        themselves when it is a writable ``numpy.memmap``, else written by the
        parent from what they return).
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
    scratch : callable, optional
        ``scratch(shape, dtype)`` allocates the volume of provisional ids
        (only the blocks' outer layers are written to it; a memory map when
        process workers run the blocks); a temporary memory map, removed
        afterwards, when omitted.

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
    return _label_into(mask, out, blocks, connectivity, map, "blockwise.label()", scratch=scratch)
