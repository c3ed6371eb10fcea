"""Small-object and small-hole removal on plain arrays (numba).

This is the engine behind ``morphology.remove_small_objects`` and
``remove_small_holes``; it takes and returns plain arrays and never imports
xarray.

A mask is labelled run by run with florin's label kernel
(:func:`florin._kernels.label.label_runs`), which numbers components exactly
as :func:`scipy.ndimage.label` (and so scikit-image) does. The size of a
component is the sum of the lengths of its runs (a table over the components,
no label image is written), and the output is written run by run: the runs of
the components that are kept. A hole is a component of the background, so
:func:`remove_small_holes` labels the runs of background and writes the mask
with the small ones filled, which is scikit-image's
``~remove_small_objects(~mask)``.
"""

from __future__ import annotations

import numba
import numpy as np

from florin._kernels._alloc import empty
from florin._kernels._jit import jit, parallel_jit
from florin._kernels._threads import parallel_guard
from florin._kernels.label import _check_connectivity, label_runs

_CHUNK = 1 << 16

__all__ = [
    "fill_small_holes", "hole_border_max", "label_sizes", "replace_ids", "remove_labels", "remove_small_holes",
    "remove_small_objects",
]


@jit
def _run_sizes(starts, ends, runlab, n):
    sizes = np.zeros(n + 1, np.int64)
    for k in range(runlab.shape[0]):
        sizes[runlab[k]] += ends[k] - starts[k]
    return sizes


@parallel_jit
def _write_kept(out2, rowptr, starts, ends, runlab, keep, run_value):
    """Rows of ``not run_value`` with the runs of kept components set to ``run_value``."""
    rows, width = out2.shape
    other = np.uint8(1 - run_value)
    for r in numba.prange(rows):
        pos = 0
        for k in range(rowptr[r], rowptr[r + 1]):
            s = starts[k]
            e = ends[k]
            v = run_value if keep[runlab[k]] else other
            for i in range(pos, s):
                out2[r, i] = other
            for i in range(s, e):
                out2[r, i] = v
            pos = e
        for i in range(pos, width):
            out2[r, i] = other


def _filter_runs(mask, min_size, connectivity, holes):
    mask = np.asarray(mask)
    if mask.ndim == 0:
        raise ValueError("the mask needs at least one dimension")
    connectivity = _check_connectivity(connectivity, mask.ndim)
    mask = mask if mask.dtype == np.bool_ else mask != 0
    if mask.size == 0:
        return mask.copy()
    shape = mask.shape
    src = np.logical_not(mask, order="C") if holes else np.ascontiguousarray(mask)
    m2 = src.view(np.uint8).reshape(-1, shape[-1])
    out = empty(shape, np.bool_)
    with parallel_guard():
        runs = label_runs(m2, shape, connectivity)
        if runs is None:  # nothing to remove (objects) or to fill (holes)
            out[...] = holes
            return out
        rowptr, starts, ends, runlab, n = runs
        keep = _run_sizes(starts, ends, runlab, n) >= min_size
        # holes: the voxels outside the runs are the mask's foreground (1), the kept (large) holes stay 0
        # and the small ones are filled with 1; objects: outside is 0 and the kept objects are 1
        run_value = np.uint8(0 if holes else 1)
        _write_kept(out.reshape(-1, shape[-1]).view(np.uint8), rowptr, starts, ends, runlab, keep, run_value)
    return out


def remove_small_objects(mask: np.ndarray, min_size: int, connectivity: int = 1) -> np.ndarray:
    """Remove the components of a mask with fewer than ``min_size`` voxels.

    Parameters
    ----------
    mask : numpy.ndarray
        Binary N-D array (nonzero is foreground).
    min_size : int
        Components smaller than this are removed.
    connectivity : int
        ``1..ndim``, as :func:`florin._kernels.label.label`.

    Returns
    -------
    numpy.ndarray of bool
        Exactly :func:`skimage.morphology.remove_small_objects` with
        ``max_size=min_size - 1`` (``min_size`` before scikit-image 0.26).

    Examples
    --------
    >>> m = np.array([[1, 0, 1, 1], [0, 0, 1, 0]], bool)
    >>> remove_small_objects(m, 2).astype(int)
    array([[0, 0, 1, 1],
           [0, 0, 1, 0]])
    """
    return _filter_runs(mask, int(min_size), connectivity, holes=False)


