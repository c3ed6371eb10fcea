"""NDNT kernel: N-dimensional neighborhood thresholding on plain numpy arrays.

Definition (docs/concepts/ndnt.md, normative): with half widths ``h_a = s_a // 2`` the
window ``W(x) = prod_a [x_a - h_a, x_a + h_a]`` is clipped to the volume,
``count(x) = |W(x)|`` and ``sum(x)`` is the sum of the image over ``W(x)``.
A voxel is foreground iff

* dark (default):  ``I(x) * count(x) <= (1 - t) * sum(x)``
* bright:          ``I(x) * count(x) >= (1 + t) * sum(x)``

Design
------
The box sum is separable and is computed with running sums, never with an
integral image.  Every problem is brought to a canonical 3-D view ``(Z, Y, X)``
(length-1 axes are dropped, 1-D becomes ``(1, 1, n)``, 2-D ``(n0, 1, n1)``,
N > 3 is peeled axis by axis, see below); all views, no copies.

* ``x`` (innermost, contiguous): a running sum along each row, written to a
  row buffer, followed by a vectorised decision loop over the row.
* ``y``: one accumulator row per output row, updated by adding the entering
  and subtracting the leaving row.
* ``z``: either a rolling *plane* ``P`` (the sum of the input planes in the
  current z window, updated by adding the entering plane and subtracting the
  leaving one; its rows are updated lazily just before the y pass needs them so
  that they are still in cache), or, when the z window is a single plane or
  very small, or the plane would not fit the memory budget, "direct" mode where
  each entering/leaving row is summed over the z window on the fly.

Work is split over the outer axis (z chunks in plane mode, z x y blocks in
direct mode) and run with ``numba.prange``; with one thread the items are run
from Python by the serial kernels, so the parallel runtime is never entered
(safe after ``fork`` and inside thread executors).

For N > 3 the outermost axis is peeled in Python: if its half width is 0 each
hyperplane is an independent (N-1)-D problem; otherwise a rolling
(N-1)-D window sum (wide dtype) is kept and the inner problem is solved on it
while comparing against the image hyperplane.

Memory (beyond the output): plane mode holds one ``Y*X`` plane of the wide type
(floats: plus an int32 plane of non-zero counts) per running chunk (limited so that all of them take at most the input's bytes,
else direct mode is used), plus a few rows.  For N > 3 with a non-zero outer
half width, one rolling (N-1)-D wide sum per peeled axis is held as well
(``8 / (n0 * itemsize)`` of the input).  ``float16`` input is converted to a
``float32`` copy (numba has no float16 arithmetic).

Arithmetic
----------
* Floats (float16/32/64): accumulation in float64, decision
  ``float64(I) * count <= (1 -+ t) * sum`` -- and the decisions are *certified
  exact* (equal to exact real arithmetic on the stored values and ``t``):

  - while rows enter the running sums (still in cache) the kernel keeps
    ``M >= max |I|`` of what entered so far and whether all of it are integers
    (then, with ``M * window < 2**53``, all sums are exact); both are scanned as
    integer bit patterns so that the scan vectorises; ``_float_error_coefs``
    turns ``M`` into a proven bound on the error of every running sum;
  - running sums leave rounding *residue* (e.g. after 0.1, 0.2, 0.3 or a huge
    value left the window), which matters where the true sum is exactly 0
    (e.g. a zero background): when a run leaves more than ``_NZ_RERUN``
    uncertain voxels it is redone with an exact int32 running count of the
    non-zero values per window, and windows without any take the sum 0;
  - a voxel whose margin ``|I*count - q*sum|`` is within the bound is flagged
    (2 in the uint8 view of the output) and decided afterwards in Python with
    exact rationals (``_fixup_uncertain``): for ordinary data none or a handful.

  NaN/inf values are counted in the decision loop (free) and raise a
  ParameterError after the run.
* Integers (bool, int8 ... uint64): accumulation in int64, decisions exact.
  The threshold is taken as the rational ``t = num/den`` nearest to it with
  ``den <= 2**20`` (``rational_threshold``); this is exactly the decimal the
  user typed for any threshold with at most 6 decimals (0.1 -> 1/10,
  33.3 % -> 333/1000) and differs from any other float by < 1e-12.  With
  ``q = 1 -+ t = qn/den`` the decision is the sign of
  ``I*count*den - qn*sum``:

  - kind 1 ("int"), when ``B * max(qn, den) < 2**63`` where ``B`` bounds
    ``|I|*count`` and every running sum: plain int64 products;
  - kind 2 ("exact"), when only ``B < 2**61``: a float64 estimate decides all
    voxels except those within a relative 1e-12 of the threshold, which are
    decided exactly with a division-split int64 computation (``_cmp_exact``);
  - otherwise a ParameterError (int64/uint64 data whose magnitude times the
    window size exceeds 2**61; convert such data to float64).

  ``B`` is first bounded by the dtype range; only when that is too large the
  data's actual min/max are computed (one extra read of the data).
  ``uint64`` data below 2**63 are viewed (not copied) as int64.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numba
import numpy as np
from numba import types
from numba.extending import overload

from florin._kernels._jit import jit, parallel_jit
from florin._kernels._threads import numba_threads
from florin.errors import ParameterError

__all__ = ["ndnt_mask", "rational_threshold"]

MAX_DENOMINATOR = 2**20
"""Largest denominator of the rational threshold used for integer images."""

_KIND_FLOAT = 0
_KIND_INT = 1
_KIND_EXACT = 2

# Below this z-window length direct mode is at least as cheap as a rolling plane.
_DIRECT_MAX_ZWINDOW = 2

# Float runs with more uncertain voxels than this are redone with non-zero counts.
_NZ_RERUN = 256


# --------------------------------------------------------------------------------------
# threshold as a rational
# --------------------------------------------------------------------------------------
def rational_threshold(t: float) -> tuple[int, int]:
    """Return ``(num, den)``, the fraction nearest to ``t`` with ``den <= 2**20``.

    Integer images are decided exactly against this rational.  Every decimal with
    at most six digits after the point is recovered exactly.

    Examples
    --------
    >>> rational_threshold(0.1)
    (1, 10)
    >>> rational_threshold(0.25)
    (1, 4)
    >>> rational_threshold(33.3 / 100)
    (333, 1000)
    """
    f = Fraction(float(t)).limit_denominator(MAX_DENOMINATOR)
    return f.numerator, f.denominator


# --------------------------------------------------------------------------------------
# numba building blocks (serial)
# --------------------------------------------------------------------------------------
def _widen(v, mask):
    """Value of ``v`` in the accumulator type (numba only, see the overload below).

    Unsigned images are passed to the kernels viewed as the signed type of the
    same size (so that one compiled kernel serves both); ``mask`` (e.g. 0xFF for
    uint8, -1 for signed types) recovers the unsigned value from the
    sign-extended one.  Floats widen to float64 and ignore ``mask``.
    """
    raise NotImplementedError


@overload(_widen, inline="always")
def _widen_impl(v, mask):
    if isinstance(v, types.Float):
        return lambda v, mask: np.float64(v)
    return lambda v, mask: np.int64(v) & mask


@jit
def _xsum(acc, s, h):
    """s[x] = sum of acc over [x-h, x+h] clipped; a running sum along the row."""
    n = acc.shape[0]
    r = acc[0] - acc[0]
    hi = min(h, n - 1)
    for j in range(hi + 1):
        r += acc[j]
    e_sub = min(h, n)  # x >= e_sub: the leaving element x-h exists
    e_add = max(n - h - 1, 0)  # x < e_add: the entering element x+h+1 exists
    b1 = min(e_sub, e_add)
    b2 = max(e_sub, e_add)
    for x in range(b1):
        s[x] = r
        r += acc[x + h + 1]
    if e_sub < e_add:
        for x in range(b1, b2):
            s[x] = r
            r += acc[x + h + 1] - acc[x - h]
    else:
        for x in range(b1, b2):
            s[x] = r
    for x in range(b2, n):
        s[x] = r
        r -= acc[x - h]


@jit
def _xsum2(acc, accn, s, sn, h):
    """``_xsum`` of ``acc`` into ``s`` and of ``accn`` into ``sn`` in one loop (two independent chains)."""
    n = acc.shape[0]
    r = acc[0] - acc[0]
    rn = accn[0] - accn[0]
    hi = min(h, n - 1)
    for j in range(hi + 1):
        r += acc[j]
        rn += accn[j]
    e_sub = min(h, n)
    e_add = max(n - h - 1, 0)
    b1 = min(e_sub, e_add)
    b2 = max(e_sub, e_add)
    for x in range(b1):
        s[x] = r
        sn[x] = rn
        r += acc[x + h + 1]
        rn += accn[x + h + 1]
    if e_sub < e_add:
        for x in range(b1, b2):
            s[x] = r
            sn[x] = rn
            r += acc[x + h + 1] - acc[x - h]
            rn += accn[x + h + 1] - accn[x - h]
    else:
        for x in range(b1, b2):
            s[x] = r
            sn[x] = rn
    for x in range(b2, n):
        s[x] = r
        sn[x] = rn
        r -= acc[x - h]
        rn -= accn[x - h]


@jit
def _cmp_exact(a, s, num, den):
    """Exact sign of ``a*den - num*s`` for int64 a, s with |a|, |s| < 2**61, den <= 2**20.

    Writes ``num*s = num*qs*den + num*rs`` with ``s = qs*den + rs``, ``0 <= rs < den``,
    so that no product exceeds 2**62.
    """
    qs = s // den
    rs = s - qs * den
    u = a - num * qs
    if u >= 4398046511104:  # 2**42 > num*rs/den
        return 1
    if u <= -4398046511104:
        return -1
    v = u * den - num * rs
    if v > 0:
        return 1
    if v < 0:
        return -1
    return 0


# Integer parameters ``ip`` and float parameters ``fp`` shared by the item kernels.
# _I_NZ: 1 when src is the image itself, so that its zeros are exact zeros (the nonzero counts apply)
_I_H0, _I_H1, _I_H2, _I_OUTER, _I_KIND, _I_SG, _I_NUM, _I_DEN, _I_NZ = range(9)
_F_Q, _F_KE, _F_KM, _F_ESRC = range(4)


@jit
def _decide_row(vals, vm, s, sn, out, cx, cnt_row, ip, q, tol_abs):
    """Decide one row into ``out`` (uint8: 0/1, or 2 = float decision not certain).

    Returns ``(non-finite count, uncertain count)``; both are 0 for integers.
    ``sg`` is 1 for dark (``lhs <= rhs``) and -1 for bright (``lhs >= rhs``, i.e.
    ``-lhs <= -rhs``); negation is exact in float and int64 arithmetic.
    Floats: ``sn`` holds the number of non-zero values in each window; where it
    is 0 the sum is exactly 0 (running sums may have left a rounding residue).
    """
    n = vals.shape[0]
    kind = ip[_I_KIND]
    sg = ip[_I_SG]
    bad = 0
    unc = 0
    if kind == 0:
        c = sg * np.float64(cnt_row)
        qq = sg * q
        for x in range(n):
            v = _widen(vals[x], vm)
            nzw = sn[x] != 0
            sx = s[x] if nzw else 0.0
            t1 = v * (c * cx[x])
            t2 = qq * sx
            d = t1 - t2
            # |computed d - exact d| <= 3u(|t1|+|t2|) + |q| * (error bound of s): see _float_error_coefs
            u = abs(d) < 4.5e-16 * (abs(t1) + abs(t2)) + (tol_abs if nzw else 0.0)
            out[x] = 2 if u else (1 if d <= 0.0 else 0)
            unc += u
            bad += (v - v) + (sx - sx) != 0.0  # NaN/inf value, or a non-finite sum
    elif kind == 1:
        k = sg * cnt_row * ip[_I_DEN]
        nn = sg * ip[_I_NUM]
        for x in range(n):
            out[x] = _widen(vals[x], vm) * (k * cx[x]) <= nn * s[x]
    else:
        num = ip[_I_NUM]
        den = ip[_I_DEN]
        for x in range(n):
            a = np.int64(_widen(vals[x], vm)) * (cnt_row * cx[x])
            sv = np.int64(s[x])
            af = np.float64(a)
            rf = q * np.float64(sv)
            d = af - rf
            # |rounding error of d| < 1e-15 * (|af| + |rf|): outside the band the float sign is right
            tol = 1e-12 * (abs(af) + abs(rf))
            if d > tol:
                sign = 1
            elif d < -tol:
                sign = -1
            else:
                sign = _cmp_exact(a, sv, num, den)
            out[x] = sg * sign <= 0
    return bad, unc


def _row_stats(src, z, r):
    """``(upper bound of max |v|, 1 if some v is not an integer else 0)`` over the float row ``src[z, r]``.

    numba only (see the overload): C-contiguous rows are scanned as integer bit
    patterns (integer max/or reductions vectorise, float ones do not).
    """
    raise NotImplementedError


@overload(_row_stats)
def _row_stats_impl(src, z, r):
    if not isinstance(src.dtype, types.Float):
        return lambda src, z, r: (0.0, 0)
    if src.layout == "C" and src.dtype.bitwidth in (32, 64):
        if src.dtype.bitwidth == 32:
            ity, mbits, bias, absmask = np.int32, 23, 127, 0x7FFFFFFF
        else:
            ity, mbits, bias, absmask = np.int64, 52, 1023, 0x7FFFFFFFFFFFFFFF
        one = ity(1)

        def impl(src, z, r):
            bits = src[z, r].view(ity)
            mb = ity(0)
            nonint = ity(0)
            for j in range(bits.shape[0]):
                x = bits[j] & absmask
                mb = max(mb, x)
                sh = (bias + mbits) - (x >> mbits)  # number of fraction bits below the binary point
                frac = x & ((one << min(max(sh, 0), mbits)) - one)
                nonint |= ity((sh > mbits) & (x != 0)) | ity((sh > 0) & (frac != 0))
            # |v| < 2**(exponent - bias + 1)
            return math.ldexp(1.0, int(mb >> mbits) - bias + 1), int(nonint)

        return impl

    def impl_any(src, z, r):
        row = src[z, r]
        m = 0.0
        nonint = 0
        for j in range(row.shape[0]):
            v = np.float64(row[j])
            m = max(m, abs(v))
            if v != np.floor(v):
                nonint = 1
        return m, nonint

    return impl_any


@jit
def _float_tolerance(m, frac, fp, wbound):
    """Absolute error bound (times |q|) of the float window sums built from values up to ``m``.

    ``m`` bounds |src| over every value that entered the running sums so far;
    when all of them are integers (``frac == 0``) and ``m * wbound < 2**53``
    all running sums are exact and the bound is the propagated input error only.
    """
    km = fp[_F_KM]
    if frac == 0.0 and m * wbound < 9007199254740992.0:
        km = 0.0
    return 1.01 * abs(fp[_F_Q]) * (fp[_F_KE] * fp[_F_ESRC] + km * m)


@jit
def _item_plane(src, sm, vals, vm, out, z0, z1, cz, cy, cx, ip, fp, proto):
    """Plane mode: z in [z0, z1), all rows, with a rolling z-window plane P."""
    nz, ny, nx = src.shape
    h0 = ip[_I_H0]
    h1 = ip[_I_H1]
    h2 = ip[_I_H2]
    fl = ip[_I_KIND] == 0
    q = fp[_F_Q]
    # floats: statistics of every value that entered P so far (read while it is in cache)
    m = 0.0
    frac = 0.0
    wb = (min(2 * h0 + 1, nz) + 2) * (min(2 * h1 + 1, ny) + 2) * (min(2 * h2 + 1, nx) + 2)
    P = np.zeros((ny, nx), proto.dtype)
    acc = np.empty(nx, proto.dtype)
    s = np.empty(nx, proto.dtype)
    # floats: the same running sums of the non-zero indicator (exact, int32)
    fl_nz = fl and ip[_I_NZ] == 1
    Pn = np.zeros((ny if fl_nz else 1, nx), np.int32)
    accn = np.zeros(nx, np.int32)
    sn = np.ones(nx, np.int32)  # stays "non-zero" unless counted
    bad = 0
    unc = 0
    # P = sum of the planes in the window of z0
    for zz in range(max(0, z0 - h0), min(nz - 1, z0 + h0) + 1):
        for r in range(ny):
            if fl_nz:
                _zrows_delta2(P[r], Pn[r], src, zz, zz, r, 0, 1, 0)
            else:
                _zrows_delta(P[r], src, sm, zz, zz, r, 0, 1, 0)
            if fl:
                rm, rf = _row_stats(src, zz, r)
                m = max(m, rm)
                frac += rf
    for z in range(z0, z1):
        # entering plane z+h0 (if it exists) and leaving plane z-h0-1 (if it exists)
        za = min(z + h0, nz - 1)
        zs = max(z - h0 - 1, 0)
        wa = 1 if (z > z0 and z + h0 < nz) else 0
        ws = 1 if (z > z0 and z - h0 - 1 >= 0) else 0
        moved = wa + ws > 0
        # Each row of P is brought to the window of z right before it enters acc
        # (so it is still in cache when acc reads it); it leaves acc 2*h1+1 rows later.
        acc[:] = 0
        accn[:] = 0
        for r in range(min(h1, ny - 1) + 1):
            if moved:
                _plane_row_update(P, Pn, src, sm, za, zs, wa, ws, r, fl_nz)
                if fl and wa:
                    rm, rf = _row_stats(src, za, r)
                    m = max(m, rm)
                    frac += rf
            for j in range(nx):
                acc[j] += P[r, j]
            if fl_nz:
                for j in range(nx):
                    accn[j] += Pn[r, j]
        cnt_z = ip[_I_OUTER] * cz[z]
        for y in range(ny):
            if fl_nz:
                _xsum2(acc, accn, s, sn, h2)
            else:
                _xsum(acc, s, h2)
            tol_abs = _float_tolerance(m, frac, fp, wb) if fl else 0.0
            b, u = _decide_row(vals[z, y], vm, s, sn, out[z, y], cx, cnt_z * cy[y], ip, q, tol_abs)
            bad += b
            unc += u
            ri = y + h1 + 1
            ro = y - h1
            wi = 1 if ri < ny else 0
            wo = 1 if ro >= 0 else 0
            ri = min(ri, ny - 1)
            ro = max(ro, 0)
            if moved and wi:
                _plane_row_update(P, Pn, src, sm, za, zs, wa, ws, ri, fl_nz)
                if fl and wa:
                    rm, rf = _row_stats(src, za, ri)
                    m = max(m, rm)
                    frac += rf
            if wi + wo:
                if fl_nz:
                    for j in range(nx):
                        acc[j] += wi * P[ri, j] - wo * P[ro, j]
                        accn[j] += wi * Pn[ri, j] - wo * Pn[ro, j]
                else:
                    for j in range(nx):
                        acc[j] += wi * P[ri, j] - wo * P[ro, j]
    return bad, unc


@jit
def _plane_row_update(P, Pn, src, sm, za, zs, wa, ws, r, nz):
    """P[r] += wa * src[za, r] - ws * src[zs, r]; with ``nz`` also the non-zero counts Pn[r]."""
    row = P[r]
    if nz:
        rown = Pn[r]
        for j in range(row.shape[0]):
            va = src[za, r, j]
            vs = src[zs, r, j]
            row[j] += wa * _widen(va, sm) - ws * _widen(vs, sm)
            rown[j] += wa * np.int32(va != 0) - ws * np.int32(vs != 0)
    else:
        for j in range(row.shape[0]):
            row[j] += wa * _widen(src[za, r, j], sm) - ws * _widen(src[zs, r, j], sm)


@jit
def _zrows_delta(acc, src, sm, zlo, zhi, ri, ro, wi, wo):
    """acc += sum_{zz in [zlo, zhi]} (wi * src[zz, ri, :] - wo * src[zz, ro, :])."""
    nx = acc.shape[0]
    if wo == 0:
        for zz in range(zlo, zhi + 1):
            for j in range(nx):
                acc[j] += wi * _widen(src[zz, ri, j], sm)
    else:
        for zz in range(zlo, zhi + 1):
            for j in range(nx):
                acc[j] += wi * _widen(src[zz, ri, j], sm) - wo * _widen(src[zz, ro, j], sm)


@jit
def _zrows_delta2(acc, accn, src, zlo, zhi, ri, ro, wi, wo):
    """``_zrows_delta`` (floats) and the same sums of the non-zero indicator into ``accn``."""
    nx = acc.shape[0]
    for zz in range(zlo, zhi + 1):
        for j in range(nx):
            va = src[zz, ri, j]
            vo = src[zz, ro, j]
            acc[j] += wi * np.float64(va) - wo * np.float64(vo)
            accn[j] += wi * np.int32(va != 0) - wo * np.int32(vo != 0)


@jit
def _item_direct(src, sm, vals, vm, out, z0, z1, y0, y1, cz, cy, cx, ip, fp, proto):
    """Direct mode: z in [z0, z1), rows [y0, y1); rows summed over the z window on the fly."""
    nz, ny, nx = src.shape
    h0 = ip[_I_H0]
    h1 = ip[_I_H1]
    h2 = ip[_I_H2]
    fl = ip[_I_KIND] == 0
    q = fp[_F_Q]
    tol_abs = 0.0
    if fl:
        wb = (min(2 * h0 + 1, nz) + 2) * (min(2 * h1 + 1, ny) + 2) * (min(2 * h2 + 1, nx) + 2)
        m = 0.0
        frac = 0.0
        for zz in range(max(0, z0 - h0), min(nz, z1 + h0)):
            for r in range(max(0, y0 - h1), min(ny, y1 + h1 + 1)):
                rm, rf = _row_stats(src, zz, r)
                m = max(m, rm)
                frac += rf
        tol_abs = _float_tolerance(m, frac, fp, wb)
    acc = np.empty(nx, proto.dtype)
    s = np.empty(nx, proto.dtype)
    fl_nz = fl and ip[_I_NZ] == 1
    accn = np.zeros(nx, np.int32)
    sn = np.ones(nx, np.int32)  # stays "non-zero" unless counted
    bad = 0
    unc = 0
    for z in range(z0, z1):
        zlo = max(0, z - h0)
        zhi = min(nz - 1, z + h0)
        acc[:] = 0
        accn[:] = 0
        for r in range(max(0, y0 - h1), min(ny - 1, y0 + h1) + 1):
            if fl_nz:
                _zrows_delta2(acc, accn, src, zlo, zhi, r, 0, 1, 0)
            else:
                _zrows_delta(acc, src, sm, zlo, zhi, r, 0, 1, 0)
        cnt_z = ip[_I_OUTER] * cz[z]
        for y in range(y0, y1):
            if fl_nz:
                _xsum2(acc, accn, s, sn, h2)
            else:
                _xsum(acc, s, h2)
            b, u = _decide_row(vals[z, y], vm, s, sn, out[z, y], cx, cnt_z * cy[y], ip, q, tol_abs)
            bad += b
            unc += u
            ri = y + h1 + 1
            ro = y - h1
            wi = 1 if ri < ny else 0
            wo = 1 if ro >= 0 else 0
            if y + 1 < y1 and wi + wo:
                if fl_nz:
                    _zrows_delta2(acc, accn, src, zlo, zhi, min(ri, ny - 1), max(ro, 0), wi, wo)
                else:
                    _zrows_delta(acc, src, sm, zlo, zhi, min(ri, ny - 1), max(ro, 0), wi, wo)
    return bad, unc


@parallel_jit
def _run_parallel(src, sm, vals, vm, out, items, plane, cz, cy, cx, ip, fp, proto):
    """Run the work items ``(z0, z1, y0, y1)`` in parallel, one ``prange`` iteration each."""
    bad = 0
    unc = 0
    for k in numba.prange(items.shape[0]):
        if plane:
            b, u = _item_plane(src, sm, vals, vm, out, items[k, 0], items[k, 1], cz, cy, cx, ip, fp, proto)
        else:
            b, u = _item_direct(
                src, sm, vals, vm, out, items[k, 0], items[k, 1], items[k, 2], items[k, 3], cz, cy, cx, ip, fp, proto
            )
        bad += b
        unc += u
    return bad, unc


# --------------------------------------------------------------------------------------
# planning (Python)
# --------------------------------------------------------------------------------------
def _axis_counts(n: int, h: int) -> np.ndarray:
    """count_a(i) = |[i-h, i+h] clipped to [0, n-1]|."""
    i = np.arange(n, dtype=np.int64)
    return np.minimum(i + h, n - 1) - np.maximum(i - h, 0) + 1


def _split(n: int, parts: int) -> list[int]:
    parts = max(1, min(parts, n))
    return [(n * k) // parts for k in range(parts + 1)]


class _Decision:
    """Scalar parameters of the decision, shared by every sub-problem."""

    def __init__(self, kind, bright, q, num, den):
        self.kind = int(kind)
        self.sg = -1 if bright else 1
        self.q = float(q)
        self.num = int(num)
        self.den = int(den)


_U = 2.0**-53  # unit roundoff of float64


def _float_error_coefs(plane: bool, nz: int, ny: int, nx: int, a: int, b: int, c: int) -> tuple[float, float]:
    """``(K_e, K_m)`` with |computed window sum - exact| <= K_e * e + K_m * M.

    ``M`` bounds |src| over the item, ``e`` the error of each src entry (0 for the
    image itself); ``a, b, c`` are the clipped window lengths along z, y, x.
    Every rounding is at most ``u * |result|``, and every partial result of the
    running sums is bounded by the sum of |src| over a window one wider than
    the real one per axis (plus one entering minus leaving term), hence the
    ``(a + 2)`` etc. factors:

    * plane mode, P entries (``a`` terms, <= ``2 nz + a`` roundings):
      ``err_P = a e + u (a+2) (2 nz + a) M``
    * direct mode rows (``2 a`` roundings per row step):
      ``err_acc = a b e + u 2a (ny + b) (b+2)(a+2) M``
    * accumulator rows (``b`` P rows, ``2 ny + b`` roundings):
      ``err_acc = b err_P + u (2 ny + b) (b+2)(a+2) M``
    * x sums: ``err_s = c err_acc + u (2 nx + c) (c+2)(b+2)(a+2) M``

    A 25 % margin covers the second-order terms.
    """
    if plane:
        ke_acc = b * a
        km_acc = b * _U * (a + 2) * (2 * nz + a) + _U * (2 * ny + b) * (b + 2) * (a + 2)
    else:
        ke_acc = a * b
        km_acc = _U * 2 * a * (ny + b) * (b + 2) * (a + 2)
    ke = c * ke_acc
    km = c * km_acc + _U * (2 * nx + c) * (c + 2) * (b + 2) * (a + 2)
    return 1.25 * ke, 1.25 * km


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
            return _run_parallel(src, sm, vals, vm, out, items, plane, cz, cy, cx, ip, fp, proto)

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


def _fixup_uncertain(image, out_u8, shape, t, bright):
    """Decide the voxels flagged 2 exactly, in Python integers.

    These are the float voxels whose margin lies within the proven error bound
    of the running sums: rare for ordinary data (none for integer-valued
    floats), but possible with extreme dynamic ranges or near-exact ties.
    Every float is ``n / 2**k``, so the window sum, ``I * count`` and
    ``q = 1 -+ t`` are compared as exact rationals.
    """
    h = [s // 2 for s in shape]
    tn, td = Fraction(t).as_integer_ratio()
    qn = td + tn if bright else td - tn  # q = qn / td exactly
    flat = out_u8.reshape(-1)  # out is C-contiguous (allocated here)
    chunk = 1 << 22
    for start in range(0, flat.size, chunk):
        for k in np.flatnonzero(flat[start : start + chunk] == 2):
            pos = start + int(k)
            idx = np.unravel_index(pos, image.shape)
            sl = tuple(slice(max(0, i - hh), min(n, i + hh + 1)) for i, hh, n in zip(idx, h, image.shape, strict=True))
            window = np.asarray(image[sl], dtype=np.float64).ravel().tolist()
            ratios = [v.as_integer_ratio() for v in window]
            den = max(d for _, d in ratios)  # a power of two: every d divides it
            total = sum(n * (den // d) for n, d in ratios)  # window sum = total / den
            vn, vd = float(image[idx]).as_integer_ratio()
            lhs = vn * len(window) * td * den  # I * count, scaled by vd * td * den
            rhs = qn * total * vd  # q * sum, same scale
            flat[pos] = (lhs >= rhs) if bright else (lhs <= rhs)


def _default_threads() -> int:
    return numba.get_num_threads()


_COPY_MAX_BYTES = 256 << 20  # larger strided inputs are read in place (no extra memory)


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
    out_full = np.empty(full_shape, dtype=bool)
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


def _pick_int_kind(bound: int, qn: int, den: int):
    if bound * max(qn, den) < 2**63:
        return _KIND_INT
    if bound < 2**61:
        return _KIND_EXACT
    return None
