"""blockwise.reconstruct equals florin.reconstruct voxel for voxel, the empty volume included."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import florin
from florin import blockwise, conncomp
from florin.errors import ClassificationError, ParameterError

from .strategies import partitions
from .test_regions import label_images


def _classifier(draw):
    classes = []
    for i in range(draw(st.integers(1, 4))):
        lo = draw(st.integers(0, 6))
        bounds = {"area": (lo, lo + draw(st.integers(0, 20)))} if draw(st.booleans()) else {}
        classes.append(florin.bounds_classifier(f"c{i}", **bounds))
    return florin.classify(*classes)


@settings(max_examples=80, deadline=None)
@given(data=st.data(), ndim=st.sampled_from([1, 2, 3]), drop=st.booleans())
def test_equals_in_memory_reconstruct(data, ndim, drop):
    labels = data.draw(label_images(ndim))
    blocks = data.draw(partitions(labels.shape))
    regions = _classifier(data.draw)(conncomp.regionprops(labels))
    if drop and len(regions):  # regions dropped from the table (labels beyond or between its rows) become 0
        keep = np.arange(len(regions)) % 2 == 0
        regions = regions._like({k: v[keep] for k, v in regions.table.items()}, tuple(regions.classes.values()))
    expected = florin.reconstruct(regions)
    out = np.full(labels.shape, 99, blockwise.class_dtype(regions))
    classes = blockwise.reconstruct(labels, regions, out, blocks=blocks)
    np.testing.assert_array_equal(out, expected.values)
    assert out.dtype == expected.dtype
    assert classes == expected.attrs["classes"]


def test_blockwise_regionprops_then_classify_then_reconstruct():
    rng = np.random.default_rng(4)
    labels = conncomp.label(rng.random((12, 13, 14)) < 0.35, connectivity=1).values
    step = florin.classify(florin.bounds_classifier("small", area=3), florin.bounds_classifier("big", area=(4, None)))
    regions = step(blockwise.regionprops(labels, blocks=(5, 5, 5)))
    out = np.zeros(labels.shape, np.uint8)
    blockwise.reconstruct(labels, regions, out, blocks=(4, 6, 7))
    np.testing.assert_array_equal(out, florin.reconstruct(step(conncomp.regionprops(labels))).values)
    assert set(np.unique(out)) == {0, 1, 2}


def test_empty_volume_gives_all_zero_class_volume():
    labels = np.zeros((5, 6), np.uint32)
    regions = blockwise.regionprops(labels, blocks=(2, 2))
    assert len(regions) == 0 and regions.classes is None  # classify mapped over no regions never ran
    out = np.full(labels.shape, 7, np.uint8)
    assert blockwise.reconstruct(labels, regions, out, blocks=(2, 3)) == {}
    assert not out.any()
    np.testing.assert_array_equal(out, florin.reconstruct(conncomp.regionprops(labels)).values)


def test_bad_input():
    labels = np.array([[1, 0, 2]])
    regions = conncomp.regionprops(labels)
    with pytest.raises(ClassificationError, match="classified"):
        blockwise.reconstruct(labels, regions, np.zeros((1, 3), np.uint8), blocks=(1, 1))
    classified = florin.classify(florin.bounds_classifier("a"))(regions)
    with pytest.raises(ParameterError, match="cannot hold"):
        blockwise.reconstruct(labels, classified, np.zeros((1, 3), np.int8), blocks=(1, 1))
    with pytest.raises(ParameterError, match="shape"):
        blockwise.reconstruct(labels, classified, np.zeros((1, 2), np.uint8), blocks=(1, 1))
    with pytest.raises(ParameterError, match=">= 0"):
        blockwise.reconstruct(-labels, classified, np.zeros((1, 3), np.uint8), blocks=(1, 1))
    with pytest.raises(ParameterError, match="regions"):
        blockwise.reconstruct(labels, {"label": [1]}, np.zeros((1, 3), np.uint8), blocks=(1, 1))
