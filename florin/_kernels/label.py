"""Connected-component labeling of binary N-D arrays (plain numpy + numba).

This is the engine behind ``conncomp.label``; it takes and returns plain
arrays and never imports xarray.

Algorithm
---------
Run-length based two-pass labeling over the rows (lines along the last axis)
of the C-contiguous mask:

1. every row is scanned for runs of foreground (parallel over rows);
2. each run is unioned with the overlapping runs of the rows in the
   *backward* half of its neighbourhood (rows that come earlier in raster
   order), using a union-find whose root is always the smallest run index,
   so the root of a component is its first run in raster order;
3. runs are numbered in order: a root gets the next label, any other run the
   label of its parent (already numbered), which gives labels ``1..N`` in
   raster order of first appearance, exactly like
   :func:`scipy.ndimage.label`;
4. the label image is written row by row (parallel over rows).

Connectivity follows :func:`scipy.ndimage.generate_binary_structure`:
connectivity ``k`` (``1 <= k <= ndim``) connects voxels whose offset has at
most ``k`` nonzero components, each of them ``-1``, ``0`` or ``1``. ``1`` is
face connectivity (6 in 3-D), ``ndim`` full connectivity (26 in 3-D).

Tiled labeling
--------------
A volume can be labeled tile by tile and then merged, with a result that is
*identical* to :func:`label` on the whole volume. :class:`florin.conncomp.LabelJoin`
(the join of labelled tiles in a pipeline) implements it; the recipe, for tiles that partition the volume
(each voxel belongs to exactly one tile, the tile *core*), is:

1. Label each tile independently: ``local, n_t = label(tile_mask, c)``.
2. Make the labels globally unique: give tile ``t`` a base
   ``base_t = n_0 + ... + n_{t-1}`` and use the provisional id
   ``local + base_t`` for its nonzero voxels (0 stays background). Let
   ``n = sum(n_t)``.
3. Record, for every provisional id, the global raster index of its first
   voxel: ``first_t = first_flat_index(local, n_t, origin=tile_origin,
   shape=volume_shape)`` and concatenate them in base order (entry ``p - 1``
   is provisional id ``p``).
4. Collect the pairs of provisional ids that touch across tile boundaries with
   :func:`boundary_pairs`. For each tile and each axis ``a`` along which the
   tile has a neighbour *after* it (its core ends at ``e < shape[a]``), take
   the two layers ``e - 1`` and ``e`` along ``a`` of the provisional-id volume,
   restricted on every other axis to the tile's core extent **extended by one
   voxel on each side** (clipped to the volume), and call
   ``boundary_pairs(layer_lo, layer_hi, c)``. The extension is what covers
   edges and corners: two adjacent voxels ``u``, ``v`` in different tiles
   differ in tile index along at least one axis ``a``, so they straddle a
   tile boundary plane along ``a``; the tile holding the voxel on the low
   side of that plane sees the pair, because the other coordinates of its
   partner are within one voxel of its own core. (Equivalently, and simpler
   when the whole provisional volume is at hand: for every axis and every
   tile boundary position ``e`` along it, pass the two *full* hyperplanes
   ``e - 1`` and ``e``.) Only the one-voxel shell of labels around a tile's
   core is needed, never the mask of the neighbours. Duplicate pairs are
   harmless.
5. ``relabel = merge_pairs(np.concatenate(all_pairs), n)`` maps every
   provisional id to a component id ``1..M`` (0 to 0).
6. ``relabel = renumber_by_first_voxel(relabel, first)`` renumbers the
   components in raster order of their first voxel, so that the result is
   identical to the whole-volume :func:`label` (skip this step if equality up
   to renumbering is enough).
7. Write ``relabel[local + base_t]`` (background stays 0) into each tile's
   core of the output, in the dtype given by :func:`label_dtype` of the
   *whole* volume's size.
"""

from __future__ import annotations

import itertools

import numba
import numpy as np

from florin._kernels._alloc import empty
from florin._kernels._jit import jit, parallel_jit
from florin._kernels._rows import next_row, row_index
from florin._kernels._threads import parallel_guard

__all__ = [
    "label",
    "label_into",
    "label_dtype",
    "merge_pairs",
    "boundary_pairs",
    "first_flat_index",
    "renumber_by_first_voxel",
]

