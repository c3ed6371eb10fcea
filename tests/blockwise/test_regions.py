"""blockwise.regionprops equals florin.conncomp.regionprops: same columns, order, dtypes and values."""

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from florin import as_volume, blockwise, conncomp
from florin.errors import ParameterError

from .strategies import masks, partitions

INTENSITY_DTYPES = [np.uint8, np.uint16, np.int32, np.float32, np.float64, bool]


def assert_same_table(got, expected, *, float_sums=False):
    assert list(got.table) == list(expected.table)
    assert got.dims == expected.dims
    assert got.spacing == expected.spacing
    for key, col in expected.table.items():
        assert got.table[key].dtype == col.dtype, key
        if float_sums and key in ("intensity_sum", "intensity_mean"):
            np.testing.assert_allclose(got.table[key], col, rtol=1e-12, err_msg=key)
        else:
            np.testing.assert_array_equal(got.table[key], col, err_msg=key)


@st.composite
def label_images(draw, ndim):
    """Labels of a random mask (any connectivity), or arbitrary ids: gaps, huge values, split objects."""
    mask = draw(masks(ndim))
    if draw(st.booleans()):
        return conncomp.label(mask, connectivity=draw(st.integers(1, ndim))).values
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    top = draw(st.sampled_from([3, 50, 10**5]))
    dtype = draw(st.sampled_from([np.uint8, np.int32, np.uint32, np.int64]))
    values = rng.integers(1, min(top, np.iinfo(dtype).max), size=draw(st.integers(1, 6)), endpoint=True)
    return np.where(mask, rng.choice(values, mask.shape), 0).astype(dtype)


@settings(max_examples=80, deadline=None)
@given(data=st.data(), ndim=st.sampled_from([1, 2, 3]), itype=st.sampled_from([None, *INTENSITY_DTYPES]))
def test_equals_in_memory_regionprops(data, ndim, itype):
    labels = data.draw(label_images(ndim))
    blocks = data.draw(partitions(labels.shape))
    intensity = None
    if itype is not None:
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        raw = rng.normal(100, 40, labels.shape)
        intensity = (raw > 100) if itype is bool else raw.astype(itype)
    expected = conncomp.regionprops(labels, intensity=intensity)
    before = labels.copy()
    got = blockwise.regionprops(labels, intensity, blocks=blocks)
    assert_same_table(got, expected, float_sums=itype in (np.float32, np.float64))
    np.testing.assert_array_equal(labels, before)


def test_block_shape_grid_and_volume_metadata():
    rng = np.random.default_rng(1)
    mask = rng.random((9, 10, 11)) < 0.3
    vol = as_volume(conncomp.label(mask, connectivity=3).values, spacing=(2.0, 0.5, 0.25), units="um")
    vol = vol.assign_coords(z=10.0 + 2.0 * np.arange(9))
    img = rng.integers(0, 4000, mask.shape).astype(np.uint16)
    expected = conncomp.regionprops(vol, intensity=img)
    got = blockwise.regionprops(vol, img, blocks=(4, 3, 5))
    assert_same_table(got, expected)
    assert got.units == "um"
    assert got.table["physical_centroid_z"].min() >= 10.0
    assert got.labels is vol


def test_empty_volume_gives_empty_table():
    labels = np.zeros((4, 5), np.uint16)
    img = np.ones((4, 5), np.float32)
    for intensity in (None, img):
        assert_same_table(
            blockwise.regionprops(labels, intensity, blocks=(2, 2)), conncomp.regionprops(labels, intensity=intensity)
        )


def test_properties_subset_keeps_table_order_and_skips_intensity():
    labels = np.array([[1, 1, 0, 2], [0, 3, 0, 2]])

    class Unreadable:
        shape, dtype = labels.shape, np.dtype(np.float32)

        def __getitem__(self, key):
            raise AssertionError("intensity read although no intensity property was asked for")

    got = blockwise.regionprops(labels, Unreadable(), blocks=(1, 2), properties=["centroid_x", "area"])
    assert list(got.table) == ["label", "area", "centroid_x"]
    full = conncomp.regionprops(labels).table
    for key in got.table:
        np.testing.assert_array_equal(got.table[key], full[key])


def test_memmap_and_hdf5_inputs(tmp_path):
    rng = np.random.default_rng(2)
    labels = conncomp.label(rng.random((8, 9, 10)) < 0.4, connectivity=1).values
    img = rng.integers(0, 255, labels.shape).astype(np.uint8)
    np.save(tmp_path / "img.npy", img)
    with h5py.File(tmp_path / "labels.h5", "w") as f:
        f["labels"] = labels
    expected = conncomp.regionprops(labels, intensity=img)
    with h5py.File(tmp_path / "labels.h5", "r") as f:
        got = blockwise.regionprops(f["labels"], np.load(tmp_path / "img.npy", mmap_mode="r"), blocks=(3, 3, 3))
        assert_same_table(got, expected)
        # the regions refer to the labels lazily (nothing read at wrapping), and read them on demand
        assert not isinstance(got.labels.variable._data, np.ndarray)
        np.testing.assert_array_equal(got.labels[2:4].values, labels[2:4])


@pytest.mark.parametrize(
    ("labels", "kwargs", "match"),
    [
        (np.ones((3, 3), bool), {}, "mask"),
        (np.ones((3, 3), np.float32), {}, "integer label volume"),
        (np.full((3, 3), -1, np.int32), {}, ">= 0"),
        (np.ones((3, 3), np.int32), {"intensity": np.ones((3, 2))}, "shape"),
        (np.ones((3, 3), np.int32), {"intensity": np.ones((3, 3), complex)}, "real-valued"),
        (np.ones((3, 3), np.int32), {"properties": ["areaa"]}, "unknown properties"),
        (np.ones((3, 3), np.int32), {"blocks": (2,)}, "block shape"),
        (np.ones((3, 3), np.int32), {"blocks": (0, 2)}, "block shape"),
    ],
)
def test_bad_parameters(labels, kwargs, match):
    kwargs = {"blocks": (2, 2), **kwargs}
    with pytest.raises(ParameterError, match=match):
        blockwise.regionprops(labels, **kwargs)


def test_regions_of_an_hdf5_dataset_pickle_as_a_reference(tmp_path):
    import pickle

    labels = np.array([[1, 1, 0, 2]] * 3, np.uint16)
    with h5py.File(tmp_path / "labels.h5", "w") as f:
        f["labels"] = labels
    with h5py.File(tmp_path / "labels.h5", "r", locking=False) as f:
        regions = blockwise.regionprops(f["labels"], blocks=(2, 2))
        copy = pickle.loads(pickle.dumps(regions))
    np.testing.assert_array_equal(copy.labels.values, labels)  # read from the file again
    np.testing.assert_array_equal(copy.table["area"], [6, 3])
