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

Modules
-------
* :mod:`.threshold` -- the threshold as a rational, the per-row decision and the
  exact fix-up of uncertain float voxels;
* :mod:`.boxsum` -- running window sums along rows, planes and the z window,
  and the proven error bounds of float sums;
* :mod:`.items` -- the compiled work items (plane and direct mode) and their
  parallel runner;
* :mod:`.driver` -- ``ndnt_mask``: dtype handling, the canonical 3-D view,
  planning of the work items and the N > 3 peeling.
"""

from florin._kernels.ndnt.driver import ndnt_mask
from florin._kernels.ndnt.threshold import MAX_DENOMINATOR, rational_threshold

__all__ = ["MAX_DENOMINATOR", "ndnt_mask", "rational_threshold"]