_UINT32_MAX = 2**32 - 1
_PARALLEL_MIN_RUNS = 100_000  # fewer runs: union-find in one block


def label_dtype(size: int) -> np.dtype:
    """Return the label dtype used for a volume of ``size`` voxels.

    ``uint32`` unless the volume has more than ``2**32 - 1`` voxels (so more
    components than ``uint32`` can count are possible), then ``uint64``.
    Depending on the size only (not on the number of objects found) keeps the
    dtype of a tiled labeling equal to that of a whole-volume labeling.

    Examples
    --------
    >>> label_dtype(512**3)
    dtype('uint32')
    """
    return np.dtype(np.uint32 if size <= _UINT32_MAX else np.uint64)


def _check_connectivity(connectivity, ndim):
    if isinstance(connectivity, bool) or not isinstance(connectivity, (int, np.integer)):
        raise TypeError(f"connectivity must be an integer, got {connectivity!r}")
    connectivity = int(connectivity)
    if not 1 <= connectivity <= max(ndim, 1):
        raise ValueError(f"connectivity must be between 1 and {max(ndim, 1)} for a {ndim}-D array, got {connectivity}")
    return connectivity


def _row_offsets(lead_shape, connectivity):
    """Backward neighbour rows of a row, for the leading (non-row) axes.

    Returns ``(offsets, ext)``: ``offsets`` is (k, nlead) int64 with the
    offsets of neighbouring rows that come earlier in raster order, ``ext`` is
    (k,) int64, 1 if the runs may also touch diagonally along the row axis
    (the offset uses fewer than ``connectivity`` nonzero components), else 0.
    """
    nlead = len(lead_shape)
    offs, ext = [], []
    for d in itertools.product((-1, 0, 1), repeat=nlead):
        nz = [v for v in d if v != 0]
        if not nz or nz[0] != -1:  # same row, or later in raster order
            continue
        m = len(nz)
        if m > connectivity:
            continue
        offs.append(d)
        ext.append(1 if m < connectivity else 0)
    offsets = np.array(offs, dtype=np.int64).reshape(len(offs), nlead)
    return offsets, np.array(ext, dtype=np.int64)


def _flat_offsets(offsets, lead_shape):
    strides = np.ones(len(lead_shape), np.int64)
    for a in range(len(lead_shape) - 2, -1, -1):
        strides[a] = strides[a + 1] * lead_shape[a + 1]
    return (offsets * strides).sum(axis=1).astype(np.int64) if len(offsets) else np.zeros(0, np.int64)


def _row_blocks(lead_shape, nruns):
    """Row bounds of the blocks unioned in parallel (whole first-axis slices)."""
    rows = int(np.prod(lead_shape)) if lead_shape else 1
    if not lead_shape:
        return np.array([0, rows], np.int64)
    slab = rows // lead_shape[0]
    nthreads = numba.get_num_threads()
    if nthreads < 2 or nruns < _PARALLEL_MIN_RUNS or lead_shape[0] < 2:
        return np.array([0, rows], np.int64)
    nb = min(nthreads, lead_shape[0])
    cuts = np.linspace(0, lead_shape[0], nb + 1).round().astype(np.int64) * slab
    return np.unique(cuts)


# --------------------------------------------------------------------------
# numba kernels
# --------------------------------------------------------------------------


@parallel_jit
def _count_runs(m2, counts):
    rows, width = m2.shape
    for r in numba.prange(rows):
        c = 0
        prev = np.uint8(0)
        for i in range(width):
            v = m2[r, i]
            c += v > prev
            prev = v
        counts[r] = c


@parallel_jit
def _fill_runs(m2, rowptr, starts, ends):
    rows, width = m2.shape
    for r in numba.prange(rows):
        k = rowptr[r]
        prev = np.uint8(0)
        for i in range(width):
            v = m2[r, i]
            if v != prev:
                if v:
                    starts[k] = i
                else:
                    ends[k] = i
                    k += 1
                prev = v
        if prev:
            ends[k] = width


@jit
def _find(parent, x):
    while parent[x] != x:
        p = parent[parent[x]]
        parent[x] = p
        x = p
    return x


