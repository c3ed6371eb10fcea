"""The compiled NDNT work items: plane mode, direct mode and the parallel runner.

Part of the NDNT kernel; the definition and the design are in
:mod:`florin._kernels.ndnt` (normative: docs/concepts/ndnt.md).
"""

from __future__ import annotations

import numba
import numpy as np

from florin._kernels._jit import jit, parallel_jit
from florin._kernels.ndnt.boxsum import _plane_row_update, _row_stats, _xsum, _xsum2, _zrows_delta, _zrows_delta2
from florin._kernels.ndnt.threshold import (
    _F_Q,
    _I_H0,
    _I_H1,
    _I_H2,
    _I_KIND,
    _I_NZ,
    _I_OUTER,
    _decide_row,
    _float_tolerance,
)


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


# One runner per mode, not one taking ``plane`` as an argument: a run compiles only the mode it uses (the
# other item kernel is ~2 s of compile on a cold numba cache, and a runner's own compile grows with its callees).
@parallel_jit
def _run_plane(src, sm, vals, vm, out, items, cz, cy, cx, ip, fp, proto):
    """Run the plane-mode work items ``(z0, z1, y0, y1)`` in parallel, one ``prange`` iteration each."""
    bad = 0
    unc = 0
    for k in numba.prange(items.shape[0]):
        b, u = _item_plane(src, sm, vals, vm, out, items[k, 0], items[k, 1], cz, cy, cx, ip, fp, proto)
        bad += b
        unc += u
    return bad, unc


@parallel_jit
def _run_direct(src, sm, vals, vm, out, items, cz, cy, cx, ip, fp, proto):
    """Run the direct-mode work items ``(z0, z1, y0, y1)`` in parallel, one ``prange`` iteration each."""
    bad = 0
    unc = 0
    for k in numba.prange(items.shape[0]):
        b, u = _item_direct(
            src, sm, vals, vm, out, items[k, 0], items[k, 1], items[k, 2], items[k, 3], cz, cy, cx, ip, fp, proto
        )
        bad += b
        unc += u
    return bad, unc
