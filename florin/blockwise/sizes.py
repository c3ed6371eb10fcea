"""Blockwise size filters, equal to :mod:`florin.morphology`'s in-memory ones.

Two forms, chosen by what they read:

* *local*: a component of at most ``max_size`` voxels that meets a block lies
  within ``max_size - 1`` voxels of it on every axis, and a component that
  reaches ``max_size`` voxels beyond the block has more than ``max_size``
  voxels. So each block, extended by a halo of ``max_size`` voxels (clipped at
  the volume's edges), is filtered in memory and its core kept: exact, one
  pass, no labels written. It runs on a mask's objects and on any image's
  holes when the halos are small next to the blocks: they read at most
  :data:`LOCAL_READ_FACTOR` times the volume (the global form moves about 30
  bytes a voxel through scratch, the local one 4 for each voxel read and 4
  for each written);
* *global*: objects (or holes) are labelled blockwise into a scratch label
  volume (:func:`florin.blockwise.label`), their sizes summed over the blocks
  into one table, and a last blockwise pass masks (or fills) the small ones.
  The objects of a label image are its labels, which need not be connected,
  so they always take this form (counted per block, no scratch labels).
"""

from __future__ import annotations

import contextlib
import functools
import math
import tempfile
import warnings
from pathlib import Path

import numpy as np

from florin._kernels import sizes as _ksizes
from florin._kernels.label import label_dtype
from florin._kernels.sizes import hole_border_max, replace_ids
from florin.blockwise._arrays import Sink, Source
from florin.blockwise.label import _check_arrays, _check_connectivity, _label_into, _normalize_blocks
from florin.errors import FlorinDeprecationWarning, ParameterError
from florin.planner import recut

__all__ = ["remove_small_holes", "remove_small_objects"]


#: FLoRIN's default for the size filters: objects (holes) under 64 voxels go, i.e. ``max_size=63``.
DEFAULT_MAX_SIZE = 63

#: The local form runs when its blocks, with their halos, read at most this many times the volume's voxels.
LOCAL_READ_FACTOR = 5.0


def _check_size(name, value):
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 0:
        raise ParameterError(f"{name} must be an integer >= 0, got {value!r}")


def size_limit(max_size, min_size, what, *, warn=True, stacklevel=6) -> int:
    """The largest size a size filter removes (scikit-image 0.26's ``max_size``).

    ``max_size`` is the name (sizes at or below it go; default
    :data:`DEFAULT_MAX_SIZE`); ``min_size`` is its deprecated FLoRIN name (sizes
    below it go), accepted with a :class:`~florin.errors.FlorinDeprecationWarning`
    (unless ``warn`` is false: the warning was given when the step was built),
    ``stacklevel`` frames up: at the caller's line.
    Both given is a :class:`~florin.errors.ParameterError`.

    Examples
    --------
    >>> size_limit(None, None, "remove_small_objects()")
    63
    >>> size_limit(None, 20, "remove_small_holes()", warn=False)
    19
    >>> size_limit(19, 20, "remove_small_holes()")
    Traceback (most recent call last):
    ...
    florin.errors.ParameterError: remove_small_holes(): pass min_size (deprecated; ...) or max_size (...), not both; ...
    """
    if min_size is not None:
        if max_size is not None:
            raise ParameterError(
                f"{what}: pass min_size (deprecated; sizes below it go) or max_size (scikit-image 0.26; sizes at or "
                f"below it go), not both; got min_size={min_size!r}, max_size={max_size!r}"
            )
        _check_size("min_size", min_size)
        limit = max(int(min_size) - 1, 0)  # min_size 0 and 1 both remove nothing, as max_size=0 does
        if warn:
            warnings.warn(
                f"{what}: min_size={min_size} is deprecated; use max_size={limit} (sizes at or below max_size are "
                "removed, as in scikit-image 0.26)",
                FlorinDeprecationWarning,
                stacklevel=stacklevel,
            )
        return limit
    if max_size is None:
        return DEFAULT_MAX_SIZE
    _check_size("max_size", max_size)
    return int(max_size)


def _local_form(image, shape, blocks, min_size, scratch):
    """The extended blocks of the local form, or None: a given scratch array asks for the global form."""
    if scratch is not None and not callable(scratch):
        return None
    return _local_blocks(shape, blocks, min_size, np.dtype(image.dtype).itemsize)


@contextlib.contextmanager
def _scratch_labels(shape, scratch):
    """The label volume to use: ``scratch`` (or what it allocates), or a temporary memory map removed afterwards."""
    if callable(scratch):
        scratch = scratch(tuple(shape), label_dtype(math.prod(shape)))
    if scratch is not None:
        if tuple(scratch.shape) != tuple(shape):
            raise ParameterError(f"scratch has shape {tuple(scratch.shape)}, the input {tuple(shape)}; they must match")
        yield scratch
        return
    with tempfile.TemporaryDirectory(prefix="florin-blockwise-") as tmp:
        labels = np.lib.format.open_memmap(
            Path(tmp) / "labels.npy", mode="w+", dtype=label_dtype(math.prod(shape)), shape=tuple(shape)
        )
        try:
            yield labels
        finally:
            del labels