@jit
def _union_rows(lead_shape, offsets, flat, ext, rowptr, starts, ends, parent, r0, r1, rmin, rmax):
    """Union the runs of rows ``r0..r1-1`` with the overlapping runs of their
    backward neighbour rows ``rr`` with ``rmin <= rr < rmax``.

    The union-find root of a set is always its smallest run index, so
    ``parent[i] <= i``.
    """
    nlead = lead_shape.shape[0]
    noff = offsets.shape[0]
    idx = row_index(lead_shape, r0)
    for r in range(r0, r1):
        i0 = rowptr[r]
        i1 = rowptr[r + 1]
        if i1 > i0:
            for j in range(noff):
                rr = r + flat[j]
                if rr < rmin or rr >= rmax:
                    continue
                ok = True
                for a in range(nlead):
                    q = idx[a] + offsets[j, a]
                    if q < 0 or q >= lead_shape[a]:
                        ok = False
                        break
                if not ok:
                    continue
                k = rowptr[rr]
                k1 = rowptr[rr + 1]
                e = ext[j]
                i = i0
                while i < i1 and k < k1:
                    e1 = ends[i]
                    e2 = ends[k]
                    if starts[i] < e2 + e and starts[k] < e1 + e:
                        rb = _find(parent, k)
                        if parent[i] == i:
                            # i is still its own root: k < i, so rb < i
                            parent[i] = rb
                        else:
                            ra = _find(parent, i)
                            if ra < rb:
                                parent[rb] = ra
                            elif rb < ra:
                                parent[ra] = rb
                    if e1 < e2:
                        i += 1
                    elif e2 < e1:
                        k += 1
                    else:
                        i += 1
                        k += 1
        next_row(idx, lead_shape)


@parallel_jit
def _union_blocks(lead_shape, offsets, flat, ext, rowptr, starts, ends, parent, bounds):
    """Union in independent row blocks (in parallel), then across block starts.

    ``bounds`` are row indices at multiples of the rows per index of the first
    leading axis, so only the first slice of a block has neighbours outside it.
    """
    nb = bounds.shape[0] - 1
    for b in numba.prange(nb):
        _union_rows(
            lead_shape,
            offsets,
            flat,
            ext,
            rowptr,
            starts,
            ends,
            parent,
            bounds[b],
            bounds[b + 1],
            bounds[b],
            bounds[b + 1],
        )
    slab = 1
    for a in range(1, lead_shape.shape[0]):
        slab *= lead_shape[a]
    for b in range(1, nb):
        r0 = bounds[b]
        _union_rows(
            lead_shape,
            offsets,
            flat,
            ext,
            rowptr,
            starts,
            ends,
            parent,
            r0,
            min(r0 + slab, bounds[b + 1]),
            0,
            r0,
        )


@jit
def _number_runs(parent, runlab):
    """Number components 1..N in order of their first run (parent[i] <= i)."""
    n = 0
    for i in range(parent.shape[0]):
        p = parent[i]
        if p == i:
            n += 1
            runlab[i] = n
        else:
            runlab[i] = runlab[p]
    return n


