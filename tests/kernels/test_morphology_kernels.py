"""florin's morphology and size-filter kernels against scipy.ndimage and scikit-image (issue 15 items 1 and 2)."""

import warnings

import numpy as np
import pytest
import skimage.morphology as skm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

from florin import morphology
from florin._kernels import morphology as km
from florin._kernels import sizes as ks

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GREY_DTYPES = [np.bool_, np.uint8, np.uint16, np.float32, np.float64]


@st.composite
def shapes(draw, max_side=8):
    ndim = draw(st.sampled_from([2, 3]))
    return tuple(draw(st.integers(1, max_side)) for _ in range(ndim))


@st.composite
def footprints(draw, ndim):
    """Random footprints of 1-5 voxels per axis (even sizes too), boxes and crosses among them."""
    kind = draw(st.sampled_from(["random", "box", "cross"]))
    if kind == "cross":
        return ndi.generate_binary_structure(ndim, draw(st.integers(1, ndim)))
    shape = tuple(draw(st.integers(1, 5)) for _ in range(ndim))
    if kind == "box":
        return np.ones(shape, bool)
    seed = draw(st.integers(0, 2**32 - 1))
    fp = np.random.default_rng(seed).random(shape) < 0.6
    fp.flat[draw(st.integers(0, fp.size - 1))] = True
    return fp


@st.composite
def mask_and_footprint(draw):
    shape = draw(shapes())
    seed = draw(st.integers(0, 2**32 - 1))
    density = draw(st.sampled_from([0.3, 0.6, 0.9]))
    mask = np.random.default_rng(seed).random(shape) < density
    return mask, draw(footprints(len(shape)))


