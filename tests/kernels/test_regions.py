"""Tests of the region statistics kernels (florin._kernels.regions)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.measure import regionprops_table

import florin._kernels.regions as R
from florin._kernels.regions import combine_stats, region_stats


def naive_stats(labels, n, intensity=None):
    """Reference: plain numpy per label."""
    ndim = labels.ndim
    out = {k: [] for k in ("area", "bbox_min", "bbox_max", "centroid")}
    ints = {k: [] for k in ("intensity_sum", "intensity_min", "intensity_max", "intensity_mean")}
    for lab in range(1, n + 1):
        coords = np.argwhere(labels == lab)
        out["area"].append(len(coords))
        if len(coords):
            out["bbox_min"].append(coords.min(0))
            out["bbox_max"].append(coords.max(0) + 1)
            out["centroid"].append(coords.mean(0))
        else:
            out["bbox_min"].append(np.zeros(ndim, int))
            out["bbox_max"].append(np.zeros(ndim, int))
            out["centroid"].append(np.full(ndim, np.nan))
        if intensity is not None:
            v = intensity[labels == lab].astype(np.float64)
            ints["intensity_sum"].append(v.sum())
            ints["intensity_min"].append(v.min() if v.size else np.nan)
            ints["intensity_max"].append(v.max() if v.size else np.nan)
            ints["intensity_mean"].append(v.mean() if v.size else np.nan)
    out = {k: np.array(v) for k, v in out.items()}
    if intensity is not None:
        out.update({k: np.array(v) for k, v in ints.items()})
    return out


def assert_stats_equal(got, want, exact=False):
    for key, value in want.items():
        if exact or key in ("area", "bbox_min", "bbox_max", "label", "coord_sum"):
            np.testing.assert_array_equal(got[key], value, err_msg=key)
        else:
            np.testing.assert_allclose(got[key], value, rtol=1e-10, atol=1e-10, err_msg=key)


@pytest.mark.parametrize("shape", [(37, 41), (9, 23, 17)], ids=["2d", "3d"])
@pytest.mark.parametrize("dtype", [np.float32, np.uint16])
def test_matches_skimage(shape, dtype):
    rng = np.random.default_rng(len(shape))
    labels = rng.integers(0, 12, shape).astype(np.uint32)
    intensity = (rng.random(shape) * 1000).astype(dtype)
    s = region_stats(labels, 11, intensity)
    t = regionprops_table(
        labels,
        intensity,
        properties=("label", "area", "bbox", "centroid", "intensity_mean", "intensity_min", "intensity_max"),
    )
    nd = len(shape)
    np.testing.assert_array_equal(s["label"], t["label"])
    np.testing.assert_array_equal(s["area"], t["area"])
    for a in range(nd):
        np.testing.assert_array_equal(s["bbox_min"][:, a], t[f"bbox-{a}"])
        np.testing.assert_array_equal(s["bbox_max"][:, a], t[f"bbox-{a + nd}"])
        np.testing.assert_allclose(s["centroid"][:, a], t[f"centroid-{a}"])
    np.testing.assert_allclose(s["intensity_mean"], t["intensity_mean"], rtol=1e-6)
    np.testing.assert_allclose(s["intensity_min"], t["intensity_min"])
    np.testing.assert_allclose(s["intensity_max"], t["intensity_max"])


@pytest.mark.parametrize("shape", [(50,), (5, 6, 7, 4)], ids=["1d", "4d"])
def test_other_dimensions_match_naive(shape):
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 6, shape)
    intensity = rng.standard_normal(shape)
    assert_stats_equal(region_stats(labels, 7, intensity), naive_stats(labels, 7, intensity))


def test_empty_labels_and_keys():
    labels = np.array([[0, 2], [2, 0]], np.uint8)
    s = region_stats(labels, 3)
    assert set(s) == {"label", "area", "bbox_min", "bbox_max", "coord_sum", "centroid"}
    np.testing.assert_array_equal(s["area"], [0, 2, 0])
    np.testing.assert_array_equal(s["bbox_min"][0], [0, 0])
    assert np.isnan(s["centroid"][0]).all()
    s = region_stats(labels, 3, np.ones((2, 2)))
    assert np.isnan(s["intensity_mean"][2]) and np.isnan(s["intensity_min"][2])
    assert s["intensity_sum"][2] == 0
    assert region_stats(np.zeros((0, 3), np.int32), 2)["area"].tolist() == [0, 0]
    assert region_stats(np.zeros((2, 2), np.uint8), 0)["area"].shape == (0,)


def test_bad_labels():
    with pytest.raises(ValueError, match="outside"):
        region_stats(np.array([[1, 5]]), 3)
    with pytest.raises(ValueError, match="outside"):
        region_stats(np.array([[1, -1]]), 3)
    with pytest.raises(TypeError):
        region_stats(np.array([[1.0, 0.0]]), 1)
    with pytest.raises(ValueError):
        region_stats(np.array([[1, 0]]), 1, np.ones((2, 2)))


def test_uint64_labels_and_origin():
    labels = np.array([[0, 1, 1], [2, 2, 0]], np.uint64)
    s = region_stats(labels, 2, origin=(10, 20))
    np.testing.assert_array_equal(s["bbox_min"], [[10, 21], [11, 20]])
    np.testing.assert_array_equal(s["bbox_max"], [[11, 23], [12, 22]])
    np.testing.assert_allclose(s["centroid"], [[10, 21.5], [11, 20.5]])


def test_parallel_blocks_equal_serial(monkeypatch):
    rng = np.random.default_rng(9)
    labels = rng.integers(0, 30, (11, 20, 25))
    intensity = rng.random(labels.shape)
    serial = region_stats(labels, 30, intensity)
    monkeypatch.setattr(R, "_PARALLEL_MIN_SIZE", 0)
    monkeypatch.setattr(R.numba, "get_num_threads", lambda: 4)
    parallel = region_stats(labels, 30, intensity)
    assert_stats_equal(parallel, serial)
    assert_stats_equal(serial, naive_stats(labels, 30, intensity))


@settings(max_examples=40, deadline=None)
@given(
    ndim=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_property_combine_tiles_equals_whole(ndim, seed, data):
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(1, 9, ndim))
    n = int(rng.integers(1, 8))
    labels = rng.integers(0, n + 1, shape)
    intensity = rng.standard_normal(shape)
    whole = region_stats(labels, n, intensity)
    axis = data.draw(st.integers(0, ndim - 1))
    cuts = sorted(data.draw(st.lists(st.integers(0, shape[axis]), max_size=3)))
    edges = [0, *cuts, shape[axis]]
    acc = None
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sl = [slice(None)] * ndim
        sl[axis] = slice(lo, hi)
        origin = [0] * ndim
        origin[axis] = lo
        part = region_stats(labels[tuple(sl)], n, intensity[tuple(sl)], origin=origin)
        acc = part if acc is None else combine_stats(acc, part)
    assert set(acc) == set(whole)
    assert_stats_equal(acc, whole)


def test_combine_different_n_and_without_intensity():
    a = region_stats(np.array([[1, 0]]), 1, np.ones((1, 2)))
    b = region_stats(np.array([[2, 1]]), 2, origin=(1, 0))
    c = combine_stats(a, b)
    np.testing.assert_array_equal(c["area"], [2, 1])
    np.testing.assert_array_equal(c["bbox_min"], [[0, 0], [1, 0]])
    np.testing.assert_array_equal(c["bbox_max"], [[2, 2], [2, 1]])
    assert "intensity_sum" not in c
