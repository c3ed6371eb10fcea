"""Tests of the class lookup kernel (florin._kernels.lookup), the engine of florin.reconstruct."""

import numpy as np
import pytest

from florin._kernels.lookup import lookup


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.uint32, np.int64])
def test_equals_numpy_with_labels_beyond_the_table_clipped(dtype, rng):
    labels = rng.integers(0, 250, (3, 70, 1000)).astype(dtype)  # several parallel chunks, one partly filled
    lut = rng.integers(1, 200, 120).astype(np.uint8)
    lut[-1] = 0
    want = lut[np.minimum(labels, len(lut) - 1)]
    got = lookup(lut, labels)
    assert got.dtype == np.uint8 and got.shape == labels.shape
    np.testing.assert_array_equal(got, want)
    assert (got[labels >= len(lut) - 1] == 0).all() and got.any()


def test_writes_into_out_from_strided_labels(rng):
    labels = rng.integers(0, 40, (6, 50, 50)).astype(np.int32)[:, ::2, 1::3]
    lut = np.arange(31, dtype=np.uint16)[::-1].copy()
    out = np.full(labels.shape, 999, np.uint16)
    assert lookup(lut, labels, out) is out
    np.testing.assert_array_equal(out, lut[np.minimum(labels, 30)])


def test_a_table_longer_than_the_label_dtype_and_arrays_numba_does_not_take():
    lut = np.arange(300, dtype=np.uint16)
    np.testing.assert_array_equal(lookup(lut, np.array([0, 7, 255], np.uint8)), [0, 7, 255])
    big_endian = np.array([1, 2, 400], ">i4")
    np.testing.assert_array_equal(lookup(lut, big_endian), [1, 2, 299])
    assert lookup(lut, np.zeros((0, 3), np.int64)).shape == (0, 3)
