"""Per-label region statistics on plain arrays (numba, one pass).

This is the engine behind ``conncomp.regionprops``; it takes and returns plain
arrays and never imports xarray.

The statistics of :func:`region_stats` come in a form that tiles can be
aggregated from: besides the derived values (``centroid``,
``intensity_mean``) every dict holds the sums they come from (``coord_sum``,
``intensity_sum``), and :func:`combine_stats` adds sums, takes minima of
minima and maxima of maxima, then derives the means again. A tiled caller
therefore computes ``region_stats(tile_labels, n, tile_intensity,
origin=tile_origin)`` on each tile core with *global* labels ``1..n`` (after
merging, see :mod:`florin._kernels.label`) and folds the results with
:func:`combine_stats`; the result equals :func:`region_stats` on the whole
volume (up to floating-point summation order in ``intensity_sum`` and the
means).
"""

from __future__ import annotations

import numba
import numpy as np

from florin._kernels._jit import jit, parallel_jit
from florin._kernels._rows import next_row, row_index
from florin._kernels._threads import parallel_guard

__all__ = ["region_stats", "combine_stats", "STAT_KEYS", "INTENSITY_KEYS"]

STAT_KEYS = ("label", "area", "bbox_min", "bbox_max", "coord_sum", "centroid")
"""Keys always present in a statistics dict."""

INTENSITY_KEYS = ("intensity_sum", "intensity_min", "intensity_max", "intensity_mean")
"""Keys present when an intensity image was given."""

_I64_MAX = np.iinfo(np.int64).max
_PARALLEL_MIN_SIZE = 1_000_000  # fewer voxels: one block


@jit
def _stats_rows(
    l2,
    img2,
    has_int,
    n,
    lead_shape,
    lead_origin,
    x0,
    r0,
    r1,
    area,
    bmin,
    bmax,
    csum,
    isum,
    imin,
    imax,
):
    """Accumulate statistics of rows ``r0..r1-1`` of a (rows, width) view.

    Returns the number of voxels whose label is larger than ``n``.
    """
    width = l2.shape[1]
    nlead = lead_shape.shape[0]
    idx = row_index(lead_shape, r0)
    bad = 0
    for r in range(r0, r1):
        i = 0
        while i < width:
            v = l2[r, i]
            if v == 0:
                i += 1
                continue
            s = i
            i += 1
            while i < width and l2[r, i] == v:
                i += 1
            j = np.int64(v) - 1
            if j < 0 or j >= n:  # negative (or >= 2**63 unsigned) or above n
                bad += i - s
                continue
            ln = i - s
            area[j] += ln
            for a in range(nlead):
                c = idx[a] + lead_origin[a]
                if c < bmin[j, a]:
                    bmin[j, a] = c
                if c + 1 > bmax[j, a]:
                    bmax[j, a] = c + 1
                csum[j, a] += ln * c
            xs = s + x0
            xe = i + x0
            if xs < bmin[j, nlead]:
                bmin[j, nlead] = xs
            if xe > bmax[j, nlead]:
                bmax[j, nlead] = xe
            csum[j, nlead] += (xs + xe - 1) * ln // 2
            if has_int:
                sm = 0.0
                lo = imin[j]
                hi = imax[j]
                for t in range(s, i):
                    val = np.float64(img2[r, t])
                    sm += val
                    if val < lo:
                        lo = val
                    if val > hi:
                        hi = val
                isum[j] += sm
                imin[j] = lo
                imax[j] = hi
        next_row(idx, lead_shape)
    return bad


@parallel_jit
def _stats_blocks(
    l2,
    img2,
    has_int,
    n,
    lead_shape,
    lead_origin,
    x0,
    bounds,
    area,
    bmin,
    bmax,
    csum,
    isum,
    imin,
    imax,
):
    """Blocks of rows in parallel, each into its own slot of the leading axis."""
    nb = bounds.shape[0] - 1
    bad = np.zeros(nb, np.int64)
    for b in numba.prange(nb):
        bad[b] = _stats_rows(
            l2,
            img2,
            has_int,
            n,
            lead_shape,
            lead_origin,
            x0,
            bounds[b],
            bounds[b + 1],
            area[b],
            bmin[b],
            bmax[b],
            csum[b],
            isum[b],
            imin[b],
            imax[b],
        )
    # fold the blocks into slot 0
    for b in range(1, nb):
        for j in range(n):
            if area[b, j] == 0:
                continue
            area[0, j] += area[b, j]
            for a in range(bmin.shape[2]):
                if bmin[b, j, a] < bmin[0, j, a]:
                    bmin[0, j, a] = bmin[b, j, a]
                if bmax[b, j, a] > bmax[0, j, a]:
                    bmax[0, j, a] = bmax[b, j, a]
                csum[0, j, a] += csum[b, j, a]
            if has_int:
                isum[0, j] += isum[b, j]
                if imin[b, j] < imin[0, j]:
                    imin[0, j] = imin[b, j]
                if imax[b, j] > imax[0, j]:
                    imax[0, j] = imax[b, j]
    return bad.sum()


