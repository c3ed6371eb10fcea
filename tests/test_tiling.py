import numpy as np
import pytest

import florin
from florin.errors import TilingError
from florin.tiling import tile_infos


def test_every_voxel_owned_by_exactly_one_tile():
    owner = np.zeros((7, 23, 30), int)
    for info in tile_infos(owner.shape, shape=(4, 10, 12), stride=(3, 7, 8), halo=(1, 2, 3)):
        owner[info.core_slices] += 1
        for sl, n in zip(info.read_slices, owner.shape, strict=True):
            assert 0 <= sl.start and sl.stop <= n
    assert (owner == 1).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"shape": (4, 4), "stride": (5, 4)}, "stride"),
        ({"shape": (0, 4)}, "shape"),
        ({"shape": (4, 4, 4)}, "entries"),
        ({"shape": (4, 4), "halo": -1}, "halo"),
    ],
)
def test_invalid_geometry_raises(kwargs, match):
    with pytest.raises(TilingError, match=match):
        tile_infos((10, 10), **kwargs)


def test_tile_step_validates_early():
    with pytest.raises(TilingError):
        florin.tile(shape=(4, 0))


def test_join_roundtrip_with_context_and_halo(rng):
    data = rng.random((9, 17))
    tiles = florin.tile(shape=(4, 6), stride=(3, 5), halo=2)(data)
    assert florin.tilemeta.info_of(tiles[0]).full_shape == (9, 17)
    np.testing.assert_array_equal(florin.join(list(tiles), like=tiles.volume).values, data)
