"""Writers copy chunked outputs in blocks of whole chunks (each compressed chunk written once)."""

import functools
import math

import h5py
import numpy as np
import pytest

from florin.io import read, write
from florin.io._blocks import chunk_blocks, copy_blocks


@pytest.mark.parametrize("seed", range(20))
def test_chunk_blocks_partition_the_volume_along_chunk_boundaries(seed):
    rng = np.random.default_rng(seed)
    ndim = int(rng.integers(1, 4))
    shape = tuple(int(n) for n in rng.integers(1, 40, ndim))
    chunks = tuple(int(rng.integers(1, n + 3)) for n in shape)
    max_bytes = int(rng.integers(1, 4 * math.prod(shape)))
    cover = np.zeros(shape, np.int64)
    for block in chunk_blocks(shape, chunks, 2, max_bytes=max_bytes):
        cover[block] += 1
        for s, c, n in zip(block, chunks, shape, strict=True):
            assert s.start % min(c, n) == 0 and (s.stop == n or s.stop % min(c, n) == 0)
    assert (cover == 1).all()


def test_hdf5_write_touches_every_chunk_once(tmp_path, monkeypatch):
    volume = np.random.default_rng(0).random((40, 30, 20)) > 0.5
    writes = []
    original = h5py.Dataset.__setitem__

    def recording(self, index, value):
        writes.append(index)
        return original(self, index, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", recording)
    monkeypatch.setattr("florin.io.formats.copy_blocks", functools.partial(copy_blocks, max_bytes=5000))
    path = tmp_path / "mask.h5"
    write(path, volume, chunks=(8, 16, 16))
    monkeypatch.undo()
    chunks_hit = [tuple((s.start // c, (s.stop - 1) // c) for s, c in zip(w, (8, 16, 16), strict=True)) for w in writes]
    assert len(writes) > 1
    seen = {}
    for hit in chunks_hit:
        for z in range(hit[0][0], hit[0][1] + 1):
            for y in range(hit[1][0], hit[1][1] + 1):
                for x in range(hit[2][0], hit[2][1] + 1):
                    seen[(z, y, x)] = seen.get((z, y, x), 0) + 1
    assert set(seen.values()) == {1}
    np.testing.assert_array_equal(read(path).values, volume)