def _finish(out):
    """Canonicalize empty labels and derive centroid / intensity_mean in place."""
    area = out["area"]
    empty = area == 0
    out["bbox_min"][empty] = 0
    out["bbox_max"][empty] = 0
    with np.errstate(invalid="ignore", divide="ignore"):
        out["centroid"] = out["coord_sum"] / area[:, None].astype(np.float64)
        if "intensity_sum" in out:
            out["intensity_mean"] = out["intensity_sum"] / area.astype(np.float64)
            out["intensity_sum"][empty] = 0.0
            out["intensity_min"][empty] = np.nan
            out["intensity_max"][empty] = np.nan
    return out


def region_stats(
    labels: np.ndarray,
    n: int,
    intensity: np.ndarray | None = None,
    *,
    origin=None,
) -> dict[str, np.ndarray]:
    """Per-label statistics of a label array, in one pass.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer label array of any dimension >= 1; 0 is background and
        ``1..n`` are regions. Labels outside ``0..n`` raise a ValueError.
    n : int
        Number of labels; the result has one row per label ``1..n`` (labels
        absent from ``labels`` get area 0).
    intensity : numpy.ndarray, optional
        Intensity image of the same shape (any real dtype).
    origin : sequence of int, optional
        Position of ``labels[0, ..., 0]`` in a larger volume: coordinates
        (bbox, centroid, coord_sum) are reported in that volume's voxel
        coordinates. Default: zeros.

    Returns
    -------
    dict of str to numpy.ndarray
        With ``ndim = labels.ndim``, rows for labels ``1..n``:

        - ``label`` (n,) int64: ``1..n``;
        - ``area`` (n,) int64: voxel count;
        - ``bbox_min`` (n, ndim) int64: first voxel index per axis;
        - ``bbox_max`` (n, ndim) int64: last voxel index + 1 per axis
          (exclusive, like :func:`skimage.measure.regionprops` ``bbox``);
        - ``coord_sum`` (n, ndim) int64: sum of voxel coordinates per axis;
        - ``centroid`` (n, ndim) float64: ``coord_sum / area`` (voxel units);

        and when ``intensity`` is given:

        - ``intensity_sum`` (n,) float64;
        - ``intensity_min``, ``intensity_max`` (n,) float64;
        - ``intensity_mean`` (n,) float64: ``intensity_sum / area``.

        Labels with area 0 have bbox 0, centroid, intensity mean, min and max
        NaN and intensity sum 0. This dict is also the partial form consumed
        by :func:`combine_stats`.

    Examples
    --------
    >>> import numpy as np
    >>> lab = np.array([[1, 1, 0],
    ...                 [0, 2, 2]])
    >>> img = np.array([[1., 3., 0.],
    ...                 [0., 5., 7.]])
    >>> s = region_stats(lab, 2, img)
    >>> s["area"]
    array([2, 2])
    >>> s["bbox_min"], s["bbox_max"]
    (array([[0, 0],
           [1, 1]]), array([[1, 2],
           [2, 3]]))
    >>> s["centroid"]
    array([[0. , 0.5],
           [1. , 1.5]])
    >>> s["intensity_mean"]
    array([2., 6.])
    """
    labels = np.asarray(labels)
    if labels.ndim == 0:
        raise ValueError("labels must have at least one dimension")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise TypeError(f"labels must be an integer array, got dtype {labels.dtype}")
    if labels.dtype == np.bool_:
        labels = labels.view(np.uint8)
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    ndim = labels.ndim
    origin = np.zeros(ndim, np.int64) if origin is None else np.asarray(origin, np.int64)
    if origin.shape != (ndim,):
        raise ValueError(f"origin must have {ndim} entries, got {origin.shape}")
    has_int = intensity is not None
    if has_int:
        intensity = np.asarray(intensity)
        if intensity.shape != labels.shape:
            raise ValueError(f"intensity shape {intensity.shape} differs from labels shape {labels.shape}")
        if intensity.dtype == np.bool_:
            intensity = intensity.view(np.uint8)
        if not np.issubdtype(intensity.dtype, np.number) or np.iscomplexobj(intensity):
            raise TypeError(f"intensity must be real-valued, got dtype {intensity.dtype}")

    shape = labels.shape
    width = shape[-1] if labels.size else 0
    l2 = np.ascontiguousarray(labels).reshape(-1, max(width, 1)) if labels.size else None
    rows = l2.shape[0] if l2 is not None else 0
    lead_shape = np.array(shape[:-1], np.int64)

    # blocks of whole first-axis slices, in parallel when worth it
    nb = 1
    if labels.size >= _PARALLEL_MIN_SIZE and ndim >= 2 and shape[0] >= 2:
        nb = min(numba.get_num_threads(), shape[0])
        # per-block arrays must stay small next to the labels themselves
        if nb * n * (3 * ndim + 4) * 8 > labels.nbytes // 2:
            nb = 1
    slab = rows // shape[0] if ndim >= 2 and rows else rows
    if nb > 1:
        bounds = np.unique(np.linspace(0, shape[0], nb + 1).round().astype(np.int64) * slab)
        nb = bounds.shape[0] - 1
    else:
        bounds = np.array([0, rows], np.int64)

    area = np.zeros((nb, n), np.int64)
    bmin = np.full((nb, n, ndim), _I64_MAX, np.int64)
    bmax = np.full((nb, n, ndim), -1, np.int64)
    csum = np.zeros((nb, n, ndim), np.int64)
    ni = n if has_int else 0
    isum = np.zeros((nb, ni), np.float64)
    imin = np.full((nb, ni), np.inf)
    imax = np.full((nb, ni), -np.inf)
    if rows:
        img2 = np.ascontiguousarray(intensity).reshape(l2.shape) if has_int else np.zeros((1, 1), np.float32)
        with parallel_guard():
            bad = _stats_blocks(
                l2,
                img2,
                has_int,
                n,
                lead_shape,
                origin[:-1].copy(),
                int(origin[-1]),
                bounds,
                area,
                bmin,
                bmax,
                csum,
                isum,
                imin,
                imax,
            )
        if bad:
            raise ValueError(f"labels contain {bad} voxels with a label outside 0..{n}")
    out = {
        "label": np.arange(1, n + 1, dtype=np.int64),
        "area": area[0].copy(),
        "bbox_min": bmin[0].copy(),
        "bbox_max": bmax[0].copy(),
        "coord_sum": csum[0].copy(),
    }
    if has_int:
        out["intensity_sum"] = isum[0].copy()
        out["intensity_min"] = imin[0].copy()
        out["intensity_max"] = imax[0].copy()
    return _finish(out)