@parallel_jit
def _write_labels(out3, rowptr, starts, ends, runlab):
    """Rows ``r`` of the runs into ``out3[r // m, r % m]`` (``out3`` of shape ``(k, m, width)``), 0 between runs."""
    _, m, width = out3.shape
    for r in numba.prange(out3.shape[0] * m):
        row = out3[r // m, r % m]
        pos = 0
        for k in range(rowptr[r], rowptr[r + 1]):
            s = starts[k]
            e = ends[k]
            for i in range(pos, s):
                row[i] = 0
            v = runlab[k]
            for i in range(s, e):
                row[i] = v
            pos = e
        for i in range(pos, width):
            row[i] = 0


def _rows_view(out):
    """``out`` as a ``(k, m, width)`` view of its unit-stride rows (no copy), or None when they do not line up so."""
    if out.ndim == 1:
        return out.reshape(1, 1, -1)
    if out.strides[-1] != out.itemsize:
        return None
    view = out.view()
    try:
        view.shape = (out.shape[0], -1, out.shape[-1])  # raises rather than copy
    except AttributeError:
        return None
    return view


def label(mask: np.ndarray, connectivity: int = 1) -> tuple[np.ndarray, int]:
    """Label the connected components of a binary N-D array.

    Parameters
    ----------
    mask : numpy.ndarray
        Binary array of any dimension >= 1; nonzero is foreground.
    connectivity : int
        ``1 <= connectivity <= mask.ndim``: voxels are neighbours when their
        offset has at most ``connectivity`` nonzero components (scipy
        semantics: 1 = faces, ``ndim`` = faces, edges and corners).

    Returns
    -------
    labels : numpy.ndarray
        Same shape as ``mask``, 0 for background and ``1..N`` for the
        components, numbered in raster (C) order of their first voxel, exactly
        as :func:`scipy.ndimage.label` with
        ``generate_binary_structure(ndim, connectivity)``. dtype is
        :func:`label_dtype` of ``mask.size`` (``uint32`` below 2**32 voxels).
    n : int
        Number of components ``N``.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.array([[1, 1, 0, 0],
    ...               [0, 0, 1, 0],
    ...               [1, 0, 0, 1]], dtype=bool)
    >>> labels, n = label(m, 1)
    >>> n
    4
    >>> labels
    array([[1, 1, 0, 0],
           [0, 0, 2, 0],
           [3, 0, 0, 4]], dtype=uint32)
    >>> label(m, 2)[1]
    2
    """
    mask = np.asarray(mask)
    if mask.ndim == 0:
        raise ValueError("label needs an array with at least one dimension")
    connectivity = _check_connectivity(connectivity, mask.ndim)
    shape = mask.shape
    dtype = label_dtype(mask.size)
    if mask.size == 0:
        return np.zeros(shape, dtype), 0
    if mask.dtype != np.bool_:
        mask = mask != 0
    m2 = np.ascontiguousarray(mask).view(np.uint8).reshape(-1, shape[-1])
    with parallel_guard():
        return _label_rows(m2, shape, dtype, connectivity)


def label_into(mask: np.ndarray, out: np.ndarray, connectivity: int = 1, relabel=None) -> int:
    """Label ``mask`` into ``out``, or write ``relabel[label]`` with a table; returns the number of labels.

    Writing runs straight into ``out`` (a writable array of the mask's shape
    and any integer dtype whose axes after the first merge into one without a
    copy, e.g. any box of a 3-D memory-mapped volume) spares a label image and
    a copy of it.

    Parameters
    ----------
    mask : numpy.ndarray
        Binary array (nonzero is foreground).
    out : numpy.ndarray
        Receives the labels, numbered as :func:`label` numbers them (a
        ValueError when its layout is not as above).
    connectivity : int
        As for :func:`label`.
    relabel : numpy.ndarray, optional
        ``n + 1`` values (``relabel[0]`` is 0): label ``k`` is written as
        ``relabel[k]``. Another count of labels is a ValueError, and nothing
        is written.

    Examples
    --------
    >>> out = np.full((2, 3), 9, np.int64)
    >>> label_into(np.array([[1, 0, 1], [1, 0, 0]], bool), out, relabel=np.array([0, 5, 7]))
    2
    >>> out
    array([[5, 0, 7],
           [5, 0, 0]])
    """
    mask = np.asarray(mask)
    if mask.ndim == 0:
        raise ValueError("label_into needs an array with at least one dimension")
    rows = _rows_view(out) if out.shape == mask.shape and out.flags.writeable else None
    if rows is None:
        raise ValueError(f"out must be a writable array of shape {mask.shape} with unit-stride rows whose axes after "
                         "the first merge without a copy (a C-contiguous array or a box of a 3-D one)")
    connectivity = _check_connectivity(connectivity, mask.ndim)
    shape = mask.shape
    if mask.dtype != np.bool_:
        mask = mask != 0
    m2 = np.ascontiguousarray(mask).view(np.uint8).reshape(-1, shape[-1]) if mask.size else None
    with parallel_guard():
        runs = label_runs(m2, shape, connectivity) if mask.size else None
        n = 0 if runs is None else runs[4]
        if relabel is not None and len(relabel) != n + 1:
            raise ValueError(f"relabel has {len(relabel)} entries for {n} labels (it needs {n + 1})")
        if runs is None:
            out[...] = 0
            return 0
        rowptr, starts, ends, runlab, n = runs
        values = runlab if relabel is None else np.asarray(relabel)[runlab]
        _write_labels(rows, rowptr, starts, ends, values.astype(out.dtype, copy=False))
    return n


def _label_rows(m2, shape, dtype, connectivity):
    out = empty(shape, dtype)
    runs = label_runs(m2, shape, connectivity, dtype)
    if runs is None:
        out[...] = 0
        return out, 0
    rowptr, starts, ends, runlab, n = runs
    _write_labels(out.reshape(1, -1, shape[-1]), rowptr, starts, ends, runlab)
    return out, n


def label_runs(m2, shape, connectivity, dtype=np.uint32):
    """Label the runs of a (rows, width) ``uint8`` view of a C-contiguous mask of ``shape``.

    The caller holds :func:`~florin._kernels._threads.parallel_guard`.

    Returns
    -------
    tuple or None
        ``(rowptr, starts, ends, runlab, n)``: row ``r`` has the runs
        ``rowptr[r]:rowptr[r + 1]``, run ``k`` covers ``starts[k]:ends[k]`` of
        its row and has the label ``runlab[k]`` (``1..n``, numbered as
        :func:`label` numbers them). None when the mask is empty.
    """
    lead_shape = np.array(shape[:-1], dtype=np.int64)
    rows = m2.shape[0]
    counts = empty(rows, np.int64)
    _count_runs(m2, counts)
    rowptr = np.zeros(rows + 1, np.int64)
    np.cumsum(counts, out=rowptr[1:])
    nruns = int(rowptr[-1])
    if nruns == 0:
        return None
    # int32 run bookkeeping when it fits (halves memory traffic)
    idx_t = np.int32 if nruns < 2**31 - 1 else np.int64
    pos_t = np.int32 if shape[-1] < 2**31 - 1 else np.int64
    starts = empty(nruns, pos_t)
    ends = empty(nruns, pos_t)
    _fill_runs(m2, rowptr, starts, ends)

    parent = np.arange(nruns, dtype=idx_t)
    offsets, ext = _row_offsets(shape[:-1], connectivity)
    flat = _flat_offsets(offsets, shape[:-1])
    _union_blocks(
        lead_shape,
        offsets,
        flat,
        ext,
        rowptr,
        starts,
        ends,
        parent,
        _row_blocks(shape[:-1], nruns),
    )
    runlab = empty(nruns, dtype)
    n = int(_number_runs(parent, runlab))
    return rowptr, starts, ends, runlab, n


# --------------------------------------------------------------------------
# tiled merging helpers
# --------------------------------------------------------------------------


@jit
def _merge_pairs(pairs, n, parent):
    for i in range(pairs.shape[0]):
        a = pairs[i, 0]
        b = pairs[i, 1]
        if a == 0 or b == 0:
            continue
        ra = _find(parent, a)
        rb = _find(parent, b)
        if ra < rb:
            parent[rb] = ra
        elif rb < ra:
            parent[ra] = rb


@jit
def _number_roots(parent, out):
    m = 0
    for i in range(1, parent.shape[0]):
        r = _find(parent, i)
        if r == i:
            m += 1
            out[i] = m
        else:
            out[i] = out[r]
    return m


def merge_pairs(pairs: np.ndarray, n: int) -> np.ndarray:
    """Union-find over label pairs; return a sequential relabel map.

    Parameters
    ----------
    pairs : numpy.ndarray
        ``(k, 2)`` integer array of label pairs that belong to the same
        component (e.g. from :func:`boundary_pairs`). Pairs with a 0 are
        ignored; duplicates are harmless. Labels must be ``<= n``.
    n : int
        Largest label.

    Returns
    -------
    relabel : numpy.ndarray
        Array of length ``n + 1`` with ``relabel[0] == 0`` and labels
        ``1..n`` mapped to component ids ``1..M``, numbered in increasing
        order of the smallest label of each component. dtype is ``uint32`` if
        ``n <= 2**32 - 1`` else ``uint64``. ``M = relabel.max()``. Apply it
        with ``relabel[labels]``.

    Examples
    --------
    >>> import numpy as np
    >>> merge_pairs(np.array([[4, 2], [5, 4]], dtype=np.uint64), 5)
    array([0, 1, 2, 3, 2, 2], dtype=uint32)
    """
    n = int(n)
    pairs = np.asarray(pairs)
    if pairs.size == 0:
        pairs = np.zeros((0, 2), np.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(f"pairs must have shape (k, 2), got {pairs.shape}")
    pairs = pairs.astype(np.int64, copy=False)
    if pairs.shape[0] and (pairs.min() < 0 or pairs.max() > n):
        raise ValueError(f"pairs contain labels outside 0..{n}")
    parent = np.arange(n + 1, dtype=np.int64)
    _merge_pairs(pairs, n, parent)
    out = np.zeros(n + 1, np.uint32 if n <= _UINT32_MAX else np.uint64)
    _number_roots(parent, out)
    return out


def boundary_pairs(labels_a_face: np.ndarray, labels_b_face: np.ndarray, connectivity: int) -> np.ndarray:
    """Pairs of labels connected across a face between two tiles.

    Parameters
    ----------
    labels_a_face, labels_b_face : numpy.ndarray
        The two voxel layers adjacent to the face, of the same shape: the
        last layer of tile A and the first layer of tile B along the axis
        normal to the face, as ``(N-1)``-D arrays (the normal axis removed).
        Labels must be globally unique (0 = background).
    connectivity : int
        Connectivity of the full N-D labeling, ``1..N`` with ``N =
        labels_a_face.ndim + 1``. Voxel ``a[p]`` touches ``b[p + d]`` when the
        in-face offset ``d`` (entries in -1, 0, 1) has at most
        ``connectivity - 1`` nonzero entries (the step across the face is the
        remaining one): for connectivity > 1 diagonal neighbours across the
        face count.

    Returns
    -------
    pairs : numpy.ndarray
        ``(k, 2)`` ``uint64`` array of unique ``(label_a, label_b)`` pairs
        with both labels nonzero and different, sorted.

    Notes
    -----
    The layers only see diagonal partners inside their own extent. To cover
    the edges and corners between tiles, pass layers that extend one voxel
    beyond the tile's core on every in-face axis (into the neighbouring
    tiles), or whole hyperplanes of the volume; see the module docstring.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[1, 0], [0, 0]])
    >>> b = np.array([[0, 0], [0, 7]])
    >>> boundary_pairs(a, b, 1)
    array([], shape=(0, 2), dtype=uint64)
    >>> boundary_pairs(a, b, 3)
    array([[1, 7]], dtype=uint64)
    """
    a = np.asarray(labels_a_face)
    b = np.asarray(labels_b_face)
    if a.shape != b.shape:
        raise ValueError(f"face layers must have the same shape, got {a.shape} and {b.shape}")
    ndim = a.ndim + 1
    connectivity = _check_connectivity(connectivity, ndim)
    if a.ndim == 0:
        a = a.reshape(1)
        b = b.reshape(1)
    found = []
    for d in itertools.product((-1, 0, 1), repeat=a.ndim):
        if sum(v != 0 for v in d) > connectivity - 1:
            continue
        sa, sb = [], []
        for v, size in zip(d, a.shape, strict=True):
            if v >= 0:
                sa.append(slice(0, size - v))
                sb.append(slice(v, size))
            else:
                sa.append(slice(-v, size))
                sb.append(slice(0, size + v))
        la = a[tuple(sa)]
        lb = b[tuple(sb)]
        sel = (la != 0) & (lb != 0) & (la != lb)
        if sel.any():
            found.append(np.stack([la[sel], lb[sel]], axis=1).astype(np.uint64))
    if not found:
        return np.zeros((0, 2), np.uint64)
    return unique_pairs(np.concatenate(found))


def unique_pairs(pairs: np.ndarray) -> np.ndarray:
    """The distinct rows of a ``(k, 2)`` array of labels, sorted, as ``uint64``.

    ``np.unique(pairs, axis=0)`` sorts the rows as opaque byte strings, which
    is hundreds of times slower than sorting integers; a face crossed by one
    large component (the background of ``remove_small_holes``) repeats the
    same pair millions of times. So repeats of the previous row are dropped
    first, and the rows are sorted as one 64-bit key when both labels fit in
    32 bits, else with ``lexsort``.

    Examples
    --------
    >>> unique_pairs(np.array([[3, 4], [3, 4], [1, 9], [3, 4]]))
    array([[1, 9],
           [3, 4]], dtype=uint64)
    """
    pairs = _drop_repeats(np.asarray(pairs, np.uint64).reshape(-1, 2))
    if len(pairs) == 0:
        return pairs.copy()
    if int(pairs.max()) < 2**32:
        keys = np.unique((pairs[:, 0] << np.uint64(32)) | pairs[:, 1])
        return np.stack([keys >> np.uint64(32), keys & np.uint64(2**32 - 1)], axis=1)
    return _drop_repeats(pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))])