def _block_counts(labels, block):
    return np.unique(labels[block], return_counts=True)


def _small_ids(labels, blocks, min_size, map):
    """Nonzero ids of ``labels`` with fewer than ``min_size`` voxels over all blocks."""
    parts = list(map(functools.partial(_block_counts, Source(labels)), blocks))
    ids = np.concatenate([p[0] for p in parts])
    if ids.size and np.issubdtype(ids.dtype, np.signedinteger) and int(ids.min()) < 0:
        raise ParameterError("remove_small_objects(): labels must be >= 0 (0 is background)")
    uniq, inverse = np.unique(ids, return_inverse=True)
    sizes = np.bincount(inverse.ravel(), weights=np.concatenate([p[1] for p in parts]), minlength=uniq.size)
    return uniq[(sizes < min_size) & (uniq != 0)]


def _remove_block(image, labels, small, out, block):
    return out.put(block, replace_ids(image[block], labels[block], small, 0))


def _small_of(voxels, min_size):
    """Nonzero ids whose voxel count (``voxels[id]``) is below ``min_size``."""
    ids = np.flatnonzero(voxels < min_size)
    return ids[ids != 0]


def _hole_border_max(image, holes, fill, connectivity, block):
    """Per voxel of a filled hole in ``block``: its hole id and the largest label in its neighbourhood."""
    shape = image.shape
    ext = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(block, shape, strict=True))
    core = tuple(slice(s.start - e.start, s.stop - e.start) for s, e in zip(block, ext, strict=True))
    return hole_border_max(holes[ext], fill, image[ext], connectivity, core)


def _fill_block(image, holes, fill, values, out, block):
    """The block with the voxels of the holes ``fill`` set to ``values`` (one per hole)."""
    return out.put(block, replace_ids(image[block], holes[block], fill, values))


def _local_blocks(shape, blocks, min_size, itemsize):
    """The blocks of the local form for sizes below ``min_size``, or None when their halos would read too much.

    Re-cut (:func:`florin.planner.recut`) for what an extended block holds:
    its copy, the background mask and the runs, about ``itemsize + 2`` bytes a
    voxel.
    """
    halo = tuple(min(min_size - 1, n) for n in shape)  # max_size = min_size - 1 voxels around each block
    local = recut(shape, blocks, bytes_per_voxel=itemsize + 2, halo=halo)
    read = sum(math.prod(min(s.stop + h, n) - max(s.start - h, 0) for s, h, n in zip(b, halo, shape, strict=True))
               for b in local)
    if read > LOCAL_READ_FACTOR * math.prod(shape):
        return None
    return [(b, halo) for b in local]


def _filter_block(func, image, out, task):
    """``func`` of the block extended by its halo, its core written to ``out``; the pending write."""
    block, halo = task
    shape = image.shape
    ext = tuple(slice(max(s.start - h, 0), min(s.stop + h, n)) for s, h, n in zip(block, halo, shape, strict=True))
    core = tuple(slice(s.start - e.start, s.stop - e.start) for s, e in zip(block, ext, strict=True))
    return out.put(block, func(image[ext])[core])


def _local(func, image, out, map, tasks):
    """The local form: ``func`` (an in-memory filter of plain arrays) over the extended blocks ``tasks``."""
    _each_block(functools.partial(_filter_block, func, Source(image)), out, map, tasks)


def _each_block(func, out, map, blocks):
    """Map ``func(out_sink, block)`` over the blocks, writing in the parent what workers could not."""
    sink = Sink(out)
    for pending in map(functools.partial(func, sink), blocks):
        sink.apply(pending)


def _prepare(image, out, blocks, connectivity, max_size, min_size, what):
    """Checked arguments, with the size limit as the smallest size that is kept."""
    shape = _check_arrays(image, out, what)
    dtype = np.dtype(image.dtype)
    if dtype.kind not in "biu":
        raise ParameterError(f"{what}: the input must be a boolean mask or an integer label image, got {dtype}")
    connectivity = _check_connectivity(connectivity, len(shape), what)
    kept = size_limit(max_size, min_size, what, stacklevel=4) + 1
    return shape, _normalize_blocks(blocks, shape), connectivity, kept


