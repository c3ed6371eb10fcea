"""The step protocol (florin.steps) and the result kinds of tiling.join (issue 13 item 3)."""

from __future__ import annotations

import math
import pickle
import random

import cloudpickle
import numpy as np
import pytest
import xarray as xr

import florin
import florin.conncomp as conncomp
import florin.morphology as morphology
from florin import steps, tilemeta
from florin.errors import ParameterError, PipelineError
from florin.tiling import TileJoin, join, register_join, tile, unregister_join


def test_declared_kinds_of_the_builtin_steps():
    shape = (8, 8)
    assert steps.kind(conncomp.label(), shape) == "label-merge"
    assert steps.kind(morphology.remove_small_objects(max_size=2), shape) == "label-merge"
    assert steps.kind(morphology.remove_small_holes(max_size=2), shape) == "label-merge"
    assert steps.kind(conncomp.regionprops(), shape) == "reduce"
    assert steps.kind(florin.reconstruct(), shape) == "lookup"
    assert steps.kind(morphology.binary_opening(), shape) == "map"
    assert steps.blockwise_impl(morphology.binary_opening()) is None


def _alloc(shape, dtype):
    return np.zeros(shape, dtype)


@pytest.mark.parametrize("op", [conncomp.label(connectivity=2), morphology.remove_small_objects(max_size=3),
                                morphology.remove_small_holes(max_size=2, connectivity=2)], ids=lambda op: op.name)
def test_declared_blockwise_forms_equal_the_steps(op):
    mask = florin.as_volume(np.random.default_rng(2).random((7, 9, 8)) < 0.45)
    blocks = [(slice(a, min(a + 3, 7)), slice(0, 9), slice(0, 8)) for a in range(0, 7, 3)]
    got = steps.blockwise_impl(op)(mask, allocate=_alloc, blocks=blocks, map=map, **steps.params(op))
    np.testing.assert_array_equal(got.values, op(mask).values)
    assert got.dtype == op(mask).dtype and got.dims == mask.dims


def test_undeclared_kind_is_map_or_whole_for_an_unbounded_halo():
    assert steps.kind(np.negative, (4, 4)) == "map"
    whole = florin.florinate(lambda image: image, halo=math.inf)()
    assert steps.kind(whole, (4, 4)) == "whole"
    assert steps.halo(whole, (4, 4)) == (math.inf, math.inf)
    assert steps.kind(florin.Serial(np.negative), (4, 4)) == "whole"


def test_florinate_records_the_kind_and_it_survives_pickling():
    def total(image, *, scale=1):
        return image * scale

    factory = florin.florinate(total, kind="reduce", blockwise="florin.blockwise:regionprops")
    op = factory(scale=2)
    assert steps.kind(op, (3,)) == "reduce"
    assert steps.blockwise_impl(op) is florin.blockwise.regionprops
    assert steps.params(op) == {"scale": 2}
    again = cloudpickle.loads(cloudpickle.dumps(op))
    assert steps.kind(again, (3,)) == "reduce"
    assert steps.kind(pickle.loads(pickle.dumps(conncomp.label())), (3,)) == "label-merge"


def test_a_bad_kind_is_a_parameter_error_naming_the_valid_ones():
    with pytest.raises(ParameterError, match=r"kind must be one of 'map', 'label-merge', 'reduce', 'lookup', 'whole'"):
        florin.florinate(lambda image: image, kind="merge")
    with pytest.raises(ParameterError, match="blockwise must be a callable"):
        florin.florinate(lambda image: image, blockwise=3)


def test_undeclared_attributes_take_the_protocol_defaults():
    class Bare:
        def __call__(self, image):
            return image

    bare = Bare()
    assert steps.name(bare) == "Bare"
    assert steps.per_item(bare) and not steps.accepts_tiles(bare) and not steps.reads_paths(bare)
    assert steps.halo(bare, (2, 3)) == (0, 0)
    assert steps.spec(bare) is None
    assert steps.reads_paths(florin.load()) and steps.accepts_tiles(florin.save("x.npy"))


