"""Flat (binary and grey) morphology on plain N-D arrays (numba).

This is the engine behind :mod:`florin.morphology`; it takes and returns plain
arrays and never imports xarray.

Every operation here is a minimum or a maximum over a set of offsets ``O``
(the footprint, centred): ``out[x] = min/max over o in O of ext(in)[x + o]``,
where ``ext`` extends the image beyond its border by a scipy mode
(``constant`` with ``cval``, ``nearest``, ``reflect``, ``mirror``, ``wrap``).
Binary images are ``uint8`` 0/1 (a ``bool`` array is viewed, not copied), so
erosion is a minimum and dilation a maximum.

Algorithm
---------
The offsets are grouped by their leading (non-last-axis) part into footprint
*rows*, and along the last axis into runs ``[a, a + L)``. For every output
row (a line along the last axis) and every footprint row, the source row is
extended once into a line buffer (an out-of-range row in ``constant`` mode is
``cval`` throughout), and each run folds into the output line: one vectorized pass per
voxel for runs of up to 16 voxels, with van Herk / Gil-Werman's prefix-suffix minima
(three comparisons per voxel, whatever ``L``) for longer ones. Output rows
are split into blocks run in parallel (``numba.prange``) under the one numba
threading guard.

A footprint whose offsets are the product of one set per axis (a box, or any
outer product of 1-D footprints) is run as one 1-D pass per axis instead:
the minimum over a product set, with a per-axis border extension, is the
composition of the per-axis minima, exactly.

Centres follow scipy and scikit-image (see :func:`footprint_offsets`), so the
results are bit-exact with :func:`scipy.ndimage.binary_erosion` /
``binary_dilation`` (and scikit-image's ``binary_*``, which call them) and
with :func:`skimage.morphology.erosion` / ``dilation`` / ``opening`` /
``closing``, borders included. Floating-point images containing NaN are not
covered by that guarantee.
"""

from __future__ import annotations

import numba
import numpy as np

from florin._kernels._alloc import empty
from florin._kernels._jit import jit, parallel_jit
from florin._kernels._rows import next_row, row_index
from florin._kernels._threads import numba_threads

__all__ = [
    "MODES",
    "footprint_offsets",
    "is_sequence",
    "min_max_filter",
    "binary_erosion",
    "binary_dilation",
    "grey_erosion",
    "grey_dilation",
]

MODES = ("constant", "nearest", "reflect", "mirror", "wrap")
"""Border extensions, with scipy.ndimage's names."""

_MODE_CODE = {m: i for i, m in enumerate(MODES)}
_DIRECT_MAX = 16  # runs up to this long: one vectorized pass per voxel of the run; longer: van Herk


def is_sequence(footprint) -> bool:
    """True for a decomposed footprint: a sequence of ``(array, repeats)`` pairs (scikit-image's form)."""
    return (
        isinstance(footprint, (tuple, list))
        and len(footprint) > 0
        and all(isinstance(p, tuple) and len(p) == 2 and np.ndim(p[0]) > 0 for p in footprint)
    )


def footprint_offsets(footprint: np.ndarray, *, center: str = "scipy", mirror: bool = False) -> np.ndarray:
    """The nonzero voxels of a footprint as offsets from its centre.

    Parameters
    ----------
    footprint : numpy.ndarray
        N-D footprint; nonzero entries belong to it.
    center : {'scipy', 'skimage'}
        ``'scipy'``: the centre is at ``s // 2`` along an axis of size ``s``
        (scipy.ndimage with ``origin=0``, and scikit-image's ``binary_*``).
        ``'skimage'``: at ``(s - 1) // 2`` (scikit-image's grey morphology,
        which pads even footprints at their start). They differ for even sizes.
    mirror : bool
        Negate the offsets (reflect the footprint through its centre), as a
        dilation does.

    Returns
    -------
    numpy.ndarray
        ``(k, ndim)`` int64 offsets in C order.

    Examples
    --------
    >>> footprint_offsets(np.array([[0, 1, 1]]))
    array([[0, 0],
           [0, 1]])
    >>> footprint_offsets(np.ones((1, 2)), center="skimage")
    array([[0, 0],
           [0, 1]])
    """
    fp = np.asarray(footprint)
    shape = np.array(fp.shape, np.int64)
    c = shape // 2 if center == "scipy" else (shape - 1) // 2
    offsets = np.argwhere(fp != 0).astype(np.int64) - c
    if mirror:
        offsets = -offsets[::-1]
    return offsets


