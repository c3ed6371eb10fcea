"""blockwise size filters equal florin.morphology's in-memory ones."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from florin import blockwise, conncomp, morphology, tiling
from florin.errors import ParameterError

from .strategies import masks, partitions

FILTERS = [
    (blockwise.remove_small_objects, morphology.remove_small_objects),
    (blockwise.remove_small_holes, morphology.remove_small_holes),
]


@pytest.mark.parametrize(("blockwise_filter", "in_memory"), FILTERS)
@settings(max_examples=60, deadline=None)
@given(data=st.data(), ndim=st.sampled_from([2, 3]), labelled=st.booleans())
def test_equals_in_memory(blockwise_filter, in_memory, data, ndim, labelled):
    mask = data.draw(masks(ndim))
    blocks = data.draw(partitions(mask.shape))
    connectivity = data.draw(st.integers(1, ndim))
    min_size = data.draw(st.integers(0, 12))
    image = conncomp.label(mask, connectivity=connectivity).values.astype(np.int32) if labelled else mask
    expected = in_memory(image, min_size=min_size, connectivity=connectivity).values
    before = image.copy()
    out = np.zeros_like(image)
    blockwise_filter(image, out, blocks=blocks, min_size=min_size, connectivity=connectivity)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(image, before)


def test_memmap_input_output_and_scratch(tmp_path):
    shape = (8, 10, 12)
    image = np.lib.format.open_memmap(tmp_path / "mask.npy", mode="w+", dtype=bool, shape=shape)
    image[...] = np.random.default_rng(5).random(shape) < 0.5
    out = np.lib.format.open_memmap(tmp_path / "out.npy", mode="w+", dtype=bool, shape=shape)
    scratch = np.lib.format.open_memmap(tmp_path / "scratch.npy", mode="w+", dtype=np.uint32, shape=shape)
    blocks = [i.core_slices for i in tiling.tile_infos(shape, (3, 4, 5))]
    blockwise.remove_small_holes(image, out, blocks=blocks, max_size=19, connectivity=2, scratch=scratch)
    expected = morphology.remove_small_holes(np.asarray(image), max_size=19, connectivity=2).values
    np.testing.assert_array_equal(out, expected)


def test_float_input_raises():
    img = np.zeros((4, 4), np.float32)
    with pytest.raises(ParameterError, match="integer label image"):
        blockwise.remove_small_objects(img, np.zeros_like(img), blocks=[(slice(0, 4), slice(0, 4))])
