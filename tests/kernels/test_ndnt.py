"""Tests of the NDNT kernel (florin._kernels.ndnt) and its argument checks (florin._ndnt_checks).

Float results are compared with the float64 oracle of docs/concepts/ndnt.md and may
differ only where ``|I*count - (1-t)*sum| <= 1e-9*|sum|``; integer results are
compared for exact equality with an oracle in Python integers.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.ndimage import uniform_filter

import florin._kernels.ndnt.driver as ndnt_module  # the tuning constants live in the driver
from florin._kernels.ndnt import MAX_DENOMINATOR, ndnt_mask, rational_threshold
from florin._ndnt_checks import default_shape, validate_ndnt_args
from florin.errors import ParameterError

INT_DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64]
FLOAT_DTYPES = [np.float32, np.float64]


# --------------------------------------------------------------------------------------
# oracles
# --------------------------------------------------------------------------------------
def _counts(shape, h):
    """count(x) as an int64 array (product of the per-axis clipped window lengths)."""
    c = np.ones(shape, dtype=np.int64)
    for ax, (n, hh) in enumerate(zip(shape, h, strict=True)):
        i = np.arange(n)
        ca = np.minimum(i + hh, n - 1) - np.maximum(i - hh, 0) + 1
        c = c * ca.reshape([-1 if k == ax else 1 for k in range(len(shape))])
    return c


def float_oracle(image, shape, t, bright):
    """(decision, ambiguous) with the float64 oracle of ARCHITECTURE.md."""
    image = np.asarray(image, dtype=np.float64)
    h = [s // 2 for s in shape]
    size = [2 * hh + 1 for hh in h]
    mean = uniform_filter(image, size, mode="constant") / uniform_filter(np.ones_like(image), size, mode="constant")
    count = _counts(image.shape, h)
    total = mean * count
    q = 1 + t if bright else 1 - t
    lhs = image * count
    rhs = q * total
    decision = lhs >= rhs if bright else lhs <= rhs
    ambiguous = np.abs(lhs - rhs) <= 1e-9 * np.abs(total)
    return decision, ambiguous


def exact_oracle(image, shape, t, bright):
    """Exact decision in Python rationals.

    Integers are compared against the kernel's rational threshold
    (``rational_threshold``); floats are taken at their exact binary values with
    the exact ``q = 1 -+ t`` of the float ``t``.
    """
    image = np.asarray(image)
    if image.dtype.kind == "f":
        values = np.frompyfunc(Fraction, 1, 1)(image.astype(np.float64).astype(object))
        tq = Fraction(float(t))
    else:
        values = image.astype(object)
        tq = Fraction(*rational_threshold(t))
    values = np.asarray(values, dtype=object).reshape(image.shape)
    h = [s // 2 for s in shape]
    total = values
    for ax, hh in enumerate(h):
        n = total.shape[ax]
        c = np.cumsum(total, axis=ax)
        zero = np.zeros_like(np.take(c, [0], axis=ax))
        c = np.concatenate([zero, c], axis=ax)  # c[k] = sum of the first k entries
        hi = np.minimum(np.arange(n) + hh + 1, n)
        lo = np.maximum(np.arange(n) - hh, 0)
        total = np.take(c, hi, axis=ax) - np.take(c, lo, axis=ax)
    lhs = values * _counts(image.shape, h).astype(object)
    if bright:
        return np.asarray(lhs >= (1 + tq) * total, dtype=bool)
    return np.asarray(lhs <= (1 - tq) * total, dtype=bool)


def assert_float_matches(image, shape, t, bright, threads=1):
    got = ndnt_mask(image, shape, t, bright, threads=threads)
    want, ambiguous = float_oracle(image, shape, t, bright)
    assert got.shape == image.shape and got.dtype == bool
    bad = (got != want) & ~ambiguous
    assert not bad.any(), f"{bad.sum()} voxels differ outside the tolerance band, first at {np.argwhere(bad)[0]}"
    return got


def assert_exact_matches(image, shape, t, bright, threads=1):
    got = ndnt_mask(image, shape, t, bright, threads=threads)
    want = exact_oracle(image, shape, t, bright)
    assert got.shape == image.shape and got.dtype == bool
    np.testing.assert_array_equal(got, want)
    return got


def random_ints(rng, dtype, shape, narrow):
    """Full-range values, or (narrow) a few small values so that exact ties are frequent."""
    info = np.iinfo(dtype)
    if np.dtype(dtype).itemsize == 8 and not narrow:  # full 64-bit range overflows by design (tested apart)
        lo = 0 if info.min == 0 else -(2**40)
        return rng.integers(lo, 2**40, size=shape, dtype=dtype)
    if narrow:
        lo, hi = max(int(info.min), -3), min(int(info.max), 3)
        return rng.integers(lo, hi, size=shape, endpoint=True).astype(dtype)
    return rng.integers(int(info.min), int(info.max), size=shape, endpoint=True, dtype=dtype)


# (volume shape, neighborhood shape): odd, even, larger than the volume, entries of 1
CASES = [
    ((41,), (7,)),
    ((41,), (6,)),
    ((9,), (50,)),
    ((13, 17), (5, 4)),
    ((13, 17), (1, 9)),
    ((6, 11), (30, 3)),
    ((7, 9, 11), (3, 4, 5)),
    ((7, 9, 11), (1, 5, 5)),
    ((5, 6, 7), (20, 1, 3)),
    ((9, 1, 12), (3, 3, 3)),
    ((3, 4, 5, 6), (3, 2, 3, 5)),
    ((3, 4, 5, 6), (1, 3, 3, 3)),
]


# --------------------------------------------------------------------------------------
# the oracles themselves
# --------------------------------------------------------------------------------------
def test_oracles_agree_away_from_ties():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 1000, size=(6, 7, 8)).astype(np.int32)
    exact = exact_oracle(image, (3, 4, 5), 0.3, False)
    fl, ambiguous = float_oracle(image, (3, 4, 5), 0.3, False)
    assert ((exact == fl) | ambiguous).all()


def test_rational_threshold_recovers_decimals():
    assert rational_threshold(0.1) == (1, 10)
    assert rational_threshold(0.25) == (1, 4)
    assert rational_threshold(0.0) == (0, 1)
    assert rational_threshold(1.0) == (1, 1)
    assert rational_threshold(33.3 / 100) == (333, 1000)
    assert rational_threshold(0.123456) == (1929, 15625)
    assert rational_threshold(1 / 3) == (1, 3)
    num, den = rational_threshold(math.pi / 10)
    assert den <= MAX_DENOMINATOR and abs(num / den - math.pi / 10) < 1e-11


# --------------------------------------------------------------------------------------
# exactness for integers, tolerance for floats
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", INT_DTYPES + [np.bool_], ids=lambda d: np.dtype(d).name)
def test_integer_dtypes_are_exact(dtype):
    rng = np.random.default_rng(abs(hash(np.dtype(dtype).name)) % 2**32)
    for k, (vshape, nshape) in enumerate(CASES):
        if len(vshape) == 4 and dtype not in (np.uint8, np.int64, np.bool_):
            continue  # 4-D compiles extra specializations; covered by a few dtypes
        for narrow in (True, False):
            if dtype is np.bool_:
                image = rng.integers(0, 2, size=vshape).astype(bool)
            else:
                image = random_ints(rng, dtype, vshape, narrow)
            bright = (k + narrow) % 2 == 1
            t = (0.25, 0.1, 0.0, 1.0, 0.333)[k % 5]
            assert_exact_matches(image, nshape, t, bright)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("bright", [False, True], ids=["dark", "bright"])
def test_float_dtypes_match_oracle(dtype, bright):
    rng = np.random.default_rng(7)
    for k, (vshape, nshape) in enumerate(CASES):
        if len(vshape) == 4 and dtype is np.float64:
            continue
        image = (rng.random(vshape) * 100 - (20 if k % 3 == 0 else 0)).astype(dtype)
        t = (0.25, 0.1, 0.0, 1.0, 0.05)[k % 5]
        got = assert_float_matches(image, nshape, t, bright)
        # decisions are certified: they equal exact arithmetic
        np.testing.assert_array_equal(got, exact_oracle(image, nshape, t, bright))


@pytest.mark.parametrize("rerun", [None, 0], ids=["default", "always-count-nonzeros"])
def test_float_rounding_residue_and_zero_windows_are_exact(rerun, monkeypatch):
    if rerun is not None:  # force the second pass with exact non-zero counts
        monkeypatch.setattr(ndnt_module, "_NZ_RERUN", rerun)
    # Running sums leave rounding residue after values such as 0.1, 0.2, 0.3 or a
    # huge value leave the window; windows that sum to exactly 0 must still
    # decide 0 <= q*0 (dark) and 0 >= q*0 (bright), and near-cancellations exactly.
    rng = np.random.default_rng(8)
    pool = np.array([0.0, 0.0, 0.0, 0.1, 0.2, 0.3, 1e16, -1e16, 1e-300, 7.0, -2.5])
    for trial in range(48):
        ndim = 1 + trial % 4
        vshape = tuple(rng.integers(2, 9 if ndim < 4 else 5, size=ndim))
        image = rng.choice(pool, size=vshape)
        if trial % 2:
            image = image.astype(np.float32)
        nshape = tuple(rng.integers(1, 6, size=ndim))
        for t, bright in [(0.0, False), (0.0, True), (0.5, True), (0.1, False)]:
            np.testing.assert_array_equal(ndnt_mask(image, nshape, t, bright), exact_oracle(image, nshape, t, bright))
    # a long zero background behind a non-integer object, bright polarity
    image = np.zeros((3, 40, 50), dtype=np.float32)
    image[1, 5:9, 3:7] = rng.random((4, 4)).astype(np.float32) * 1000
    got = ndnt_mask(image, (3, 5, 5), 0.25, bright=True)
    np.testing.assert_array_equal(got, exact_oracle(image, (3, 5, 5), 0.25, True))
    assert got[:, 20:, 20:].all()  # 0 >= 1.25 * 0


def test_float_ties_on_integer_valued_floats():
    # Integer-valued floats: sums are exact, so only true ties are ambiguous.
    rng = np.random.default_rng(3)
    image = rng.integers(0, 4, size=(8, 9, 10)).astype(np.float32)
    got = assert_float_matches(image, (3, 3, 3), 0.25, False)
    assert got.any() and not got.all()


def test_exact_ties_are_foreground():
    # centre: 9 * 3 == 0.9 * 30 exactly; dark with t = 0.1 must include it
    for dtype in (np.uint8, np.int32, np.int64):
        image = np.array([10, 9, 11], dtype=dtype)
        assert ndnt_mask(image, (3,), 0.1).tolist() == [False, True, False]
    # bright: 11 * 3 == 1.1 * 30
    image = np.array([10, 11, 9], dtype=np.int16)
    assert ndnt_mask(image, (3,), 0.1, bright=True).tolist() == [False, True, False]


def test_constant_image_and_extreme_thresholds():
    image = np.full((4, 5, 6), 7, dtype=np.uint16)
    assert ndnt_mask(image, (3, 3, 3), 0.0).all()  # I*count == sum
    assert not ndnt_mask(image, (3, 3, 3), 0.25).any()
    assert ndnt_mask(image, (3, 3, 3), 0.0, bright=True).all()
    zeros = np.zeros((5, 5), dtype=np.float32)
    assert ndnt_mask(zeros, (3, 3), 1.0).all()
    assert ndnt_mask(np.array([5.0]), (1,), 0.5, bright=True).tolist() == [False]


def test_int64_large_values_use_the_exact_fallback():
    # |I| up to 2**40 with a 1e-6-resolution threshold: products need > 64 bits,
    # so decisions go through the float estimate + exact int64 split.
    rng = np.random.default_rng(11)
    image = rng.integers(-(2**40), 2**40, size=(6, 7, 8), dtype=np.int64)
    base = rng.integers(2**39, 2**40, dtype=np.int64)
    image[::2] = base  # plateaus: many exact ties in I*count vs sum at t = 0
    for t, bright in [(0.123457, False), (0.0, False), (0.999999, True), (0.5, True)]:
        assert_exact_matches(image, (3, 4, 5), t, bright)


def test_uint64_values():
    rng = np.random.default_rng(12)
    image = rng.integers(0, 2**40, size=(5, 6, 7), dtype=np.uint64)
    assert_exact_matches(image, (3, 3, 3), 0.2, False)
    huge = np.full((4, 4), 2**63 + 5, dtype=np.uint64)
    with pytest.raises(ParameterError, match="image.*convert the image to float64"):
        ndnt_mask(huge, (3, 3), 0.2)


def test_full_range_int32_with_fine_threshold():
    rng = np.random.default_rng(13)
    image = random_ints(rng, np.int32, (5, 6, 7), narrow=False)
    assert_exact_matches(image, (5, 5, 5), 0.123457, True)


def test_float16_is_supported():
    rng = np.random.default_rng(5)
    image = (rng.random((6, 7)) * 10).astype(np.float16)
    assert_float_matches(image, (3, 3), 0.1, False)


# --------------------------------------------------------------------------------------
# memory layouts, read-only and memory-mapped inputs
# --------------------------------------------------------------------------------------
def test_readonly_and_memmapped_inputs(tmp_path):
    rng = np.random.default_rng(21)
    for dtype in (np.uint16, np.float32):
        image = (rng.random((10, 12, 14)) * 1000).astype(dtype)
        expected = ndnt_mask(image, (5, 3, 7), 0.2)
        ro = image.copy()
        ro.flags.writeable = False
        np.testing.assert_array_equal(ndnt_mask(ro, (5, 3, 7), 0.2), expected)
        path = tmp_path / f"vol_{np.dtype(dtype).name}.npy"
        np.save(path, image)
        mm = np.load(path, mmap_mode="r")
        assert not mm.flags.writeable
        np.testing.assert_array_equal(ndnt_mask(mm, (5, 3, 7), 0.2), expected)
        np.testing.assert_array_equal(ndnt_mask(mm, (5, 3, 7), 0.2, threads=2), expected)


@pytest.mark.parametrize("copy_max", [ndnt_module._COPY_MAX_BYTES, 0], ids=["copied", "read-in-place"])
def test_fortran_and_strided_inputs(copy_max, monkeypatch):
    # Small strided inputs are copied to C order first; large ones are read in place.
    monkeypatch.setattr(ndnt_module, "_COPY_MAX_BYTES", copy_max)
    rng = np.random.default_rng(22)
    image = rng.integers(0, 50, size=(9, 10, 11)).astype(np.uint8)
    expected = exact_oracle(image, (3, 5, 4), 0.25, False)
    fortran = np.asfortranarray(image)
    np.testing.assert_array_equal(ndnt_mask(fortran, (3, 5, 4), 0.25), expected)
    big = rng.integers(0, 50, size=(9, 20, 11)).astype(np.uint8)
    strided = big[:, ::2]
    np.testing.assert_array_equal(ndnt_mask(strided, (3, 5, 4), 0.25), exact_oracle(strided, (3, 5, 4), 0.25, False))
    tile = big[1:8, 2:17, 3:10]  # what florin.tile cuts: a view with gaps between rows
    np.testing.assert_array_equal(ndnt_mask(tile, (3, 5, 4), 0.25), exact_oracle(tile, (3, 5, 4), 0.25, False))
    floats = (rng.random((9, 20, 11)) * 10).astype(np.float32)[:, ::2]
    floats[:, 3:6] = 0.0
    for bright in (False, True):
        np.testing.assert_array_equal(
            ndnt_mask(floats, (3, 5, 4), 0.0, bright), exact_oracle(floats, (3, 5, 4), 0.0, bright)
        )


def test_length_one_axes_and_single_voxel():
    rng = np.random.default_rng(23)
    image = rng.integers(0, 9, size=(1, 12, 1, 13)).astype(np.int16)
    assert_exact_matches(image, (5, 3, 7, 3), 0.25, False)
    assert ndnt_mask(np.array([[3]], dtype=np.uint8), (5, 5), 0.0).tolist() == [[True]]
    empty = np.zeros((0, 4), dtype=np.float32)
    assert ndnt_mask(empty, (3, 3), 0.1).shape == (0, 4)


# --------------------------------------------------------------------------------------
# threads
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint16, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(
    "vshape,nshape",
    [((16, 24, 20), (5, 7, 9)), ((16, 24, 20), (1, 7, 9)), ((3, 40, 20), (3, 9, 5)), ((50, 30), (9, 5))],
)
def test_one_and_two_threads_agree(dtype, vshape, nshape):
    rng = np.random.default_rng(31)
    image = (rng.random(vshape) * 500).astype(dtype)
    one = ndnt_mask(image, nshape, 0.1, threads=1)
    two = ndnt_mask(image, nshape, 0.1, threads=2)
    np.testing.assert_array_equal(one, two)
    if dtype is np.uint16:
        np.testing.assert_array_equal(one, exact_oracle(image, nshape, 0.1, False))
    else:
        assert_float_matches(image, nshape, 0.1, False)


def test_thread_count_is_restored_and_checked():
    image = np.arange(4000, dtype=np.float32).reshape(10, 20, 20) % 7
    before = numba.get_num_threads()
    ndnt_mask(image, (3, 3, 3), 0.1, threads=1)
    ndnt_mask(image, (3, 3, 3), 0.1, threads=2)
    ndnt_mask(image, (3, 3, 3), 0.1, threads=10_000)  # clipped to NUMBA_NUM_THREADS
    ndnt_mask(image, (3, 3, 3), 0.1)  # default: numba.get_num_threads()
    assert numba.get_num_threads() == before
    with pytest.raises(ParameterError, match="threads"):
        ndnt_mask(image, (3, 3, 3), 0.1, threads=0)


# --------------------------------------------------------------------------------------
# property tests on small arrays
# --------------------------------------------------------------------------------------
_small_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=7)
_thresholds = st.one_of(st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0]), st.floats(0, 1))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), dtype=st.sampled_from([np.uint8, np.int16]), t=_thresholds, bright=st.booleans())
def test_property_integers_exact(data, dtype, t, bright):
    image = data.draw(hnp.arrays(dtype, _small_shapes))
    nshape = tuple(data.draw(st.integers(1, 9)) for _ in image.shape)
    threads = data.draw(st.sampled_from([1, 2]))
    assert_exact_matches(image, nshape, t, bright, threads=threads)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), width=st.sampled_from([32, 64]), t=_thresholds, bright=st.booleans())
def test_property_floats_exact(data, width, t, bright):
    big = 2.0**990 if width == 64 else 2.0**100
    elements = st.floats(-big, big, allow_nan=False, allow_infinity=False, width=width)
    dtype = np.float64 if width == 64 else np.float32
    image = data.draw(hnp.arrays(dtype, _small_shapes, elements=elements))
    nshape = tuple(data.draw(st.integers(1, 9)) for _ in image.shape)
    got = ndnt_mask(image, nshape, t, bright, threads=data.draw(st.sampled_from([1, 2])))
    np.testing.assert_array_equal(got, exact_oracle(image, nshape, t, bright))


# --------------------------------------------------------------------------------------
# non-finite values
# --------------------------------------------------------------------------------------
def test_kernel_rejects_nan_and_inf_with_a_count():
    image = np.ones((5, 6, 7), dtype=np.float32)
    image[1, 2, 3] = np.nan
    image[4, 0, 0] = np.inf
    with pytest.raises(ParameterError, match=r"image: \d+ voxel"):
        ndnt_mask(image, (3, 3, 3), 0.25)
    with pytest.raises(ParameterError, match="image: contains 2 NaN or infinite voxel"):
        validate_ndnt_args(image, (3, 3, 3), 0.25, "dark")


# --------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------
def test_validate_normalises():
    image = np.zeros((16, 64, 12), dtype=np.uint8)
    assert validate_ndnt_args(image, None, 0.25, "dark") == ((2, 8, 2), 0.25, False)
    assert validate_ndnt_args(image, 5, 25, "bright") == ((5, 5, 5), 0.25, True)
    assert validate_ndnt_args(image, (3, np.int64(9), 1), 1, "dark") == ((3, 9, 1), 1.0, False)
    assert validate_ndnt_args(image, [3, 9, 1], 100, "dark")[1] == 1.0
    assert validate_ndnt_args(image, 3, 1.5, "dark")[1] == pytest.approx(0.015)
    assert validate_ndnt_args(image, 3, 0, "dark")[1] == 0.0
    # tiles use the full volume's default
    assert validate_ndnt_args(image, None, 0.25, "dark", full_shape=(160, 640, 120))[0] == (20, 80, 15)


def test_default_shape_uses_python_round():
    # round() is banker's rounding: 12/8 = 1.5 -> 2, 20/8 = 2.5 -> 2, 4/8 = 0.5 -> 0 -> 1
    assert default_shape((12, 20, 4, 1, 100)) == (2, 2, 1, 1, 12)


@pytest.mark.parametrize("threshold", [-0.1, 100.5, 1000, float("nan"), float("inf"), True, "0.3", None, 1j])
def test_validate_rejects_thresholds(threshold):
    with pytest.raises(ParameterError, match=r"threshold.*\[0, 1\].*\(1, 100\]"):
        validate_ndnt_args(np.zeros((4, 4)), 3, threshold, "dark")


@pytest.mark.parametrize("shape", [(3,), (3, 3, 3), (0, 3), (3, -1), (3.0, 3), (True, 3), "33", 0, 2.5])
def test_validate_rejects_shapes(shape):
    with pytest.raises(ParameterError, match="shape"):
        validate_ndnt_args(np.zeros((4, 4)), shape, 0.25, "dark")


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((0, 4)),
        np.float64(3.0),
        np.zeros((3, 3), dtype=complex),
        np.array([["a", "b"]]),
        np.array([[object()]]),
        np.zeros(3, dtype="datetime64[s]"),
    ],
    ids=["empty", "0-d", "complex", "str", "object", "datetime"],
)
def test_validate_rejects_images(image):
    with pytest.raises(ParameterError, match="image"):
        validate_ndnt_args(image, None, 0.25, "dark")


@pytest.mark.parametrize("polarity", ["Dark", "light", None, 1])
def test_validate_rejects_polarity(polarity):
    with pytest.raises(ParameterError, match="polarity.*'dark' or 'bright'"):
        validate_ndnt_args(np.zeros((4, 4)), 3, 0.25, polarity)


def test_validate_rejects_bad_full_shape():
    with pytest.raises(ParameterError, match="full_shape"):
        validate_ndnt_args(np.zeros((4, 4)), None, 0.25, "dark", full_shape=(4,))


def test_parameter_error_is_a_value_error():
    with pytest.raises(ValueError):
        validate_ndnt_args(np.zeros((4, 4)), 3, 250, "dark")