def combine_stats(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Aggregate two partial statistics dicts (e.g. of two tiles) into one.

    Both must come from :func:`region_stats` (or :func:`combine_stats`) over
    the same global labels and coordinates (use ``origin`` for tiles). If
    their ``n`` differ, the shorter one is treated as having area 0 for the
    missing labels. Areas, ``coord_sum`` and ``intensity_sum`` add; bbox and
    intensity minima/maxima are combined over the non-empty sides; then
    ``centroid`` and ``intensity_mean`` are derived again from the sums.
    Intensity keys are kept only if both sides have them.

    Parameters
    ----------
    a, b : dict of str to numpy.ndarray
        Partial statistics.

    Returns
    -------
    dict of str to numpy.ndarray
        New statistics dict with the keys of :func:`region_stats`.

    Examples
    --------
    >>> import numpy as np
    >>> lab = np.array([[1, 1, 0, 2], [0, 1, 2, 2]])
    >>> left = region_stats(lab[:, :2], 2)
    >>> right = region_stats(lab[:, 2:], 2, origin=(0, 2))
    >>> both = combine_stats(left, right)
    >>> whole = region_stats(lab, 2)
    >>> all(np.array_equal(both[k], whole[k]) for k in whole)
    True
    """
    na, nb_ = len(a["area"]), len(b["area"])
    n = max(na, nb_)
    ndim = a["bbox_min"].shape[1] if a["bbox_min"].ndim == 2 else b["bbox_min"].shape[1]

    def pad(d, key, fill, cols=None):
        v = d[key]
        m = len(v)
        if m == n:
            return v
        shape = (n - m,) if cols is None else (n - m, cols)
        return np.concatenate([v, np.full(shape, fill, v.dtype)])

    area_a, area_b = pad(a, "area", 0), pad(b, "area", 0)
    ea = (area_a > 0)[:, None]
    eb = (area_b > 0)[:, None]
    bmin_a, bmin_b = pad(a, "bbox_min", 0, ndim), pad(b, "bbox_min", 0, ndim)
    bmax_a, bmax_b = pad(a, "bbox_max", 0, ndim), pad(b, "bbox_max", 0, ndim)
    out = {
        "label": np.arange(1, n + 1, dtype=np.int64),
        "area": area_a + area_b,
        "bbox_min": np.where(ea & eb, np.minimum(bmin_a, bmin_b), np.where(ea, bmin_a, bmin_b)),
        "bbox_max": np.where(ea & eb, np.maximum(bmax_a, bmax_b), np.where(ea, bmax_a, bmax_b)),
        "coord_sum": pad(a, "coord_sum", 0, ndim) + pad(b, "coord_sum", 0, ndim),
    }
    if "intensity_sum" in a and "intensity_sum" in b:
        out["intensity_sum"] = pad(a, "intensity_sum", 0.0) + pad(b, "intensity_sum", 0.0)
        out["intensity_min"] = np.fmin(pad(a, "intensity_min", np.nan), pad(b, "intensity_min", np.nan))
        out["intensity_max"] = np.fmax(pad(a, "intensity_max", np.nan), pad(b, "intensity_max", np.nan))
    return _finish(out)