def _drop_repeats(pairs):
    """``pairs`` without the rows equal to the row before them (all repeats, once sorted)."""
    keep = np.ones(len(pairs), bool)
    keep[1:] = (pairs[1:] != pairs[:-1]).any(axis=1)
    return pairs[keep]


@jit
def _first_flat(labels2, lead_tshape, lead_origin, lead_gshape, x0, gwidth, first):
    """First global flat index of each label of a (rows, width) tile view."""
    rows, width = labels2.shape
    nlead = lead_origin.shape[0]
    idx = np.zeros(nlead, np.int64)
    for r in range(rows):
        rowbase = 0
        for a in range(nlead):
            rowbase = rowbase * lead_gshape[a] + idx[a] + lead_origin[a]
        rowbase = rowbase * gwidth + x0
        for i in range(width):
            v = labels2[r, i]
            if v != 0 and first[v - 1] < 0:
                first[v - 1] = rowbase + i
        next_row(idx, lead_tshape)


def first_flat_index(labels: np.ndarray, n: int, *, origin=None, shape=None) -> np.ndarray:
    """Global raster index of the first voxel of each label of a tile.

    Parameters
    ----------
    labels : numpy.ndarray
        Label array (a tile), labels ``1..n`` (0 = background).
    n : int
        Number of labels.
    origin : sequence of int, optional
        Position of ``labels[0, ..., 0]`` in the full volume (default zeros).
    shape : sequence of int, optional
        Shape of the full volume (default ``labels.shape``).

    Returns
    -------
    first : numpy.ndarray
        ``(n,)`` int64; ``first[l - 1]`` is the C-order flat index in the full
        volume of the first voxel of label ``l``, ``-1`` if ``l`` is absent.
        Because raster order inside a tile agrees with the global raster
        order, the minimum of these over the tiles of a merged component is
        the component's first voxel in the whole volume.

    Examples
    --------
    >>> import numpy as np
    >>> first_flat_index(np.array([[0, 2], [1, 1]]), 2, origin=(1, 1), shape=(3, 3))
    array([7, 5])
    """
    labels = np.ascontiguousarray(labels)
    nd = labels.ndim
    origin = np.zeros(nd, np.int64) if origin is None else np.asarray(origin, np.int64)
    shape = labels.shape if shape is None else tuple(int(s) for s in shape)
    first = np.full(int(n), -1, np.int64)
    if labels.size == 0 or n == 0:
        return first
    if nd == 0:
        raise ValueError("labels must have at least one dimension")
    l2 = labels.reshape(-1, labels.shape[-1])
    _first_flat(
        l2,
        np.array(labels.shape[:-1], np.int64),
        origin[:-1].copy(),
        np.array(shape[:-1], np.int64),
        int(origin[-1]),
        int(shape[-1]),
        first,
    )
    return first


