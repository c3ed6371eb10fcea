"""Tiling: tiles partition the volume, and tiled == whole volume, voxel for voxel, for every operator that declares
its halo.

Property-based: random volume shapes (1-D to 3-D, sizes not multiples of the
stride), tile shapes, strides, halos from the steps, NDNT neighbourhoods,
thresholds and polarities, and binary morphology footprints and modes.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import florin
import florin.morphology as morphology
import florin.thresholding as thresholding
from florin.tiling import tile_infos

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def geometry(draw, min_ndim=1, max_ndim=3, max_side=18):
    """(volume shape, tile shape, stride): at most ~150 tiles."""
    ndim = draw(st.integers(min_ndim, max_ndim))
    shape, tile, stride = [], [], []
    for _ in range(ndim):
        n = draw(st.integers(1, max_side))
        s = draw(st.integers(max(1, math.ceil(n / 5)), n + 2))
        t = draw(st.integers(s, s + 6))
        shape.append(n)
        tile.append(t)
        stride.append(s)
    return tuple(shape), tuple(tile), tuple(stride)


@st.composite
def images(draw, shape, integer=None):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if integer is None:
        integer = draw(st.booleans())
    if integer:
        dtype = draw(st.sampled_from([np.uint8, np.int16, np.uint16]))
        return rng.integers(0, 50, size=shape).astype(dtype)
    return (rng.random(shape) * 100).astype(draw(st.sampled_from([np.float32, np.float64])))


@st.composite
def footprints(draw, ndim):
    shape = tuple(draw(st.integers(1, 5)) for _ in range(ndim))
    seed = draw(st.integers(0, 2**32 - 1))
    fp = np.random.default_rng(seed).random(shape) < draw(st.floats(0.3, 1.0))
    fp[tuple(s // 2 for s in shape)] = True
    return fp


def tiled(steps, tile, stride, image):
    return florin.Serial(florin.tile(shape=tile, stride=stride, blocks="tiles"), *steps)(image)


@st.composite
def ndnt_case(draw):
    shape, tile, stride = draw(geometry())
    image = draw(images(shape))
    nshape = draw(st.one_of(st.none(), st.tuples(*[st.integers(1, 7) for _ in shape])))
    threshold = draw(st.one_of(st.floats(0, 1), st.floats(1.5, 100), st.sampled_from([0, 0.3, 1, 25])))
    polarity = draw(st.sampled_from(["dark", "bright"]))
    return image, tile, stride, dict(shape=nshape, threshold=threshold, polarity=polarity)


@SETTINGS
@given(ndnt_case())
def test_tiled_ndnt_equals_whole_volume(case):
    image, tile, stride, params = case
    whole = thresholding.ndnt(image, **params)
    np.testing.assert_array_equal(tiled([thresholding.ndnt(**params)], tile, stride, image).values, whole.values)


@st.composite
def morphology_case(draw):
    shape, tile, stride = draw(geometry())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mask = rng.random(shape) < draw(st.floats(0.2, 0.8))
    name = draw(st.sampled_from(["binary_erosion", "binary_dilation", "binary_opening", "binary_closing"]))
    fp = draw(st.one_of(st.none(), footprints(len(shape))))
    mode = draw(st.sampled_from(["ignore", "min"]))
    return mask, tile, stride, name, dict(footprint=fp, mode=mode)


@SETTINGS
@given(morphology_case())
def test_tiled_binary_morphology_equals_whole_volume(case):
    mask, tile, stride, name, params = case
    op = getattr(morphology, name)
    whole = op(mask, **params)
    np.testing.assert_array_equal(tiled([op(**params)], tile, stride, mask).values, whole.values)


@SETTINGS
@given(ndnt_case(), st.data())
def test_tiled_ndnt_then_morphology_chain_equals_whole_volume(case, data):
    image, tile, stride, params = case
    fp = data.draw(st.one_of(st.none(), footprints(image.ndim)))
    name = data.draw(st.sampled_from(["binary_opening", "binary_closing"]))
    op = getattr(morphology, name)
    whole = op(thresholding.ndnt(image, **params), footprint=fp)
    steps = [thresholding.ndnt(**params), op(footprint=fp)]
    np.testing.assert_array_equal(tiled(steps, tile, stride, image).values, whole.values)
    # The same chain as a nested pipeline (halo from the pipeline's steps) and with Multithread.
    nested = florin.Serial(florin.tile(shape=tile, stride=stride, blocks="tiles"),
                           florin.Multithread(*steps, workers=2))(image)
    np.testing.assert_array_equal(nested.values, whole.values)


@SETTINGS
@given(geometry(max_ndim=4, max_side=12), st.data())
def test_tiles_partition_the_volume_and_join_restores_it(geom, data):
    shape, tile, stride = geom
    halo = tuple(data.draw(st.integers(0, 3)) for _ in shape)
    owner = np.zeros(shape, int)
    infos = tile_infos(shape, tile, stride, halo)
    for info in infos:
        owner[info.core_slices] += 1
        for sl, n in zip(info.read_slices, shape, strict=True):
            assert 0 <= sl.start and sl.stop <= n
    assert (owner == 1).all()
    image = np.arange(int(np.prod(shape))).reshape(shape)
    tiles = florin.tile(shape=tile, stride=stride, halo=halo)(image)
    assert florin.tilemeta.info_of(tiles[0]).full_shape == shape
    np.testing.assert_array_equal(florin.join(list(tiles), like=tiles.volume).values, image)


@pytest.mark.parametrize(
    "shape, stride, match",
    [((4, 4), (5, 4), "stride"), ((0, 4), None, "shape"), ((4, 4, 4), None, "entries"), ((4, 4), (4,), "different lengths")],
)
def test_invalid_tile_geometry_is_a_clear_error(shape, stride, match):
    with pytest.raises(florin.errors.TilingError, match=match):
        florin.tile(shape=shape, stride=stride)(np.zeros((10, 10)))


@pytest.mark.parametrize("args, names", [(((4, 4),), "shape"), (((4, 4), 2), "shape, stride")])
def test_tile_takes_its_options_by_keyword_only(args, names):
    keywords = ", ".join(f"{n}=..." for n in names.split(", "))
    with pytest.raises(florin.errors.ParameterTypeError, match=rf"^tile: pass {names} by keyword: tile\({keywords}\)$"):
        florin.tile(*args)
    assert florin.tile(shape=(4, 4), stride=2).stride == 2


def test_tile_geometry_is_checked_when_the_step_is_built():
    with pytest.raises(florin.errors.TilingError, match="shape"):
        florin.tile(shape=(4, 0))


def test_negative_halo_is_a_clear_error():
    with pytest.raises(florin.errors.TilingError, match="halo"):
        tile_infos((10, 10), shape=(4, 4), halo=-1)
