"""Tests of the connected-component labeling kernels (florin._kernels.label)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

import florin._kernels.label as L
from florin._kernels.label import (
    boundary_pairs,
    first_flat_index,
    label,
    label_dtype,
    merge_pairs,
    renumber_by_first_voxel,
)


def scipy_label(mask, connectivity):
    return ndi.label(mask, ndi.generate_binary_structure(mask.ndim, connectivity))


def assert_same_as_scipy(mask, connectivity):
    got, n = label(mask, connectivity)
    want, n_want = scipy_label(mask, connectivity)
    assert n == n_want
    assert got.dtype == np.uint32
    np.testing.assert_array_equal(got, want)
    return got, n


SHAPES = [(40,), (23, 31), (7, 19, 25), (4, 5, 6, 7)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{len(s)}d")
@pytest.mark.parametrize("density", [0.2, 0.5, 0.75])
def test_random_equals_scipy_every_connectivity(shape, density):
    rng = np.random.default_rng(len(shape) * 100 + int(density * 10))
    mask = rng.random(shape) < density
    for connectivity in range(1, len(shape) + 1):
        assert_same_as_scipy(mask, connectivity)


@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_smoothed_blobs_3d(connectivity):
    rng = np.random.default_rng(connectivity)
    field = ndi.gaussian_filter(rng.standard_normal((24, 48, 40)), 1.5)
    assert_same_as_scipy(field > np.percentile(field, 60), connectivity)


@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_parallel_union_blocks(monkeypatch, connectivity):
    """The block-parallel union (many blocks, uneven) equals scipy."""
    monkeypatch.setattr(L, "_PARALLEL_MIN_RUNS", 0)
    monkeypatch.setattr(L.numba, "get_num_threads", lambda: 5)
    rng = np.random.default_rng(7)
    mask = rng.random((13, 9, 17)) < 0.55
    assert len(L._row_blocks(mask.shape[:-1], 10**6)) == 6
    assert_same_as_scipy(mask, connectivity)


def test_special_inputs():
    # all background, all foreground, empty, single voxels
    assert label(np.zeros((3, 4), bool), 1)[1] == 0
    lab, n = label(np.ones((3, 4, 5), bool), 1)
    assert n == 1 and (lab == 1).all()
    lab, n = label(np.zeros((0, 4), bool), 2)
    assert n == 0 and lab.shape == (0, 4) and lab.dtype == np.uint32
    assert label(np.ones((1,), bool), 1) == (np.array([1], np.uint32), 1)
    # non-bool input and non-contiguous views
    rng = np.random.default_rng(3)
    ints = rng.integers(0, 3, (9, 11, 13))
    assert_same_as_scipy(ints, 2)
    view = (ints > 0).transpose(2, 0, 1)[::2]
    assert_same_as_scipy(view, 3)
    # input is not modified
    before = ints.copy()
    label(ints, 1)
    np.testing.assert_array_equal(ints, before)


@pytest.mark.parametrize("bad", [0, 4, -1])
def test_bad_connectivity(bad):
    with pytest.raises(ValueError, match="connectivity"):
        label(np.ones((2, 2, 2), bool), bad)


def test_bad_connectivity_type_and_0d():
    with pytest.raises(TypeError):
        label(np.ones((2, 2)), 1.5)
    with pytest.raises(ValueError):
        label(np.array(True), 1)


def test_label_dtype():
    assert label_dtype(10) == np.uint32
    assert label_dtype(2**32 - 1) == np.uint32
    assert label_dtype(2**32) == np.uint64


def test_merge_pairs():
    relabel = merge_pairs(np.array([[4, 2], [5, 4], [0, 3], [6, 6]], np.uint64), 6)
    np.testing.assert_array_equal(relabel, [0, 1, 2, 3, 2, 2, 4])
    assert relabel.dtype == np.uint32
    np.testing.assert_array_equal(merge_pairs(np.zeros((0, 2), np.uint64), 3), [0, 1, 2, 3])
    with pytest.raises(ValueError):
        merge_pairs(np.array([[1, 9]]), 3)


def test_boundary_pairs_connectivity():
    a = np.array([[1, 0, 0], [0, 0, 0], [0, 0, 2]])
    b = np.array([[0, 3, 0], [0, 0, 0], [0, 4, 4]])
    assert boundary_pairs(a, b, 1).tolist() == [[2, 4]]
    assert boundary_pairs(a, b, 2).tolist() == [[1, 3], [2, 4]]
    c = np.array([[0, 0, 0], [0, 5, 0], [0, 0, 0]])
    assert boundary_pairs(a, c, 2).tolist() == []
    assert boundary_pairs(a, c, 3).tolist() == [[1, 5], [2, 5]]
    # 1-D volume: faces are single voxels
    assert boundary_pairs(np.array(3), np.array(4), 1).tolist() == [[3, 4]]
    with pytest.raises(ValueError):
        boundary_pairs(a, a[:2], 1)


def test_first_flat_and_renumber():
    first = first_flat_index(np.array([[0, 2], [1, 1]]), 3, origin=(1, 1), shape=(3, 3))
    np.testing.assert_array_equal(first, [7, 5, -1])
    relabel = renumber_by_first_voxel(np.array([0, 1, 2, 1], np.uint32), np.array([9, 3, 4]))
    np.testing.assert_array_equal(relabel, [0, 2, 1, 2])


@st.composite
def masks_1_to_4d(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 9 if ndim < 4 else 5), min_size=ndim, max_size=ndim)))
    density = draw(st.sampled_from([0.3, 0.5, 0.7]))
    seed = draw(st.integers(0, 2**32 - 1))
    mask = np.random.default_rng(seed).random(shape) < density
    connectivity = draw(st.integers(1, ndim))
    return mask, connectivity


@settings(max_examples=60, deadline=None)
@given(masks_1_to_4d())
def test_property_label(case):
    # the tiled half of this property is tested on the merge pipelines run: tests/test_conncomp_label.py
    mask, connectivity = case
    assert_same_as_scipy(mask, connectivity)


def test_threads_with_workqueue_layer():
    """Concurrent calls from threads must not abort numba's non-thread-safe workqueue layer."""
    import os
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import numpy as np, numba
        from concurrent.futures import ThreadPoolExecutor
        import florin._kernels.label as L
        from florin._kernels.regions import region_stats
        L._PARALLEL_MIN_RUNS = 0
        masks = [np.random.default_rng(i).random((12, 40, 40)) < 0.5 for i in range(6)]
        def work(m):
            lab, n = L.label(m, 1)
            return int(region_stats(lab, n)["area"].sum())
        with ThreadPoolExecutor(3) as ex:
            got = list(ex.map(work, masks * 4))
        assert got == [int(m.sum()) for m in masks * 4]
        assert numba.threading_layer() == "workqueue"
        """
    )
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{len(s)}d")
def test_label_into_writes_labels_or_a_table_in_place(shape, tmp_path):
    rng = np.random.default_rng(len(shape))
    mask = rng.random(shape) < 0.45
    want, n = scipy_label(mask, 1)
    mm = np.lib.format.open_memmap(tmp_path / "out.npy", mode="w+", dtype=np.int64, shape=shape)
    mm[...] = -1  # every voxel is written, background included
    assert L.label_into(mask, mm, 1) == n
    np.testing.assert_array_equal(mm, want)
    table = rng.permutation(n + 1).astype(np.uint16)
    table[table == 0], table[0] = table[0], 0
    out = np.empty(shape, np.uint16)
    assert L.label_into(mask, out, 1, relabel=table) == n
    np.testing.assert_array_equal(out, table[want])


def test_label_into_rejects_a_table_of_another_count_and_writes_nothing():
    mask = np.array([[1, 0, 1]], bool)
    out = np.full(mask.shape, 9, np.uint32)
    with pytest.raises(ValueError, match="relabel has 2 entries for 2 labels"):
        L.label_into(mask, out, 1, relabel=np.array([0, 1]))
    assert (out == 9).all()
    with pytest.raises(ValueError, match="unit-stride rows"):
        L.label_into(mask, np.zeros((1, 6), np.uint32)[:, ::2], 1)


def test_label_into_a_box_of_a_larger_array_writes_only_the_box():
    rng = np.random.default_rng(7)
    mask = rng.random((5, 6, 7)) < 0.5
    big = np.full((9, 10, 11), 7, np.uint32)
    box = (slice(2, 7), slice(1, 7), slice(3, 10))
    assert L.label_into(mask, big[box], 2) == scipy_label(mask, 2)[1]
    np.testing.assert_array_equal(big[box], scipy_label(mask, 2)[0])
    big[box] = 7
    assert (big == 7).all()