# -- result kinds --------------------------------------------------------------------------------
class _MaxStats(TileJoin):
    """A plugin's result kind: tiles carry a statistic, the join aggregates it (no volume)."""

    name = "max statistic"

    @classmethod
    def claims(cls, tile):
        return "tile_max" in tile.attrs

    def __init__(self, first, **kwargs):
        super().__init__(first, **kwargs)
        self.best, self.seen = -np.inf, set()

    def add(self, tile, info):
        self.best = max(self.best, tile.attrs["tile_max"])
        self.seen.add(info.index)

    def finish(self):
        assert self.seen == {i.index for i in self.infos}
        return float(self.best)


@florin.florinate
def _tile_max(image):
    info = tilemeta.info_of(image)
    core = np.asarray(image)[info.core_in_tile] if info is not None else np.asarray(image)
    out = image.copy(deep=False)
    out.attrs = {**image.attrs, "tile_max": float(core.max())}
    return out


@pytest.fixture
def max_kind():
    register_join(_MaxStats)
    yield _MaxStats
    unregister_join(_MaxStats)


@pytest.mark.parametrize("executor", ["serial", "multithread"])
def test_a_plugin_result_kind_joins_tiles_through_a_pipeline(max_kind, executor):
    vol = np.random.default_rng(0).random((9, 13))
    inner = florin.Serial if executor == "serial" else (lambda *s: florin.Multithread(*s, workers=2))
    pipe = florin.Serial(florin.tile(shape=(4, 5)), inner(np.negative, _tile_max()))
    assert pipe(vol) == pytest.approx(float((-vol).max()))
    assert florin.Serial(florin.tile(shape=(4, 5)), florin.Serial(np.negative))(vol).values.tolist() == (-vol).tolist()


def test_without_the_registered_kind_the_same_tiles_join_as_arrays(max_kind):
    unregister_join(max_kind)
    vol = np.arange(20.0).reshape(4, 5)
    out = florin.Serial(florin.tile(shape=(2, 2)), florin.Serial(_tile_max()))(vol)
    assert isinstance(out, xr.DataArray) and out.values.tolist() == vol.tolist()


def test_tiles_of_different_kinds_do_not_join(max_kind):
    vol = florin.as_volume(np.arange(16.0).reshape(4, 4))
    parts = list(tile(shape=(2, 2))(vol))
    parts[1] = _tile_max(parts[1])
    with pytest.raises(PipelineError, match="different kinds"):
        join(parts, like=vol)


def test_a_missing_tile_is_an_error_not_garbage():
    vol = florin.as_volume(np.arange(16.0).reshape(4, 4))
    parts = list(tile(shape=(2, 2))(vol))[:-1]
    with pytest.raises(PipelineError, match="a tile is missing"):
        join(parts, like=vol)


@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_labelled_tiles_join_exactly_in_any_order(connectivity):
    mask = np.random.default_rng(connectivity).random((9, 11, 10)) < 0.35
    vol = florin.as_volume(mask)
    parts = [conncomp.label(t, connectivity=connectivity) for t in tile(shape=(4, 3, 5), stride=(3, 3, 4))(vol)]
    expected = conncomp.label(mask, connectivity=connectivity).values
    for seed in range(3):
        random.Random(seed).shuffle(parts)
        got = join(parts, like=vol)
        np.testing.assert_array_equal(got.values, expected)
        assert got.dtype == expected.dtype


def test_tiled_regionprops_aggregate_in_any_order():
    rng = np.random.default_rng(5)
    mask = rng.random((8, 12)) < 0.4
    intensity = rng.random((8, 12))
    vol = florin.as_volume(mask)
    parts = [conncomp.regionprops(conncomp.label(t), intensity=intensity) for t in tile(shape=(3, 5))(vol)]
    random.Random(1).shuffle(parts)
    got = join(parts, like=vol).to_dataframe()
    expected = conncomp.regionprops(conncomp.label(mask), intensity=intensity).to_dataframe()
    assert got.equals(expected)