def remove_small_holes(mask: np.ndarray, min_size: int, connectivity: int = 1) -> np.ndarray:
    """Fill the components of a mask's background with fewer than ``min_size`` voxels.

    Parameters
    ----------
    mask : numpy.ndarray
        Binary N-D array (nonzero is foreground).
    min_size : int
        Background components smaller than this are filled (whether they touch
        the border or not, as scikit-image).
    connectivity : int
        ``1..ndim``: the connectivity of the background components.

    Returns
    -------
    numpy.ndarray of bool
        Exactly :func:`skimage.morphology.remove_small_holes` with
        ``max_size=min_size - 1`` (``area_threshold=min_size`` before 0.26).

    Examples
    --------
    >>> m = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 0]], bool)
    >>> remove_small_holes(m, 2).astype(int)
    array([[1, 1, 1],
           [1, 1, 1],
           [1, 1, 1]])
    """
    return _filter_runs(mask, int(min_size), connectivity, holes=True)


@jit
def _shifted_index(coord, offsets, o, shape):
    """Row-major index in ``shape`` of ``coord + offsets[o]`` (its first ``len(shape)`` entries), or -1 outside."""
    index = 0
    for a in range(shape.shape[0]):
        c = coord[a] + offsets[o, a]
        if c < 0 or c >= shape[a]:
            return -1
        index = index * shape[a] + c
    return index


@jit
def _runs_border_max(labels2, lead_shape, rowptr, starts, ends, runlab, small, offsets, table):
    """``table[h]``: the largest label next to the runs of each small hole ``h`` (``small[h]``), at least 0."""
    rows, width = labels2.shape
    nlead = lead_shape.shape[0]
    coord = np.zeros(nlead, np.int64)
    for r in range(rows):
        for k in range(rowptr[r], rowptr[r + 1]):
            h = runlab[k]
            if not small[h]:
                continue
            best = table[h]
            for o in range(offsets.shape[0]):
                row = _shifted_index(coord, offsets, o, lead_shape)
                if row < 0:
                    continue
                lo = max(starts[k] + offsets[o, nlead], 0)
                hi = min(ends[k] + offsets[o, nlead], width)
                for i in range(lo, hi):
                    if labels2[row, i] > best:
                        best = labels2[row, i]
            table[h] = best
        for a in range(nlead - 1, -1, -1):  # the next row's coordinates on the leading axes
            coord[a] += 1
            if coord[a] < lead_shape[a]:
                break
            coord[a] = 0


@parallel_jit
def _fill_small_runs(out2, rowptr, starts, ends, runlab, small, table):
    for r in numba.prange(out2.shape[0]):
        for k in range(rowptr[r], rowptr[r + 1]):
            h = runlab[k]
            if small[h]:
                for i in range(starts[k], ends[k]):
                    out2[r, i] = table[h]


def fill_small_holes(labels: np.ndarray, min_size: int, connectivity: int = 1) -> np.ndarray:
    """Fill the background components of a label image with fewer than ``min_size`` voxels.

    A filled hole takes the largest label bordering it (its neighbourhood at
    ``connectivity``, clipped at the edges; at least 0), so labels are kept; a
    mask goes to :func:`remove_small_holes`. The background is labelled run
    by run (no hole label image), and only the runs of small holes are read
    around and written.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer N-D label image (0 is background).
    min_size : int
        Holes smaller than this are filled.
    connectivity : int
        ``1..ndim``: the connectivity of the holes and of their borders.

    Returns
    -------
    numpy.ndarray
        A new label image of ``labels``' dtype.

    Examples
    --------
    >>> fill_small_holes(np.array([[2, 2, 2, 0], [2, 0, 3, 0]], np.uint8), 2)
    array([[2, 2, 2, 0],
           [2, 3, 3, 0]], dtype=uint8)
    """
    out = np.array(labels, order="C")
    if out.ndim == 0:
        raise ValueError("the label image needs at least one dimension")
    connectivity = _check_connectivity(connectivity, out.ndim)
    if out.size == 0:
        return out
    shape = out.shape
    background = out == 0
    with parallel_guard():
        runs = label_runs(background.view(np.uint8).reshape(-1, shape[-1]), shape, connectivity)
        if runs is None:
            return out
        rowptr, starts, ends, runlab, n = runs
        small = _run_sizes(starts, ends, runlab, n) < min_size
        small[0] = False
        if not small.any():
            return out
        grid = np.indices((3,) * out.ndim).reshape(out.ndim, -1).T - 1
        moved = (grid != 0).sum(axis=1)  # generate_binary_structure: at most `connectivity` axes move
        offsets = np.ascontiguousarray(grid[(moved > 0) & (moved <= connectivity)], np.int64)
        table = np.zeros(n + 1, out.dtype)
        out2 = out.reshape(-1, shape[-1])
        _runs_border_max(out2, np.array(shape[:-1], np.int64), rowptr, starts, ends, runlab, small, offsets, table)
        _fill_small_runs(out2, rowptr, starts, ends, runlab, small, table)
    return out


