"""Running window sums of the NDNT kernel and the error bounds of float sums.

Part of the NDNT kernel; the definition and the design are in
:mod:`florin._kernels.ndnt` (normative: docs/concepts/ndnt.md).
"""

from __future__ import annotations

import math

import numpy as np
from numba import types
from numba.extending import overload

from florin._kernels._jit import jit

_U = 2.0**-53  # unit roundoff of float64


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


def _axis_counts(n: int, h: int) -> np.ndarray:
    """count_a(i) = |[i-h, i+h] clipped to [0, n-1]|."""
    i = np.arange(n, dtype=np.int64)
    return np.minimum(i + h, n - 1) - np.maximum(i - h, 0) + 1


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
