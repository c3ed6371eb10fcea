import warnings

import numpy as np
import pytest
import skimage.morphology as skm
import xarray as xr

import florin
from florin import morphology
from florin.errors import ParameterError

BINARY = ["binary_opening", "binary_closing", "binary_erosion", "binary_dilation"]
GREY = ["opening", "closing", "erosion", "dilation"]


@pytest.mark.parametrize("name", BINARY + GREY)
def test_wrappers_match_scikit_image_and_keep_labels(name, rng):
    image = rng.random((6, 20, 22))
    data = image > 0.5 if name.startswith("binary") else image
    vol = florin.as_volume(data, spacing=(2.0, 0.5, 0.5), attrs={"note": "x"})
    out = getattr(morphology, name)()(vol)
    with warnings.catch_warnings():  # scikit-image 0.26 deprecates its binary_* (the oracle here)
        warnings.simplefilter("ignore", FutureWarning)
        expected = getattr(skm, name)(data)
    assert isinstance(out, xr.DataArray)
    np.testing.assert_array_equal(out.values, expected)
    assert out.dims == vol.dims and out.attrs["note"] == "x"
    np.testing.assert_array_equal(out.coords["z"].values, vol.coords["z"].values)


def test_remove_small_objects_seed_min_size_spelling(rng):
    mask = rng.random((30, 30)) > 0.7
    out = morphology.remove_small_objects(max_size=2)(mask).values
    try:
        expected = skm.remove_small_objects(mask, max_size=2)  # scikit-image >= 0.26
    except TypeError:
        expected = skm.remove_small_objects(mask, max_size=2)
    np.testing.assert_array_equal(out, expected)


def test_remove_small_holes_on_masks_and_labels():
    mask = np.ones((7, 7), bool)
    mask[3, 3] = False
    assert morphology.remove_small_holes(mask, max_size=19).values.all()
    labels = np.zeros((7, 9), np.int32)
    labels[1:6, 1:4] = 4
    labels[3, 2] = 0
    labels[1:6, 5:8] = 7
    out = morphology.remove_small_holes(labels, max_size=19).values
    assert out[3, 2] == 4 and set(np.unique(out)) == {0, 4, 7}


@pytest.mark.parametrize("shape", [(40, 37), (9, 17, 19)])
def test_remove_small_holes_on_labels_equals_scipy_neighbourhood_maximum(shape, rng):
    # The reference: a filled hole takes the largest label of scipy's maximum_filter over the hole.
    from scipy import ndimage as ndi

    for connectivity in range(1, len(shape) + 1):
        cells = np.indices(shape) // 4  # blocks of 4 voxels a side, numbered: labels that touch each other
        labels = (np.ravel_multi_index(tuple(cells), tuple(c.max() + 1 for c in cells)) + 1).astype(np.uint16)
        labels[rng.random(shape) > 0.9] = 0  # small holes, some between two labels
        holes, n = ndi.label(labels == 0, ndi.generate_binary_structure(len(shape), connectivity))
        sizes = np.bincount(holes.ravel())
        fill = (sizes <= 3) & (np.arange(n + 1) > 0)
        border = ndi.maximum_filter(labels, footprint=ndi.generate_binary_structure(len(shape), connectivity))
        lut = np.zeros(n + 1, labels.dtype)
        ids = np.flatnonzero(fill)
        lut[ids] = ndi.maximum(border, labels=holes, index=ids)
        expected = np.where(fill[holes], lut[holes], labels)
        out = morphology.remove_small_holes(labels, max_size=3, connectivity=connectivity).values
        assert fill.any()
        np.testing.assert_array_equal(out, expected)


def test_remove_small_objects_keeps_labels():
    labels = np.zeros((5, 5), np.uint16)
    labels[0, 0] = 3
    labels[2:5, 2:5] = 9
    assert set(np.unique(morphology.remove_small_objects(labels, max_size=1).values)) == {0, 9}


def test_bad_min_size_is_a_parameter_error():
    with pytest.raises(ParameterError, match="min_size"):
        morphology.remove_small_objects(np.ones((3, 3), bool), min_size=-1)


def test_binary_mode_min_erodes_from_the_border():
    mask = np.ones((5, 5), bool)
    assert morphology.binary_erosion(mask).values.all()
    assert not morphology.binary_erosion(mask, mode="min").values[0].any()
    with pytest.raises(ParameterError, match="mode"):
        morphology.binary_erosion(mask, mode="reflect")


@pytest.mark.parametrize("name", ["remove_small_objects", "remove_small_holes"])
def test_min_size_and_max_size_together_is_an_error_and_max_size_is_min_size_minus_one(name):
    # Issue 16 item 5: max_size (scikit-image >= 0.26) no longer silently wins over min_size (FLoRIN).
    mask = np.zeros((6, 6), bool)
    mask[0, 0] = True
    mask[2:5, 2:5] = True
    op = getattr(morphology, name)
    with pytest.raises(ParameterError, match=rf"{name}\(\): pass min_size .* or max_size .*, not both"):
        op(mask, min_size=2, max_size=1)
    np.testing.assert_array_equal(op(mask, max_size=1).values, op(mask, min_size=2).values)
    np.testing.assert_array_equal(op(mask).values, op(mask, min_size=64).values)


@pytest.mark.parametrize("name", ["remove_small_objects", "remove_small_holes"])
def test_max_size_is_the_name_and_min_size_a_deprecated_alias(name):
    # Issue 16 item 5: named as scikit-image 0.26 names them (max_size: sizes at or below it go).
    from florin import blockwise
    from florin.errors import FlorinDeprecationWarning

    mask = np.zeros((8, 8), bool)
    mask[0, 0] = True
    mask[2:4, 2:4] = True
    mask[5:8, 5:8] = True
    if name == "remove_small_holes":
        mask = ~mask
    op = getattr(morphology, name)
    reference = getattr(skm, name)(mask, max_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new name warns about nothing
        np.testing.assert_array_equal(op(mask, max_size=4).values, reference)
    with pytest.warns(FlorinDeprecationWarning, match=rf"{name}\(\): min_size=5 is deprecated; use max_size=4"):
        step = op(min_size=5)  # warned when the step is built, where the call is written
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(step(mask).values, reference)
    out = np.zeros_like(mask)
    with pytest.warns(FlorinDeprecationWarning, match="min_size=5 is deprecated"):
        getattr(blockwise, name)(mask, out, blocks=[(slice(0, 4), slice(0, 8)), (slice(4, 8), slice(0, 8))],
                                 min_size=5)
    np.testing.assert_array_equal(out, reference)
    # The default keeps FLoRIN's (objects under 64 voxels go), which is max_size=63.
    big = np.zeros((10, 10), bool)
    big[:8, :8] = True  # 64 voxels: kept by default, removed by scikit-image's default (64)
    big[9, 9] = True
    kept = morphology.remove_small_objects(big).values
    assert kept.sum() == 64 and not skm.remove_small_objects(big).any()