@parallel_jit
def _sizes_blocks(flat, n, bounds):
    nb = bounds.shape[0] - 1
    parts = np.zeros((nb, n + 1), np.int64)
    for b in numba.prange(nb):
        for i in range(bounds[b], bounds[b + 1]):
            parts[b, flat[i]] += 1
    return parts


@parallel_jit
def _drop(flat, out, drop):
    for i in numba.prange(flat.shape[0]):
        v = flat[i]
        out[i] = 0 if drop[v] else v


def label_sizes(labels: np.ndarray) -> np.ndarray:
    """Voxel count of every label ``0..labels.max()`` of a non-negative integer label image.

    Parameters
    ----------
    labels : numpy.ndarray
        Non-negative integers.

    Returns
    -------
    numpy.ndarray
        ``np.bincount(labels.ravel())`` as int64, computed in parallel blocks
        without an ``intp`` copy of the labels.

    Examples
    --------
    >>> label_sizes(np.array([[0, 2], [2, 2]], np.uint16))
    array([1, 0, 3])
    """
    flat = np.ascontiguousarray(labels).reshape(-1)
    if flat.size == 0:
        return np.zeros(1, np.int64)
    n = int(flat.max())
    nb = max(1, min(numba.get_num_threads(), flat.size // 1_000_000))
    if nb * (n + 1) * 8 > flat.nbytes // 2:  # per-block tables must stay small next to the labels
        nb = 1
    bounds = np.linspace(0, flat.size, nb + 1).round().astype(np.int64)
    with parallel_guard():
        return _sizes_blocks(flat, n, bounds).sum(axis=0)


def remove_labels(labels: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """``labels`` with the labels where ``drop`` is True set to 0 (``drop`` indexed by label).

    Examples
    --------
    >>> remove_labels(np.array([1, 2, 3], np.uint8), np.array([False, False, True, False]))
    array([1, 0, 3], dtype=uint8)
    """
    src = np.ascontiguousarray(labels)
    out = empty(src.shape, src.dtype)
    with parallel_guard():
        _drop(src.reshape(-1), out.reshape(-1), np.ascontiguousarray(drop, np.bool_))
    return out


@jit
def _border_max(holes, table, data, shape, offsets, lo, hi):
    """(hole id, largest neighbour value) for each voxel in ``[lo, hi)`` whose hole ``table`` selects."""
    nd = shape.shape[0]
    strides = np.ones(nd, np.int64)
    for a in range(nd - 2, -1, -1):
        strides[a] = strides[a + 1] * shape[a + 1]
    limit = table.shape[0]
    count = 0
    for i in range(holes.shape[0]):
        h = holes[i]
        if h < limit and table[h]:
            count += 1
    ids = np.empty(count, np.int64)
    vals = np.zeros(count, data.dtype)
    coord = np.empty(nd, np.int64)
    k = 0
    for i in range(holes.shape[0]):
        h = holes[i]
        if not (h < limit and table[h]):
            continue
        rest = i
        inside = True
        for a in range(nd):
            coord[a] = rest // strides[a]
            rest -= coord[a] * strides[a]
            if coord[a] < lo[a] or coord[a] >= hi[a]:
                inside = False
        if not inside:
            continue
        best = data[i]
        for o in range(offsets.shape[0]):
            j = _shifted_index(coord, offsets, o, shape)
            if j >= 0 and data[j] > best:
                best = data[j]
        ids[k] = h
        vals[k] = best
        k += 1
    return ids[:k], vals[:k]


def hole_border_max(holes, fill, data, connectivity, core=None):
    """Per voxel of a selected hole: its hole id and the largest value of ``data`` in its neighbourhood.

    The neighbourhood is ``scipy.ndimage.generate_binary_structure(ndim,
    connectivity)`` around the voxel, clipped at the array's edges (what
    ``maximum_filter``'s default ``reflect`` mode gives for that footprint),
    so the largest value over a hole's voxels is scipy's
    ``maximum(maximum_filter(data, footprint), labels=holes, index=fill)``.

    Parameters
    ----------
    holes : numpy.ndarray
        Non-negative integer labels of the holes.
    fill : numpy.ndarray
        Hole ids to report (others are skipped).
    data : numpy.ndarray
        Values of the same shape (the label image around the holes).
    connectivity : int
        ``1..ndim``.
    core : tuple of slice, optional
        Report only voxels inside this box (the rest is context).

    Returns
    -------
    ids, values : numpy.ndarray
        One entry per reported voxel (reduce with ``np.maximum.at``).

    Examples
    --------
    >>> data = np.array([[0, 3, 0, 0], [5, 0, 0, 2]], np.uint8)
    >>> holes = np.array([[1, 0, 2, 2], [0, 2, 2, 0]], np.uint8)
    >>> hole_border_max(holes, np.array([2]), data, 1)
    (array([2, 2, 2, 2]), array([3, 2, 5, 2], dtype=uint8))
    """
    holes, data = np.ascontiguousarray(holes), np.ascontiguousarray(data)
    nd = holes.ndim
    connectivity = _check_connectivity(connectivity, nd)
    fill = np.asarray(fill).reshape(-1)
    table = np.zeros(int(fill.max()) + 1 if fill.size else 0, np.bool_)
    table[fill] = True
    grid = np.indices((3,) * nd).reshape(nd, -1).T - 1
    nonzero = (grid != 0).sum(axis=1)  # generate_binary_structure: at most `connectivity` axes move
    offsets = np.ascontiguousarray(grid[(nonzero > 0) & (nonzero <= connectivity)], np.int64)
    shape = np.array(holes.shape, np.int64)
    core = core or tuple(slice(0, n) for n in holes.shape)
    lo = np.array([s.start for s in core], np.int64)
    hi = np.array([s.stop for s in core], np.int64)
    return _border_max(holes.reshape(-1), table, data.reshape(-1), shape, offsets, lo, hi)


@parallel_jit
def _replace(data, ids, table, values, out):
    n = data.shape[0]
    limit = table.shape[0]
    for c in numba.prange((n + _CHUNK - 1) // _CHUNK):
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            k = ids[i]
            out[i] = values[table[k]] if k < limit and table[k] >= 0 else data[i]


def replace_ids(data, ids, which, values):
    """``data`` with the voxels whose id (in ``ids``) is ``which[j]`` set to ``values[j]``, as a new array.

    Parameters
    ----------
    data : numpy.ndarray
        The values kept elsewhere.
    ids : numpy.ndarray
        Non-negative integer ids of the same shape.
    which : numpy.ndarray
        Distinct ids to replace.
    values : numpy.ndarray or scalar
        Their new values (one per id, or one for all), cast to ``data``'s dtype.

    Examples
    --------
    >>> replace_ids(np.array([5, 6, 7]), np.array([1, 2, 3]), np.array([3, 1]), np.array([0, 9]))
    array([9, 6, 0])
    """
    data, ids = np.ascontiguousarray(data), np.ascontiguousarray(ids)
    which = np.asarray(which, np.int64).reshape(-1)
    values = np.broadcast_to(np.asarray(values, data.dtype), which.shape) if which.size else np.zeros(1, data.dtype)
    table = np.full(int(which.max()) + 1 if which.size else 0, -1, np.int32)  # id -> row in values
    table[which] = np.arange(which.size)
    out = empty(data.shape, data.dtype)
    if data.size:
        with parallel_guard():
            _replace(data.reshape(-1), ids.reshape(-1), table, np.ascontiguousarray(values), out.reshape(-1))
    return out
