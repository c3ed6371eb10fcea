"""blockwise.label equals florin.conncomp.label voxel for voxel, numbering included."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from florin import blockwise, conncomp, tiling
from florin._kernels.label import label_dtype
from florin.errors import ParameterError

from .strategies import masks, partitions


@settings(max_examples=150, deadline=None)
@given(data=st.data(), ndim=st.sampled_from([2, 3]))
def test_equals_in_memory_label(data, ndim):
    mask = data.draw(masks(ndim))
    blocks = data.draw(partitions(mask.shape))
    connectivity = data.draw(st.integers(1, ndim))
    expected = conncomp.label(mask, connectivity=connectivity).values
    out = np.full(mask.shape, 7, label_dtype(mask.size))
    before = mask.copy()
    n = blockwise.label(mask, out, blocks=blocks, connectivity=connectivity)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == expected.dtype
    assert n == int(expected.max(initial=0))
    np.testing.assert_array_equal(mask, before)


def test_diagonal_chain_across_block_corners():
    # one component that only connects through block corners
    mask = np.eye(8, dtype=bool)
    blocks = [i.core_slices for i in tiling.tile_infos(mask.shape, (3, 3))]
    out = np.zeros(mask.shape, np.uint32)
    assert blockwise.label(mask, out, blocks=blocks, connectivity=2) == 1
    assert blockwise.label(mask, out, blocks=blocks, connectivity=1) == 8
    np.testing.assert_array_equal(out, conncomp.label(mask).values)


def test_memmap_input_and_output(tmp_path):
    rng = np.random.default_rng(3)
    shape = (10, 12, 14)
    mask = np.lib.format.open_memmap(tmp_path / "mask.npy", mode="w+", dtype=bool, shape=shape)
    mask[...] = rng.random(shape) < 0.45
    mask.flush()
    mask = np.load(tmp_path / "mask.npy", mmap_mode="r")
    out = np.lib.format.open_memmap(tmp_path / "labels.npy", mode="w+", dtype=np.uint32, shape=shape)
    blocks = [i.core_slices for i in tiling.tile_infos(shape, (4, 5, 6))]
    n = blockwise.label(mask, out, blocks=blocks, connectivity=3)
    out.flush()
    expected = conncomp.label(np.asarray(mask), connectivity=3).values
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), expected)
    assert n == int(expected.max())


def test_map_is_used():
    calls = []

    def recording_map(func, items):
        items = list(items)
        calls.append(len(items))
        return map(func, items)

    mask = np.ones((4, 4), bool)
    out = np.zeros(mask.shape, np.uint32)
    blocks = [i.core_slices for i in tiling.tile_infos(mask.shape, (2, 2))]
    assert blockwise.label(mask, out, blocks=blocks, map=recording_map) == 1
    assert calls == [4, 4, 4]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"blocks": [(slice(0, 4), slice(0, 2))]}, "partition"),
        ({"blocks": [(slice(0, 4), slice(0, 4)), (slice(0, 2), slice(0, 2))]}, "partition"),
        ({"blocks": [(slice(0, 4),)]}, "tuple of 2 slices"),
        ({"blocks": [(slice(0, 4), slice(0, 4))], "connectivity": 3}, "connectivity"),
        ({"blocks": [(slice(0, 4), slice(0, 4))], "out": np.zeros((4, 4), np.float32)}, "integer dtype"),
        ({"blocks": [(slice(0, 4), slice(0, 4))], "out": np.zeros((4, 3), np.uint32)}, "shape"),
    ],
)
def test_bad_parameters_raise_parameter_error(kwargs, match):
    kwargs = {"out": np.zeros((4, 4), np.uint32), **kwargs}
    with pytest.raises(ParameterError, match=match):
        blockwise.label(np.ones((4, 4), bool), **kwargs)
