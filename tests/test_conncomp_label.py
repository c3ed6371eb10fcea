"""conncomp.label: whole-volume and tiled labeling equal scipy.ndimage.label."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from objects_helpers import ThreadMap, assert_same_partition, executors, scipy_label
from scipy import ndimage as ndi

import florin
import florin._kernels.label as klabel
import florin.conncomp as conncomp
import florin.thresholding as thresholding
from florin.errors import OperatorBindError, ParameterError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def masks(draw, ndims=(2, 3)):
    ndim = draw(st.sampled_from(ndims))
    shape = tuple(draw(st.lists(st.integers(1, 14 if ndim == 3 else 30), min_size=ndim, max_size=ndim)))
    density = draw(st.sampled_from([0.2, 0.45, 0.6, 0.8]))
    seed = draw(st.integers(0, 2**32 - 1))
    mask = np.random.default_rng(seed).random(shape) < density
    connectivity = draw(st.integers(1, ndim))
    return mask, connectivity


@st.composite
def tiling(draw, shape):
    tile_shape, stride = [], []
    for n in shape:
        t = draw(st.integers(1, max(n, 1)))
        tile_shape.append(t)
        stride.append(draw(st.integers(1, t)))
    halo = draw(st.integers(0, 2))
    return tuple(tile_shape), tuple(stride), halo


@SETTINGS
@given(masks())
def test_whole_volume_equals_scipy(case):
    mask, connectivity = case
    got = conncomp.label(mask, connectivity=connectivity)
    want, n = scipy_label(mask, connectivity)
    assert got.dtype == np.uint32
    np.testing.assert_array_equal(got.values, want)  # identical numbering, not only up to renumbering
    assert int(got.values.max()) == n


@SETTINGS
@given(masks(), st.data())
def test_tiled_pipeline_equals_scipy(case, data):
    mask, connectivity = case
    tile_shape, stride, halo = data.draw(tiling(mask.shape))
    pipeline = florin.Serial(
        florin.tile(shape=tile_shape, stride=stride, halo=halo), conncomp.label(connectivity=connectivity)
    )
    got = pipeline(mask)
    want, _ = scipy_label(mask, connectivity)
    assert_same_partition(got.values, want)
    np.testing.assert_array_equal(got.values, want)  # and even the same numbering
    assert got.dtype == np.uint32
    assert "florin_labels" not in got.attrs and "florin_tile" not in got.attrs


def _tiled_label(mask, tile_shape, connectivity):
    return florin.Serial(florin.tile(shape=tile_shape), conncomp.label(connectivity=connectivity))(mask)


@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_tiled_pipeline_equals_the_kernel_for_fixed_tiles(connectivity):
    # single-voxel tiles, tiles larger than the volume along an axis, one tile for all
    rng = np.random.default_rng(11)
    mask = rng.random((10, 13, 9)) < 0.5
    want, n = klabel.label(mask, connectivity)
    for tile_shape in [(1, 1, 1), (3, 4, 2), (10, 13, 9), (4, 20, 3)]:
        got = _tiled_label(mask, tile_shape, connectivity)
        assert int(got.values.max()) == n
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got.values, want)


@st.composite
def masks_and_tiles(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 9 if ndim < 4 else 5), min_size=ndim, max_size=ndim)))
    tile_shape = tuple(draw(st.integers(1, s + 1)) for s in shape)
    density = draw(st.sampled_from([0.3, 0.5, 0.7]))
    seed = draw(st.integers(0, 2**32 - 1))
    mask = np.random.default_rng(seed).random(shape) < density
    connectivity = draw(st.integers(1, ndim))
    return mask, tile_shape, connectivity


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(masks_and_tiles())
def test_tiled_pipeline_equals_the_kernel_in_1_to_4_dimensions(case):
    mask, tile_shape, connectivity = case
    want, n = klabel.label(mask, connectivity)
    got = _tiled_label(mask, tile_shape, connectivity)
    assert int(got.values.max(initial=0)) == n
    np.testing.assert_array_equal(got.values, want)


@pytest.mark.parametrize("executor", executors(), ids=lambda e: e.__name__)
@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_nested_pipeline_over_tiles_merges_faces_edges_corners(executor, connectivity, rng):
    # blobs of every size cross tile faces, edges and corners
    image = ndi.gaussian_filter(rng.random((18, 40, 44)), 1.5).astype(np.float32)
    pipeline = florin.Serial(
        florin.tile(shape=(7, 16, 16), stride=(6, 12, 13)),
        executor(thresholding.ndnt(shape=(3, 9, 9), threshold=0.05), conncomp.label(connectivity=connectivity)),
    )
    got = pipeline(image)
    mask = thresholding.ndnt(image, shape=(3, 9, 9), threshold=0.05).values
    want, n = scipy_label(mask, connectivity)
    assert n > 50
    np.testing.assert_array_equal(got.values, want)


def test_objects_spanning_many_tiles_become_one(rng):
    mask = np.zeros((9, 30, 30), bool)
    mask[4, :, 15] = True  # a wall crossing every tile along y
    mask[:, 3, :] = True
    idx = np.arange(9)
    mask[idx, idx, idx] = True  # a diagonal: only corner-connected
    for connectivity, expected in ((1, 7), (3, 1)):
        got = florin.Serial(florin.tile(shape=(2, 4, 4)), conncomp.label(connectivity=connectivity))(mask)
        want, n = scipy_label(mask, connectivity)
        np.testing.assert_array_equal(got.values, want)
        assert n == expected


def test_keeps_dims_coords_attrs():
    mask = florin.as_volume(np.eye(4, dtype=bool), spacing=(0.5, 2.0), units="um", attrs={"source": "x"})
    out = conncomp.label(mask)
    assert out.dims == mask.dims and out.attrs == mask.attrs
    np.testing.assert_array_equal(out.coords["x"], mask.coords["x"])
    assert int(out.values.max()) == 4


def test_tiled_labels_keep_volume_coords_and_attrs():
    mask = florin.as_volume(np.eye(10, dtype=bool), spacing=(0.5, 2.0), attrs={"source": "x"})
    out = florin.Serial(florin.tile(shape=3), conncomp.label(connectivity=2))(mask)
    assert out.attrs == mask.attrs
    np.testing.assert_array_equal(out.coords["y"], mask.coords["y"])
    assert int(out.values.max()) == 1


def test_uint64_when_the_volume_could_hold_more_labels(monkeypatch):
    monkeypatch.setattr(klabel, "_UINT32_MAX", 50)  # pretend uint32 is too small for 8x8 = 64 voxels
    mask = np.random.default_rng(3).random((8, 8)) < 0.5
    whole = conncomp.label(mask)
    tiled = florin.Serial(florin.tile(shape=(3, 3)), conncomp.label())(mask)
    assert whole.dtype == tiled.dtype == np.uint64
    np.testing.assert_array_equal(whole.values, scipy_label(mask, 1)[0])
    np.testing.assert_array_equal(tiled.values, whole.values)


def test_empty_and_full_volumes():
    assert int(conncomp.label(np.zeros((4, 5), bool)).values.max()) == 0
    tiled = florin.Serial(florin.tile(shape=2), conncomp.label())(np.ones((5, 5), bool))
    assert (tiled.values == 1).all()
    tiled = florin.Serial(florin.tile(shape=2), conncomp.label())(np.zeros((5, 5), bool))
    assert (tiled.values == 0).all()


def test_nonzero_numbers_are_foreground():
    np.testing.assert_array_equal(conncomp.label(np.array([0, 3, 2, 0, -1])).values, [0, 1, 1, 0, 2])


def test_connectivity_is_checked():
    with pytest.raises(ParameterError, match="connectivity"):
        conncomp.label(connectivity=0)  # when the pipeline is built
    with pytest.raises(ParameterError, match="between 1 and 2"):
        conncomp.label(np.ones((3, 3)), connectivity=3)
    with pytest.raises(OperatorBindError, match="did you mean `connectivity`"):
        conncomp.label(conectivity=1)


def test_label_pickles_and_runs_in_a_thread_map(rng):
    import pickle

    op = pickle.loads(pickle.dumps(conncomp.label(connectivity=2)))
    mask = rng.random((10, 20)) < 0.5
    out = florin.Serial(florin.tile(shape=(4, 7)), ThreadMap(op))(mask)
    np.testing.assert_array_equal(out.values, scipy_label(mask, 2)[0])


def test_save_of_unmerged_tile_labels_is_refused(tmp_path):
    import numpy as np
    import pytest

    import florin
    import florin.conncomp as conncomp

    mask = np.zeros((8, 8), bool)
    mask[:, 3] = True
    with pytest.raises(florin.errors.PipelineError, match="`save` after the tiled pipeline"):
        florin.Serial(florin.tile(shape=(4, 8)), florin.Serial(conncomp.label(), florin.save(tmp_path / "l.npy")))
    assert not (tmp_path / "l.npy").exists()


def test_step_after_label_in_a_flat_tiled_pipeline_equals_the_whole_volume():
    # Issue 14 item 2: the step after label() ran on per-tile labels and the result differed silently.
    import numpy as np

    import florin
    import florin.conncomp as conncomp
    import florin.morphology as morphology

    mask = np.random.default_rng(0).random((12, 12, 12)) > 0.6
    whole = florin.Serial(conncomp.label(), morphology.binary_dilation())(mask)
    tiled = florin.Serial(florin.tile(shape=4), conncomp.label(), morphology.binary_dilation())(mask)
    assert tiled.dtype == whole.dtype
    np.testing.assert_array_equal(tiled.values, whole.values)


def test_step_after_label_inside_a_tiled_pipeline_is_refused_when_built():
    import pytest

    import florin
    import florin.conncomp as conncomp
    import florin.morphology as morphology

    with pytest.raises(florin.errors.PipelineError, match="`binary_dilation` comes after `label`"):
        florin.Serial(florin.tile(shape=4), florin.Serial(conncomp.label(), morphology.binary_dilation()))
    with pytest.raises(florin.errors.PipelineError, match="`binary_dilation` after the tiled pipeline"):  # nested deeper
        florin.Serial(florin.tile(shape=4),
                      florin.Multithread(conncomp.label(), florin.Serial(morphology.binary_dilation())))
    # regionprops declares that it takes merged tiles; the same steps without tiles are fine
    florin.Serial(florin.tile(shape=4), florin.Multithread(conncomp.label(), conncomp.regionprops()))
    florin.Serial(conncomp.label(), morphology.binary_dilation())


def test_declared_merge_property_is_what_counts_not_the_operator():
    import numpy as np
    import pytest

    import florin
    import florin.conncomp as conncomp

    def _tag(image):
        return image

    merging = florin.florinate(_tag, merged_at_join=True)
    taking = florin.florinate(_tag, takes_merged_tiles=True)
    with pytest.raises(florin.errors.PipelineError, match="`_tag` comes after `label`"):
        florin.Serial(florin.tile(shape=4), florin.Serial(conncomp.label(), florin.florinate(_tag)()))
    with pytest.raises(florin.errors.PipelineError, match="`label` comes after `_tag`"):
        florin.Serial(florin.tile(shape=4), florin.Serial(merging(), conncomp.label()))
    mask = np.zeros((8, 8), bool)
    mask[:, 3] = True
    out = florin.Serial(florin.tile(shape=4), florin.Serial(conncomp.label(), taking()))(mask)
    np.testing.assert_array_equal(out.values, conncomp.label(mask).values)