def _border_map(n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """Source index of positions ``lo..n-1+hi`` along an axis of length ``n``, -1 for ``cval``."""
    i = np.arange(-lo, n + hi, dtype=np.int64)
    if mode == "constant":
        return np.where((i >= 0) & (i < n), i, -1)
    if mode == "nearest":
        return np.clip(i, 0, n - 1)
    if mode == "wrap":
        return np.mod(i, n)
    if mode == "reflect":  # d c b a | a b c d | d c b a
        m = np.mod(i, 2 * n)
        return np.where(m < n, m, 2 * n - 1 - m)
    if n == 1:  # mirror: d c b | a b c d | c b a
        return np.zeros_like(i)
    m = np.mod(i, 2 * n - 2)
    return np.where(m < n, m, 2 * n - 2 - m)


# --------------------------------------------------------------------------
# numba kernels
# --------------------------------------------------------------------------


@jit
def _min_into(acc, src):
    for x in range(acc.shape[0]):
        v = src[x]
        a = acc[x]
        acc[x] = v if v < a else a


@jit
def _max_into(acc, src):
    for x in range(acc.shape[0]):
        v = src[x]
        a = acc[x]
        acc[x] = v if v > a else a


@jit
def _fold_run(acc, ext, a0, length, maximum, g, h):
    """acc[x] = min/max(acc[x], ext[x + a0 : x + a0 + length]) for every x of acc."""
    n = acc.shape[0]
    if length <= _DIRECT_MAX:
        for t in range(length):
            if maximum:
                _max_into(acc, ext[a0 + t : a0 + t + n])
            else:
                _min_into(acc, ext[a0 + t : a0 + t + n])
        return
    # van Herk / Gil-Werman over e = ext[a0 : a0 + n + length - 1] in blocks of ``length``:
    # g = prefix extremum within a block, h = suffix extremum; the window at x is ext(h[x], g[x + length - 1]).
    e = ext[a0 : a0 + n + length - 1]
    m = e.shape[0]
    for b0 in range(0, m, length):
        b1 = min(b0 + length, m)
        v = e[b0]
        g[b0] = v
        for j in range(b0 + 1, b1):
            w = e[j]
            if maximum:
                v = w if w > v else v
            else:
                v = w if w < v else v
            g[j] = v
        v = e[b1 - 1]
        h[b1 - 1] = v
        for j in range(b1 - 2, b0 - 1, -1):
            w = e[j]
            if maximum:
                v = w if w > v else v
            else:
                v = w if w < v else v
            h[j] = v
    if maximum:
        _max_into(h[:n], g[length - 1 : length - 1 + n])
        _max_into(acc, h[:n])
    else:
        _min_into(h[:n], g[length - 1 : length - 1 + n])
        _min_into(acc, h[:n])


@jit
def _filter_block(src2, out2, plan, maximum, cval, ident, r0, r1):
    """Min/max filter of rows ``r0..r1-1`` of a (rows, n) view over footprint rows of runs (``plan``, see _pass)."""
    lead_shape, rowoffs, rowptr, row_ext, run_a, run_len, lead_maps, lead_lo, xmap, xlo = plan
    n = out2.shape[1]
    nlead = lead_shape.shape[0]
    nfr = rowoffs.shape[0]
    m = xmap.shape[0]
    ext = np.empty(m, src2.dtype)
    g = np.empty(m, src2.dtype)
    h = np.empty(m, src2.dtype)
    idx = row_index(lead_shape, r0)
    for r in range(r0, r1):
        acc = out2[r]
        acc[:] = ident
        for f in range(nfr):
            srow = 0
            outside = False
            for a in range(nlead):
                q = lead_maps[a, idx[a] + rowoffs[f, a] + lead_lo[a]]
                if q < 0:
                    outside = True
                    break
                srow = srow * lead_shape[a] + q
            if outside:  # a cval row
                for x in range(n):
                    v = acc[x]
                    if maximum:
                        acc[x] = cval if cval > v else v
                    else:
                        acc[x] = cval if cval < v else v
                continue
            if not row_ext[f]:  # every run of this row stays inside the source row
                for u in range(rowptr[f], rowptr[f + 1]):
                    _fold_run(acc, src2[srow], run_a[u], run_len[u], maximum, g, h)
                continue
            for j in range(xlo):
                q = xmap[j]
                ext[j] = src2[srow, q] if q >= 0 else cval
            # an element loop, not ``ext[xlo : xlo + n] = src2[srow]``: numba compiles a slice assignment's
            # shape-mismatch error message (string formatting), ~2.5 s of the first run's compile
            for x in range(n):
                ext[xlo + x] = src2[srow, x]
            for j in range(xlo + n, m):
                q = xmap[j]
                ext[j] = src2[srow, q] if q >= 0 else cval
            for u in range(rowptr[f], rowptr[f + 1]):
                _fold_run(acc, ext, run_a[u] + xlo, run_len[u], maximum, g, h)
        next_row(idx, lead_shape)


@parallel_jit
def _filter_rows(src2, out2, plan, maximum, cval, ident, nchunks):
    """Min/max filter of a (rows, n) view, its rows cut into ``nchunks`` blocks run in parallel."""
    rows = out2.shape[0]
    for c in numba.prange(nchunks):
        _filter_block(src2, out2, plan, maximum, cval, ident, rows * c // nchunks, rows * (c + 1) // nchunks)


# --------------------------------------------------------------------------
# python drivers
# --------------------------------------------------------------------------


def _rows_and_runs(offsets, nlead):
    """Footprint rows (unique leading offsets) and the runs of last-axis offsets of each."""
    order = np.lexsort(offsets.T[::-1])
    offsets = offsets[order]
    rowoffs, rowptr, run_a, run_len = [], [0], [], []
    k = 0
    while k < len(offsets):
        lead = offsets[k, :nlead]
        j = k
        while j < len(offsets) and np.array_equal(offsets[j, :nlead], lead):
            j += 1
        xs = offsets[k:j, nlead]
        s = 0
        while s < len(xs):
            e = s + 1
            while e < len(xs) and xs[e] == xs[e - 1] + 1:
                e += 1
            run_a.append(int(xs[s]))
            run_len.append(e - s)
            s = e
        rowoffs.append(lead)
        rowptr.append(len(run_a))
        k = j
    return (
        np.array(rowoffs, np.int64).reshape(len(rowoffs), nlead),
        np.array(rowptr, np.int64),
        np.array(run_a, np.int64),
        np.array(run_len, np.int64),
    )


def _pass(src, out, offsets, maximum, mode, cval, threads):
    """One min/max pass of ``src`` into ``out`` (same shape, C-contiguous) over ``offsets``."""
    shape = src.shape
    nlead = len(shape) - 1
    lo = np.maximum(-offsets.min(axis=0), 0)
    hi = np.maximum(offsets.max(axis=0), 0)
    width = int(max((shape[a] + lo[a] + hi[a] for a in range(nlead)), default=1))
    lead_maps = np.full((max(nlead, 1), width), -1, np.int64)
    for a in range(nlead):
        bm = _border_map(shape[a], int(lo[a]), int(hi[a]), mode)
        lead_maps[a, : bm.size] = bm
    xmap = _border_map(shape[-1], int(lo[-1]), int(hi[-1]), mode)
    rowoffs, rowptr, run_a, run_len = _rows_and_runs(offsets, nlead)
    # a footprint row needs the extended line unless all its runs are the single offset 0 along x
    inside = (run_a == 0) & (run_len == 1)
    row_ext = np.array([not inside[rowptr[f] : rowptr[f + 1]].all() for f in range(len(rowoffs))], np.bool_)
    src2 = src.reshape(-1, shape[-1])
    out2 = out.reshape(-1, shape[-1])
    rows = src2.shape[0]
    nchunks = min(rows, 4 * max(threads, 1)) if threads > 1 else 1
    plan = (
        np.array(shape[:-1], np.int64),
        rowoffs,
        rowptr,
        row_ext,
        run_a,
        run_len,
        lead_maps,
        lo[:-1].copy() if nlead else np.zeros(1, np.int64),
        xmap,
        int(lo[-1]),
    )
    with numba_threads(threads):
        _filter_rows(
            src2,
            out2,
            plan,
            bool(maximum),
            src2.dtype.type(cval),
            _identity(src2.dtype, maximum),
            max(nchunks, 1),
        )


def _separable(offsets, ndim):
    """Per-axis offset sets whose product is ``offsets``, or None."""
    axes = [np.unique(offsets[:, a]) for a in range(ndim)]
    if int(np.prod([len(s) for s in axes])) != len(np.unique(offsets, axis=0)):
        return None
    return axes


def _identity(dtype, maximum):
    """The value that every other one beats: the dtype's smallest for a maximum, largest for a minimum."""
    if dtype.kind == "f":
        return dtype.type(-np.inf if maximum else np.inf)
    info = np.iinfo(dtype)
    return dtype.type(info.min if maximum else info.max)


def _cval(dtype, cval):
    if dtype.kind == "f":
        return cval
    info = np.iinfo(dtype)
    return min(max(cval, info.min), info.max)


def min_max_filter(
    image: np.ndarray,
    offsets: np.ndarray,
    *,
    maximum: bool,
    mode: str = "constant",
    cval=0,
    threads: int | None = None,
) -> np.ndarray:
    """Minimum (or maximum) of ``image`` over a set of offsets, with a scipy border mode.

    Parameters
    ----------
    image : numpy.ndarray
        N-D array (``ndim >= 1``) of bool, integers or floats.
    offsets : numpy.ndarray
        ``(k, ndim)`` integer offsets, ``k >= 1``: ``out[x] = min/max of
        ext(image)[x + o]``.
    maximum : bool
        True for the maximum (a dilation), False for the minimum (an erosion).
    mode : str
        One of :data:`MODES`.
    cval : scalar
        Value beyond the border in ``constant`` mode (clipped to the dtype's
        range for integers).
    threads : int, optional
        numba threads (default: numba's current setting).

    Returns
    -------
    numpy.ndarray
        Same shape and dtype as ``image``, C-contiguous.

    Examples
    --------
    >>> a = np.array([3, 1, 4, 1, 5], np.uint8)
    >>> min_max_filter(a, np.array([[-1], [0], [1]]), maximum=False, mode="nearest")
    array([1, 1, 1, 1, 1], dtype=uint8)
    >>> min_max_filter(a, np.array([[1]]), maximum=True, cval=9)
    array([1, 4, 1, 5, 9], dtype=uint8)
    """
    image = np.asarray(image)
    if image.ndim == 0:
        raise ValueError("morphology needs an array with at least one dimension")
    if mode not in _MODE_CODE:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    offsets = np.asarray(offsets, np.int64).reshape(-1, image.ndim)
    if offsets.shape[0] == 0:
        raise ValueError("the footprint must have at least one nonzero element")
    is_bool = image.dtype == np.bool_
    src = np.ascontiguousarray(image)
    if is_bool:
        src = src.view(np.uint8)
        cval = int(bool(cval))
    else:
        cval = _cval(src.dtype, cval)
    threads = numba.get_num_threads() if threads is None else max(1, int(threads))
    out = empty(src.shape, src.dtype)
    if src.size:
        axes = _separable(offsets, image.ndim)
        passes = [offsets]
        if axes is not None:
            passes = []
            for a, s in enumerate(axes):
                if len(s) == 1 and s[0] == 0:
                    continue
                o = np.zeros((len(s), image.ndim), np.int64)
                o[:, a] = s
                passes.append(o)
            passes = passes or [offsets]
        cur = src
        tmp = empty(out.shape, out.dtype) if len(passes) > 1 else None
        for i, o in enumerate(passes):
            # alternate between two buffers so that the last pass writes ``out``
            dst = out if (len(passes) - 1 - i) % 2 == 0 else tmp
            _pass(cur, dst, o, maximum, mode, cval, threads)
            cur = dst
        out = cur
    return out.view(np.bool_) if is_bool else out


def _sequence(footprint):
    return list(footprint) if is_sequence(footprint) else [(footprint, 1)]


def binary_erosion(mask: np.ndarray, footprint, *, border_value: bool = True, threads: int | None = None) -> np.ndarray:
    """Binary erosion, bit-exact with :func:`scipy.ndimage.binary_erosion` (``origin=0``).

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean array (anything else: nonzero is True).
    footprint : numpy.ndarray or sequence of (numpy.ndarray, int)
        The structuring element, or scikit-image's decomposed form, each part
        applied ``repeats`` times in order.
    border_value : bool
        Value beyond the border: True (scikit-image's ``mode='ignore'``)
        erodes nothing from outside, False erodes from the border.
    threads : int, optional
        numba threads.

    Returns
    -------
    numpy.ndarray of bool

    Examples
    --------
    >>> m = np.ones((3, 4), bool)
    >>> binary_erosion(m, np.ones((1, 3)), border_value=False).astype(int)
    array([[0, 1, 1, 0],
           [0, 1, 1, 0],
           [0, 1, 1, 0]])
    """
    out = np.asarray(mask)
    out = out if out.dtype == np.bool_ else out != 0
    for part, repeats in _sequence(footprint):
        offsets = footprint_offsets(part)
        for _ in range(int(repeats)):
            out = min_max_filter(out, offsets, maximum=False, cval=bool(border_value), threads=threads)
    return out


def binary_dilation(
    mask: np.ndarray, footprint, *, border_value: bool = False, threads: int | None = None
) -> np.ndarray:
    """Binary dilation, bit-exact with :func:`scipy.ndimage.binary_dilation` (``origin=0``).

    The footprint is reflected, as scipy does: ``out[x]`` is True when some
    ``mask[x - (k - c)]`` with ``footprint[k]`` set is.

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean array (anything else: nonzero is True).
    footprint : numpy.ndarray or sequence of (numpy.ndarray, int)
        The structuring element, or scikit-image's decomposed form.
    border_value : bool
        Value beyond the border (False: nothing grows in from outside).
    threads : int, optional
        numba threads.

    Returns
    -------
    numpy.ndarray of bool

    Examples
    --------
    >>> m = np.zeros(5, bool); m[2] = True
    >>> binary_dilation(m, np.array([1, 1, 0])).astype(int)
    array([0, 1, 1, 0, 0])
    """
    out = np.asarray(mask)
    out = out if out.dtype == np.bool_ else out != 0
    for part, repeats in _sequence(footprint):
        offsets = footprint_offsets(part, mirror=True)
        for _ in range(int(repeats)):
            out = min_max_filter(out, offsets, maximum=True, cval=bool(border_value), threads=threads)
    return out


def grey_erosion(
    image: np.ndarray, footprint, *, mode: str = "reflect", cval=0.0, mirror: bool = False, threads: int | None = None
) -> np.ndarray:
    """Grey erosion as :func:`skimage.morphology.erosion` computes it (bit-exact).

    Parameters
    ----------
    image : numpy.ndarray
        Image of bool, integers or floats.
    footprint : numpy.ndarray or sequence of (numpy.ndarray, int)
        Flat footprint (nonzero entries), or scikit-image's decomposed form.
    mode : str
        One of :data:`MODES`; scikit-image's ``'max'`` / ``'min'`` are
        ``'constant'`` with the dtype's largest / smallest value as ``cval``.
    cval : scalar
        Value beyond the border in ``constant`` mode.
    mirror : bool
        Reflect the footprint (the second step of a closing).
    threads : int, optional
        numba threads.

    Returns
    -------
    numpy.ndarray
        Same dtype as ``image``.

    Examples
    --------
    >>> grey_erosion(np.array([5, 3, 8, 9], np.uint8), np.ones(2), mode="nearest")
    array([3, 3, 8, 9], dtype=uint8)
    """
    return _grey(image, footprint, mode, cval, mirror, False, threads)


def grey_dilation(
    image: np.ndarray, footprint, *, mode: str = "reflect", cval=0.0, mirror: bool = False, threads: int | None = None
) -> np.ndarray:
    """Grey dilation as :func:`skimage.morphology.dilation` computes it (bit-exact).

    scikit-image's dilation does not reflect the footprint (``mirror=False``);
    an opening's second step does (``mirror=True``).

    Parameters
    ----------
    image : numpy.ndarray
        Image of bool, integers or floats.
    footprint : numpy.ndarray or sequence of (numpy.ndarray, int)
        Flat footprint (nonzero entries), or scikit-image's decomposed form.
    mode : str
        As for :func:`grey_erosion`.
    cval : scalar
        Value beyond the border in ``constant`` mode.
    mirror : bool
        Reflect the footprint.
    threads : int, optional
        numba threads.

    Returns
    -------
    numpy.ndarray
        Same dtype as ``image``.

    Examples
    --------
    >>> grey_dilation(np.array([5, 3, 8, 9], np.uint8), np.ones(2), mode="nearest")
    array([5, 8, 9, 9], dtype=uint8)
    """
    return _grey(image, footprint, mode, cval, mirror, True, threads)


def _grey(image, footprint, mode, cval, mirror, maximum, threads):
    out = np.asarray(image)
    for part, repeats in _sequence(footprint):
        offsets = footprint_offsets(part, center="skimage", mirror=mirror)
        for _ in range(int(repeats)):
            out = min_max_filter(out, offsets, maximum=maximum, mode=mode, cval=cval, threads=threads)
    return out
