"""blockwise size filters equal florin.morphology's in-memory ones."""

import contextlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from florin import blockwise, conncomp, morphology, tiling
from florin.blockwise import sizes as blockwise_sizes
from florin.errors import ParameterError

from .strategies import masks, partitions

FILTERS = [
    (blockwise.remove_small_objects, morphology.remove_small_objects),
    (blockwise.remove_small_holes, morphology.remove_small_holes),
]


@contextlib.contextmanager
def form(name):
    """Force the local form (halo around each block) or the global one (blockwise labels), or let it choose."""
    factor = {"local": math.inf, "global": 0.0, "auto": blockwise_sizes.LOCAL_READ_FACTOR}[name]
    saved, blockwise_sizes.LOCAL_READ_FACTOR = blockwise_sizes.LOCAL_READ_FACTOR, factor
    try:
        yield
    finally:
        blockwise_sizes.LOCAL_READ_FACTOR = saved


@pytest.mark.parametrize("which", ["local", "global", "auto"])
@pytest.mark.parametrize(("blockwise_filter", "in_memory"), FILTERS)
@settings(max_examples=60, deadline=None)
@given(data=st.data(), ndim=st.sampled_from([2, 3]), labelled=st.booleans())
def test_equals_in_memory(blockwise_filter, in_memory, which, data, ndim, labelled):
    mask = data.draw(masks(ndim))
    blocks = data.draw(partitions(mask.shape))
    connectivity = data.draw(st.integers(1, ndim))
    min_size = data.draw(st.integers(0, 12))
    image = conncomp.label(mask, connectivity=connectivity).values.astype(np.int32) if labelled else mask
    expected = in_memory(image, min_size=min_size, connectivity=connectivity).values
    before = image.copy()
    out = np.zeros_like(image)
    with form(which):
        blockwise_filter(image, out, blocks=blocks, min_size=min_size, connectivity=connectivity)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize("filled", [False, True])
def test_local_form_on_components_longer_than_the_halo(filled):
    """Holes (objects) that reach past the halo are kept even where the block sees only part of them."""
    rng = np.random.default_rng(3)
    mask = rng.random((40, 40)) < (0.62 if filled else 0.38)
    mask[19, :] = not filled  # a line across every block boundary: one component far longer than the halo
    blocks = [i.core_slices for i in tiling.tile_infos(mask.shape, (8, 8))]
    flt, ref = FILTERS[1] if filled else FILTERS[0]
    for max_size in (1, 3, 6):
        expected = ref(mask, max_size=max_size, connectivity=1).values
        out = np.zeros_like(mask)
        with form("local"):
            assert blockwise_sizes._local_blocks(mask.shape, blocks, max_size + 1, 1) is not None
            flt(mask, out, blocks=blocks, max_size=max_size, connectivity=1)
        np.testing.assert_array_equal(out, expected)


def test_local_form_only_when_halos_are_small():
    blocks = [i.core_slices for i in tiling.tile_infos((64, 64, 64), (8, 64, 64))]
    assert blockwise_sizes._local_blocks((64, 64, 64), blocks, 4, 4) is not None  # halo 3 around 8+ voxel blocks
    assert blockwise_sizes._local_blocks((64, 64, 64), blocks, 64, 4) is None  # halo 63: each of 8 blocks reads all


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