def renumber_by_first_voxel(relabel: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Renumber a component map in raster order of the components' first voxel.

    Parameters
    ----------
    relabel : numpy.ndarray
        Map from provisional ids ``0..n`` to component ids ``0..M`` (as from
        :func:`merge_pairs`; ``relabel[0] == 0``).
    first : numpy.ndarray
        ``(n,)`` global flat index of the first voxel of each provisional id
        (entry ``p - 1`` for id ``p``; negative = absent), as from
        :func:`first_flat_index`.

    Returns
    -------
    numpy.ndarray
        The map composed with the renumbering: component ids ``1..M`` sorted
        by first voxel, same dtype as ``relabel``.

    Examples
    --------
    >>> import numpy as np
    >>> renumber_by_first_voxel(np.array([0, 1, 2, 1]), np.array([9, 3, 4]))
    array([0, 2, 1, 2])
    """
    relabel = np.asarray(relabel)
    first = np.asarray(first, np.int64)
    m = int(relabel.max()) if relabel.size else 0
    big = np.iinfo(np.int64).max
    comp_first = np.full(m + 1, big, np.int64)
    present = first >= 0
    comp = relabel[1:].astype(np.int64)
    np.minimum.at(comp_first, comp[present], first[present])
    order = np.argsort(comp_first[1:], kind="stable")
    rank = np.zeros(m + 1, relabel.dtype)
    rank[order + 1] = np.arange(1, m + 1, dtype=relabel.dtype)
    return rank[relabel]
