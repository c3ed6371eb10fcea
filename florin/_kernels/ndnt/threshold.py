"""Thresholds and decisions of the NDNT kernel: rational thresholds, row decisions, exact fix-ups.

Part of the NDNT kernel; the definition and the design are in
:mod:`florin._kernels.ndnt` (normative: docs/concepts/ndnt.md).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from florin._kernels._jit import jit
from florin._kernels.ndnt.boxsum import _widen

MAX_DENOMINATOR = 2**20
"""Largest denominator of the rational threshold used for integer images."""

_KIND_FLOAT = 0
_KIND_INT = 1
_KIND_EXACT = 2

# Integer parameters ``ip`` and float parameters ``fp`` shared by the item kernels.
# _I_NZ: 1 when src is the image itself, so that its zeros are exact zeros (the nonzero counts apply)
_I_H0, _I_H1, _I_H2, _I_OUTER, _I_KIND, _I_SG, _I_NUM, _I_DEN, _I_NZ = range(9)
_F_Q, _F_KE, _F_KM, _F_ESRC = range(4)


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


class _Decision:
    """Scalar parameters of the decision, shared by every sub-problem."""

    def __init__(self, kind, bright, q, num, den):
        self.kind = int(kind)
        self.sg = -1 if bright else 1
        self.q = float(q)
        self.num = int(num)
        self.den = int(den)


def _pick_int_kind(bound: int, qn: int, den: int):
    if bound * max(qn, den) < 2**63:
        return _KIND_INT
    if bound < 2**61:
        return _KIND_EXACT
    return None


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