def remove_small_objects(
    image, out, *, blocks, min_size=None, connectivity=1, max_size=None, scratch=None, map=map
) -> None:
    """Remove objects of at most ``max_size`` voxels, block by block.

    Equal voxel for voxel to :func:`florin.morphology.remove_small_objects`
    of the whole volume.

    Parameters
    ----------
    image : array_like
        Sliceable boolean mask (objects are its connected components) or
        integer label image (objects are its labels, which are kept). Never
        modified.
    out : array_like
        Sliceable array of the image's shape and dtype; receives the result.
    blocks : list of tuple of slice
        Boxes partitioning the volume (see :func:`florin.blockwise.label`).
    min_size : int, optional
        Deprecated name (objects smaller than it are removed), as for
        :func:`florin.morphology.remove_small_objects`.
    connectivity : int
        Neighbourhood for finding the objects of a mask (1 = faces ... ndim).
    max_size : int, optional
        Objects of this many voxels or fewer are removed (default 63).
    scratch : array_like or callable, optional
        Integer array of the image's shape for the labels of a mask (as
        ``out`` of :func:`florin.blockwise.label`): given, the global form runs
        and labels into it. Else the local form runs when its halos are
        small, and otherwise the labels go to what ``scratch(shape, dtype)``
        allocates, or (omitted) to a temporary memory map removed afterwards.
    map : callable
        ``builtins.map``-like callable the blocks are mapped with.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.zeros((6, 6), bool); mask[0, 0] = True; mask[2:5, 2:5] = True
    >>> out = np.zeros_like(mask)
    >>> remove_small_objects(mask, out, blocks=[(slice(0, 3), slice(0, 6)), (slice(3, 6), slice(0, 6))], max_size=1)
    >>> int(out.sum())
    9
    """
    what = "blockwise.remove_small_objects()"
    shape, blocks, connectivity, min_size = _prepare(image, out, blocks, connectivity, max_size, min_size, what)
    if np.dtype(image.dtype) != bool:  # a label image: its objects are its labels, connected or not
        small = _small_ids(image, blocks, min_size, map)
        _each_block(functools.partial(_remove_block, Source(image), Source(image), small), out, map, blocks)
        return
    local = _local_form(image, shape, blocks, min_size, scratch)
    if local is not None:
        func = functools.partial(_ksizes.remove_small_objects, min_size=min_size, connectivity=connectivity)
        _local(func, image, out, map, local)
        return
    with _scratch_labels(shape, scratch) as labels:
        _, voxels = _label_into(image, labels, blocks, connectivity, map, what, count=True,
                                  scratch=scratch if callable(scratch) else None)
        small = _small_of(voxels, min_size)
        _each_block(functools.partial(_remove_block, Source(image), Source(labels), small), out, map, blocks)


def remove_small_holes(
    image, out, *, blocks, min_size=None, connectivity=1, max_size=None, scratch=None, map=map
) -> None:
    """Fill holes (background components) of at most ``max_size`` voxels, block by block.

    Equal voxel for voxel to :func:`florin.morphology.remove_small_holes` of
    the whole volume: in a label image a filled hole takes the largest label
    bordering it.

    Parameters
    ----------
    image : array_like
        Sliceable boolean mask or integer label image. Never modified.
    out : array_like
        Sliceable array of the image's shape and dtype; receives the result.
    blocks : list of tuple of slice
        Boxes partitioning the volume (see :func:`florin.blockwise.label`).
    min_size : int, optional
        Deprecated name (holes smaller than it are filled), as for
        :func:`florin.morphology.remove_small_holes`.
    connectivity : int
        Neighbourhood for finding holes (1 = faces ... ndim).
    max_size : int, optional
        Holes of this many voxels or fewer are filled (default 63).
    scratch : array_like or callable, optional
        Integer array of the image's shape for the hole labels: given, the
        global form runs and labels into it. Else the local form runs when
        its halos are small, and otherwise the labels go to what
        ``scratch(shape, dtype)`` allocates, or (omitted) to a temporary
        memory map removed afterwards.
    map : callable
        ``builtins.map``-like callable the blocks are mapped with.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.ones((5, 5), bool); mask[2, 2] = False
    >>> out = np.zeros_like(mask)
    >>> remove_small_holes(mask, out, blocks=[(slice(0, 5), slice(0, 2)), (slice(0, 5), slice(2, 5))], max_size=1)
    >>> bool(out.all())
    True
    """
    what = "blockwise.remove_small_holes()"
    shape, blocks, connectivity, min_size = _prepare(image, out, blocks, connectivity, max_size, min_size, what)
    local = _local_form(image, shape, blocks, min_size, scratch)
    if local is not None:
        filled = _ksizes.remove_small_holes if np.dtype(image.dtype) == bool else _ksizes.fill_small_holes
        _local(functools.partial(filled, min_size=min_size, connectivity=connectivity), image, out, map, local)
        return
    with _scratch_labels(shape, scratch) as holes:
        _, voxels = _label_into(image, holes, blocks, connectivity, map, what, invert=True, count=True,
                                  scratch=scratch if callable(scratch) else None)
        fill = _small_of(voxels, min_size)
        values = np.ones(fill.size, bool)  # a mask: the holes become foreground
        if np.dtype(image.dtype) != bool:  # a label image: each hole takes the largest label bordering it
            values = np.zeros(fill.size, image.dtype)
            if fill.size:
                parts = list(
                    map(functools.partial(_hole_border_max, Source(image), Source(holes), fill, connectivity), blocks)
                )
                ids = np.concatenate([p[0] for p in parts])
                np.maximum.at(values, np.searchsorted(fill, ids), np.concatenate([p[1] for p in parts]))
        fill_step = functools.partial(_fill_block, Source(image), Source(holes), fill, values)
        _each_block(fill_step, out, map, blocks)
