"""``ndnt_mask``: dtype handling, the canonical view, planning of the work items, N > 3 peeling.

Part of the NDNT kernel; the definition and the design are in
:mod:`florin._kernels.ndnt` (normative: docs/concepts/ndnt.md).
"""

from __future__ import annotations

import numba
import numpy as np

from florin._kernels._alloc import empty
from florin._kernels._threads import numba_threads
from florin._kernels.ndnt.boxsum import _U, _axis_counts, _float_error_coefs
from florin._kernels.ndnt.items import _item_direct, _item_plane, _run_direct, _run_plane
from florin._kernels.ndnt.threshold import (
    _I_NZ,
    _KIND_FLOAT,
    _Decision,
    _fixup_uncertain,
    _pick_int_kind,
    rational_threshold,
)
from florin.errors import ParameterError

# Below this z-window length direct mode is at least as cheap as a rolling plane.
_DIRECT_MAX_ZWINDOW = 2

# Float runs with more uncertain voxels than this are redone with non-zero counts.
_NZ_RERUN = 256

_COPY_MAX_BYTES = 256 << 20  # larger strided inputs are read in place (no extra memory)


def _split(n: int, parts: int) -> list[int]:
    parts = max(1, min(parts, n))
    return [(n * k) // parts for k in range(parts + 1)]


def _readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view: kernels only read their inputs, and numba compiles one
    specialization for read-only arrays, so writable and read-only (memory-mapped)
    inputs share the compiled code."""
    v = a.view()
    v.flags.writeable = False
    return v


def _solve3(src, sm, vals, vm, out, h, outer, e_src, dec, threads, budget, proto, src_is_image):
    """Box-sum ``src`` (3-D), decide against ``vals`` into ``out`` (uint8).

    Returns ``(non-finite count, uncertain count)``.
    """
    nz, ny, nx = src.shape
    h0, h1, h2 = (int(v) for v in h)
    nzw = min(2 * h0 + 1, nz)
    plane_bytes = ny * nx * (proto.itemsize + (4 if dec.kind == _KIND_FLOAT else 0))  # floats: + int32 counts
    t_mem = budget // max(plane_bytes, 1)
    plane = nzw > _DIRECT_MAX_ZWINDOW and t_mem >= 1
    if plane:
        t_plane = max(1, min(threads, t_mem, nz))
        # wall time in plane updates: per chunk nzw (init) + 2 per plane; direct: 2*nzw per plane
        plane = nzw + 2.0 * nz / t_plane <= 2.0 * nzw * nz / threads
    if plane:
        zb = _split(nz, t_plane)
        items = [(zb[i], zb[i + 1], 0, ny) for i in range(len(zb) - 1)]
    elif threads == 1:
        items = [(0, nz, 0, ny)]
    else:
        # direct mode: (z range) x (y block); y blocks only when z alone cannot
        # feed the threads, each at least 4 windows tall (its start-up costs a window)
        target = 4 * threads
        zparts = min(nz, target)
        yparts = 1
        if zparts < target:
            yparts = max(1, min(-(-target // zparts), ny // (4 * (2 * h1 + 1))))
        zb = _split(nz, zparts)
        yb = _split(ny, yparts)
        items = [(zb[i], zb[i + 1], yb[j], yb[j + 1]) for i in range(len(zb) - 1) for j in range(len(yb) - 1)]
    items = np.array(items, dtype=np.int64)
    ke, km = _float_error_coefs(plane, nz, ny, nx, nzw, min(2 * h1 + 1, ny), min(2 * h2 + 1, nx))
    # first pass without the non-zero counts (_I_NZ = 0)
    ip = np.array([h0, h1, h2, outer, dec.kind, dec.sg, dec.num, dec.den, 0], dtype=np.int64)
    fp = np.array([dec.q, ke, km, e_src], dtype=np.float64)
    cz, cy, cx = _axis_counts(nz, h0), _axis_counts(ny, h1), _axis_counts(nx, h2)

    def run():
        if threads == 1 or len(items) == 1:
            # serial kernels only: the parallel runtime is never entered
            bad = unc = 0
            for z0, z1, y0, y1 in items:
                if plane:
                    b, u = _item_plane(src, sm, vals, vm, out, z0, z1, cz, cy, cx, ip, fp, proto)
                else:
                    b, u = _item_direct(src, sm, vals, vm, out, z0, z1, y0, y1, cz, cy, cx, ip, fp, proto)
                bad += b
                unc += u
            return bad, unc
        with numba_threads(min(threads, len(items))):
            runner = _run_plane if plane else _run_direct
            return runner(src, sm, vals, vm, out, items, cz, cy, cx, ip, fp, proto)

    bad, unc = run()
    if unc > _NZ_RERUN and src_is_image and not bad:
        # Many uncertain voxels: typically windows of exact zeros whose running
        # sums kept a rounding residue.  Run again counting non-zero values, so
        # that those sums are known to be exactly 0 (costs ~30 % more, once).
        ip[_I_NZ] = 1
        bad, unc = run()
    return bad, unc


def _solve(src, srcn, sm, vals, vm, out, h, outer, e_src, m_src, dec, threads, budget, proto, src_is_image=True):
    """N-D (N >= 3) solver: peel the outer axis in Python down to 3-D.

    ``src`` is what the kernels read (unsigned viewed as signed, see ``_widen``),
    ``srcn`` the same data as numpy should read it (its real dtype).  For float
    data ``e_src`` bounds the error of each src entry and ``m_src`` its magnitude.
    Returns ``(non-finite count, uncertain count)``.
    """
    if src.ndim == 3:
        return _solve3(src, sm, vals, vm, out, h, outer, e_src, dec, threads, budget, proto, src_is_image)
    n0 = src.shape[0]
    h0 = h[0]
    bad = unc = 0
    if h0 == 0:
        for i in range(n0):
            b, u = _solve(
                src[i], srcn[i], sm, vals[i], vm, out[i], h[1:], outer, e_src, m_src, dec, threads, budget, proto,
                src_is_image,
            )  # fmt: skip
            bad += b
            unc += u
        return bad, unc
    # rolling (N-1)-D window sum along axis 0 in the wide type (numpy converts in
    # small buffered chunks; srcn is never uint64 here, so int64 + srcn stays integer)
    c0 = _axis_counts(n0, h0)
    a0 = min(2 * h0 + 1, n0)
    if dec.kind == _KIND_FLOAT:  # error and magnitude bounds of the rolling sum's entries
        e_p = a0 * e_src + 1.25 * _U * (a0 + 2) * (2 * n0 + a0) * m_src
        m_p = (a0 + 2) * m_src
    else:
        e_p = m_p = 0.0
    P = np.zeros(src.shape[1:], dtype=proto.dtype)
    budget = max(0, budget - P.nbytes)  # what the inner rolling planes may still take
    Pr = _readonly(P)
    for zz in range(0, min(n0 - 1, h0) + 1):
        np.add(P, srcn[zz], out=P, casting="unsafe")
    minus_one = np.int64(-1)
    for i in range(n0):
        if i > 0:
            if i + h0 < n0:
                np.add(P, srcn[i + h0], out=P, casting="unsafe")
            if i - h0 - 1 >= 0:
                np.subtract(P, srcn[i - h0 - 1], out=P, casting="unsafe")
        b, u = _solve(
            Pr, P, minus_one, vals[i], vm, out[i], h[1:], outer * int(c0[i]), e_p, m_p, dec, threads, budget, proto,
            False,
        )  # fmt: skip
        bad += b
        unc += u
    return bad, unc


def _absmax_numpy(a: np.ndarray) -> float:
    """max |a| reading ``a`` in slabs along axis 0 (small temporaries)."""
    step = max(1, (1 << 22) // max(1, a.size // a.shape[0]))
    return max(float(np.max(np.abs(a[i : i + step]))) for i in range(0, a.shape[0], step))


def _default_threads() -> int:
    return numba.get_num_threads()


def ndnt_mask(
    image: np.ndarray,
    shape: tuple[int, ...],
    threshold: float,
    bright: bool = False,
    threads: int | None = None,
) -> np.ndarray:
    """Compute the NDNT foreground mask of ``image``.

    Parameters
    ----------
    image : numpy.ndarray
        N-D image (N >= 1) of a bool, integer or float dtype; read-only and
        memory-mapped arrays are read in place.  Float images must be finite.
    shape : tuple of int
        Full neighborhood shape, one int >= 1 per axis (already validated); the
        window along axis ``a`` is ``2 * (shape[a] // 2) + 1`` wide, clipped to the
        volume; an entry of 1 disables the axis.
    threshold : float
        Fraction ``t`` in [0, 1] (already converted from a percentage).
    bright : bool
        ``False`` (dark): foreground iff ``I*count <= (1-t)*sum``;
        ``True``: foreground iff ``I*count >= (1+t)*sum``.
    threads : int, optional
        Number of threads; default ``numba.get_num_threads()`` (the
        ``NUMBA_NUM_THREADS`` environment variable unless changed), values above
        ``NUMBA_NUM_THREADS`` are clipped to it.

    Returns
    -------
    numpy.ndarray of bool
        Mask with the shape of ``image``.

    Raises
    ------
    ParameterError
        If the image holds NaN or inf, has an unsupported dtype, or (64-bit
        integers) holds values so large that window sums could overflow.

    Examples
    --------
    >>> import numpy as np
    >>> ndnt_mask(np.array([5, 1, 5, 5, 5], dtype=np.uint8), (3,), 0.25).tolist()
    [False, True, False, False, False]
    """
    a = np.asarray(image)
    if a.ndim == 0:
        raise ParameterError("image: must have at least one dimension, got a 0-d array")
    shape = tuple(int(v) for v in shape)
    if len(shape) != a.ndim:
        raise ParameterError(f"shape: needs {a.ndim} entries (one per axis), got {shape!r}")
    if any(v < 1 for v in shape):
        raise ParameterError(f"shape: entries must be >= 1, got {shape!r}")
    t = float(threshold)
    if not (0.0 <= t <= 1.0):
        raise ParameterError(f"threshold: must be a fraction in [0, 1] here, got {threshold!r}")
    if threads is None:
        threads = _default_threads()
    threads = int(threads)
    if threads < 1:
        raise ParameterError(f"threads: must be >= 1, got {threads}")
    threads = min(threads, numba.config.NUMBA_NUM_THREADS)

    full_shape = a.shape
    out_full = empty(full_shape, bool)
    if a.size == 0:
        return out_full

    # ---- dtype handling (views, no copies except float16) ----
    dt = a.dtype
    if dt == np.bool_:
        a = a.view(np.uint8)
        dt = a.dtype
    if dt.kind == "f":
        if dt.itemsize == 2:
            a = a.astype(np.float32)  # numba has no float16 arithmetic
        elif dt.itemsize not in (4, 8):
            raise ParameterError(f"image: dtype {dt} is not supported; convert it to float64")
        is_int = False
    elif dt.kind in "iu":
        is_int = True
    else:
        raise ParameterError(f"image: dtype {dt} is not supported; use a bool, integer or float image")

    # ---- canonical form: drop length-1 axes, then make it >= 3-D ----
    a_full = a
    idx = tuple(slice(None) if n > 1 else 0 for n in a.shape) + (Ellipsis,)  # Ellipsis: 0-d views, not scalars
    h = [min(s // 2, n - 1) for s, n in zip(shape, a.shape, strict=True) if n > 1]  # larger windows: same window
    a = a[idx]
    # the kernels write 0/1 (and 2 = "float decision not certain yet") through a uint8 view
    out = out_full.view(np.uint8)[idx]
    if a.ndim > 1 and not a.flags.c_contiguous:
        # NDNT commutes with axis permutations: put the axes in decreasing stride
        # order (a Fortran-ordered array becomes C-ordered) for memory locality.
        perm = sorted(range(a.ndim), key=lambda i: -abs(a.strides[i]))
        a = a.transpose(perm)
        out = out.transpose(perm)
        h = [h[i] for i in perm]
    if a.ndim > 1 and not a.flags.c_contiguous and a.nbytes <= _COPY_MAX_BYTES:
        # A tile is a strided view of its volume; the compiled kernel runs about
        # twice as fast on a C-contiguous copy, which costs a few percent of that.
        a = np.ascontiguousarray(a)
    if a.ndim == 0:  # a single voxel
        a, out, h = a.reshape(1, 1, 1), out.reshape(1, 1, 1), [0, 0, 0]
    elif a.ndim == 1:
        a, out, h = a[None, None, :], out[None, None, :], [0, 0, h[0]]
    elif a.ndim == 2:
        a, out, h = a[:, None, :], out[:, None, :], [h[0], 0, h[1]]

    # ---- decision parameters ----
    bright = bool(bright)
    mask = np.int64(-1)
    if not is_int:
        q = (1.0 + t) if bright else (1.0 - t)
        dec = _Decision(_KIND_FLOAT, bright, q, 0, 1)
        proto = np.zeros(1, dtype=np.float64)
        ak = an = a
        m_src = _absmax_numpy(a) if a.ndim > 3 else 0.0
    else:
        num, den = rational_threshold(t)
        qn = den + num if bright else den - num
        win = 1  # bounds the terms of any running sum: window + 1 per axis, clipped
        for hh, n in zip(h, a.shape, strict=True):
            win *= min(2 * hh + 2, n)
        info = np.iinfo(a.dtype)
        vmax = max(abs(int(info.min)), int(info.max))
        kind = _pick_int_kind(vmax * win, qn, den)
        if kind is None:
            # the dtype's range is too wide to be safe: look at the data's range (one read)
            vmax = max(abs(int(a.min())), abs(int(a.max())))
            kind = _pick_int_kind(vmax * win, qn, den)
            if kind is None:
                raise ParameterError(
                    f"image: values up to {vmax} summed over windows of up to {win} voxels could overflow "
                    "64-bit integer sums; convert the image to float64"
                )
        dec = _Decision(kind, bright, qn / den, qn, den)
        proto = np.zeros(1, dtype=np.int64)
        m_src = 0.0
        an = a
        if a.dtype == np.uint64:
            an = a = a.view(np.int64)  # every value < 2**61 here: same bits
        ak = a
        if a.dtype.kind == "u":
            # one compiled kernel per size: unsigned is read as signed and masked back
            ak = a.view(np.dtype(f"i{a.dtype.itemsize}"))
            mask = np.int64((1 << (8 * a.dtype.itemsize)) - 1)

    budget = int(a.nbytes)  # rolling planes may take at most the input's bytes
    ak = _readonly(ak)
    bad, unc = _solve(ak, an, mask, ak, mask, out, tuple(h), 1, 0.0, m_src, dec, threads, budget, proto)
    if bad:
        raise ParameterError(
            f"image: {bad} voxel(s) are NaN or infinite or lie in a window whose sum is not finite; "
            "NDNT needs finite values (replace them, e.g. with numpy.nan_to_num)"
        )
    if unc:
        _fixup_uncertain(a_full, out_full.view(np.uint8), shape, t, bright)
    return out_full