@st.composite
def image_and_footprint(draw):
    shape = draw(shapes())
    dtype = np.dtype(draw(st.sampled_from(GREY_DTYPES)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype.kind == "b":
        image = rng.random(shape) < 0.5
    elif dtype.kind == "f":
        image = rng.normal(0, 10, shape).astype(dtype)
    else:
        image = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    return image, draw(footprints(len(shape)))


def _skimage(name, *args, **kwargs):
    with warnings.catch_warnings():  # scikit-image 0.26 deprecates its binary_* (the oracle here)
        warnings.simplefilter("ignore", FutureWarning)
        return getattr(skm, name)(*args, **kwargs)


@SETTINGS
@given(mask_and_footprint(), st.booleans())
def test_binary_erosion_and_dilation_equal_scipy(case, border_value):
    mask, fp = case
    np.testing.assert_array_equal(
        km.binary_erosion(mask, fp, border_value=border_value), ndi.binary_erosion(mask, fp, border_value=border_value)
    )
    np.testing.assert_array_equal(
        km.binary_dilation(mask, fp, border_value=border_value),
        ndi.binary_dilation(mask, fp, border_value=border_value),
    )


@SETTINGS
@given(
    mask_and_footprint(),
    st.sampled_from(["binary_erosion", "binary_dilation", "binary_opening", "binary_closing"]),
    st.sampled_from(["ignore", "min", "max"]),
    st.booleans(),
)
def test_binary_operators_equal_scikit_image(case, name, mode, integer_input):
    mask, fp = case
    image = mask.astype(np.int32) * 7 if integer_input else mask  # nonzero is foreground
    out = getattr(morphology, name)(image, footprint=fp, mode=mode).values
    assert out.dtype == bool
    np.testing.assert_array_equal(out, _skimage(name, mask, fp, mode=mode))


@SETTINGS
@given(
    image_and_footprint(),
    st.sampled_from(["erosion", "dilation", "opening", "closing"]),
    st.sampled_from(["reflect", "constant", "nearest", "mirror", "wrap", "max", "min", "ignore"]),
)
def test_grey_operators_equal_scikit_image(case, name, mode):
    image, fp = case
    out = getattr(morphology, name)(image, footprint=fp, mode=mode).values
    expected = _skimage(name, image, fp, mode=mode)
    assert out.dtype == expected.dtype
    np.testing.assert_array_equal(out, expected)


def test_footprint_larger_than_the_image_every_mode(rng):
    image = rng.integers(0, 100, (3, 2)).astype(np.uint8)
    fp = rng.random((7, 9)) < 0.5
    fp[0, 0] = True
    for mode in ["reflect", "constant", "nearest", "mirror", "wrap", "max", "min", "ignore"]:
        for name in ["erosion", "dilation", "opening", "closing"]:
            got = getattr(morphology, name)(image, footprint=fp, mode=mode).values
            np.testing.assert_array_equal(got, _skimage(name, image, fp, mode=mode), err_msg=f"{name} {mode}")


@pytest.mark.parametrize("name", ["binary_opening", "binary_closing", "opening", "closing"])
def test_decomposed_footprints_equal_scikit_image(name, rng):
    image = rng.random((9, 30, 31)) < 0.6
    if not name.startswith("binary"):
        image = rng.integers(0, 200, image.shape).astype(np.uint8)
    fp = ((np.ones((3, 1, 1)), 2), (np.ones((1, 3, 3)), 1), (skm.ball(1), 1))
    out = getattr(morphology, name)(image, footprint=fp).values
    np.testing.assert_array_equal(out, _skimage(name, image, fp))
    assert getattr(morphology, name)(footprint=fp).halo((9, 30, 31)) == (6, 4, 4)  # 2 x (2 + 1, 1 + 1, 1 + 1)


def test_separable_footprints_take_one_pass_per_axis():
    """Boxes and outer products of 1-D footprints are split into axes; a cross or a ball is not."""
    box = km.footprint_offsets(np.ones((3, 1, 5)))
    assert [list(a) for a in km._separable(box, 3)] == [[-1, 0, 1], [0], [-2, -1, 0, 1, 2]]
    outer = np.array([1, 0, 1])[:, None, None] * np.ones((1, 2, 3))
    assert [list(a) for a in km._separable(km.footprint_offsets(outer), 3)] == [[-1, 1], [-1, 0], [-1, 0, 1]]
    assert km._separable(km.footprint_offsets(ndi.generate_binary_structure(3, 1)), 3) is None
    assert km._separable(km.footprint_offsets(skm.ball(2)), 3) is None


@pytest.mark.parametrize("fp", [ndi.generate_binary_structure(3, 1), np.ones((3, 5, 3), bool), skm.ball(2)])
def test_threads_give_the_serial_result(fp, rng):
    mask = rng.random((24, 70, 90)) < 0.7
    want = ndi.binary_erosion(mask, fp, border_value=1)
    for threads in (1, 2):
        np.testing.assert_array_equal(km.binary_erosion(mask, fp, threads=threads), want)
    grey = rng.integers(0, 1000, mask.shape).astype(np.uint16)
    np.testing.assert_array_equal(km.grey_dilation(grey, fp, threads=2), skm.dilation(grey, fp))


def test_long_runs_use_van_herk_and_stay_exact(rng):
    image = rng.normal(0, 1, (5, 300)).astype(np.float32)
    for width in (17, 40, 299, 301):
        fp = np.ones((1, width), bool)
        fp[0, width // 3] = False  # two runs, both long
        for mode in ["reflect", "nearest", "wrap", "ignore"]:
            np.testing.assert_array_equal(
                morphology.erosion(image, footprint=fp, mode=mode).values, skm.erosion(image, fp, mode=mode)
            )
            np.testing.assert_array_equal(
                morphology.dilation(image, footprint=fp, mode=mode).values, skm.dilation(image, fp, mode=mode)
            )


# -- size filters ------------------------------------------------------------------------------------------


@st.composite
def masks(draw):
    shape = draw(shapes(max_side=12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.random(shape) < draw(st.sampled_from([0.2, 0.5, 0.8]))


@SETTINGS
@given(masks(), st.integers(0, 12), st.data())
def test_remove_small_objects_and_holes_equal_scikit_image(mask, min_size, data):
    connectivity = data.draw(st.integers(1, mask.ndim))
    got = morphology.remove_small_objects(mask, min_size=min_size, connectivity=connectivity).values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "only one label" warnings
        want = skm.remove_small_objects(mask, max_size=min_size - 1, connectivity=connectivity)
        want_holes = skm.remove_small_holes(mask, max_size=min_size - 1, connectivity=connectivity)
    np.testing.assert_array_equal(got, want)
    got_holes = morphology.remove_small_holes(mask, min_size=min_size, connectivity=connectivity).values
    np.testing.assert_array_equal(got_holes, want_holes)
    assert got.dtype == bool and got_holes.dtype == bool


@SETTINGS
@given(masks(), st.integers(0, 12), st.sampled_from([np.uint8, np.uint16, np.int32, np.uint32, np.int64]))
def test_remove_small_objects_on_label_images_equals_scikit_image(mask, min_size, dtype):
    labels = ndi.label(mask)[0]
    labels = np.where(labels > 0, labels % 200 + 1, 0).astype(dtype)  # label ids repeat: objects are ids
    got = morphology.remove_small_objects(labels, min_size=min_size).values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        want = skm.remove_small_objects(labels, max_size=min_size - 1)
    assert got.dtype == labels.dtype
    np.testing.assert_array_equal(got, want)


def test_size_kernels_on_a_larger_volume_with_threads(rng):
    mask = ndi.binary_opening(rng.random((20, 90, 100)) < 0.55)
    for connectivity in (1, 3):
        want = skm.remove_small_objects(mask, max_size=29, connectivity=connectivity)
        np.testing.assert_array_equal(ks.remove_small_objects(mask, 30, connectivity), want)
        want = skm.remove_small_holes(mask, max_size=29, connectivity=connectivity)
        np.testing.assert_array_equal(ks.remove_small_holes(mask, 30, connectivity), want)
    labels = ndi.label(mask)[0].astype(np.uint32)
    np.testing.assert_array_equal(ks.label_sizes(labels), np.bincount(labels.ravel()))


def test_empty_and_full_masks():
    for mask in (np.zeros((4, 5), bool), np.ones((4, 5), bool), np.zeros((0, 3), bool)):
        for min_size in (3, 30):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                objects = skm.remove_small_objects(mask, max_size=min_size - 1)
                holes = skm.remove_small_holes(mask, max_size=min_size - 1)
            np.testing.assert_array_equal(morphology.remove_small_objects(mask, min_size=min_size).values, objects)
            np.testing.assert_array_equal(morphology.remove_small_holes(mask, min_size=min_size).values, holes)
