"""blockwise.save streams a lazily readable volume into its final file, atomically, in every region-writable format."""

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import h5py
import numpy as np
import pytest

import florin
import florin.io
from florin import blockwise
from florin.errors import FormatError, OutputExistsError

FORMATS = ["out.h5", "out.zarr", "out.ome.zarr", "out.tif", "out.npy"]


def _volume(tmp_path, dtype=np.uint16):
    data = np.random.default_rng(0).integers(0, 60000, (6, 7, 9)).astype(dtype)
    florin.io.write(tmp_path / "in.h5", florin.as_volume(data, spacing=(2.0, 0.5, 0.5), units="um"))
    return data, florin.io.read(tmp_path / "in.h5")  # lazy


def _leftovers(directory, keep):
    keep = set(keep) | {f"{k}.json" for k in keep if k.endswith(".npy")}  # NPY keeps florin's metadata beside it
    return sorted(p for p in os.listdir(directory) if p not in keep)


@pytest.mark.parametrize("name", FORMATS)
def test_streamed_save_equals_whole_write(tmp_path, name):
    data, lazy = _volume(tmp_path)
    got = blockwise.save(lazy, tmp_path / name, blocks=(4, 3, 5))
    florin.io.write(tmp_path / ("whole-" + name), lazy)
    whole = florin.io.read(tmp_path / ("whole-" + name))
    back = florin.io.read(tmp_path / name)
    np.testing.assert_array_equal(back.values, data)
    np.testing.assert_array_equal(got.values, data)
    assert back.dtype == whole.dtype
    assert back.dims == whole.dims
    assert florin.get_spacing(back) == florin.get_spacing(whole) == (2.0, 0.5, 0.5)
    assert _leftovers(tmp_path, {"in.h5", name, "whole-" + name}) == []


@pytest.mark.parametrize("name", ["out.h5", "out.zarr", "out.npy", "out.tif"])
def test_workers_write_their_blocks_under_a_process_pool(tmp_path, name):
    data = np.random.default_rng(1).random((8, 9, 10)).astype(np.float32)
    np.save(tmp_path / "in.npy", data)
    mm = np.load(tmp_path / "in.npy", mmap_mode="r")
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver")) as pool:
        blockwise.save(mm, tmp_path / name, blocks=(3, 4, 10), map=pool.map)
    np.testing.assert_array_equal(florin.io.read(tmp_path / name).values, data)
    assert _leftovers(tmp_path, {"in.npy", name}) == []


class _FailingVolume:
    """Reads fine except one block."""

    def __init__(self, data):
        self.data, self.shape, self.dtype = data, data.shape, data.dtype

    def __getitem__(self, block):
        if block[0].start >= 4:
            raise RuntimeError("disk on fire")
        return self.data[block]


@pytest.mark.parametrize("name", FORMATS)
def test_a_failing_block_leaves_nothing_under_the_final_name(tmp_path, name):
    vol = _FailingVolume(np.ones((6, 5, 4), np.uint8))
    with pytest.raises(RuntimeError, match="disk on fire"):
        blockwise.save(vol, tmp_path / name, blocks=(2, 5, 4))
    assert os.listdir(tmp_path) == []


def test_existing_output_own_input_and_non_region_formats(tmp_path):
    data, lazy = _volume(tmp_path)
    (tmp_path / "taken.npy").write_bytes(b"x")
    with pytest.raises(OutputExistsError, match="exists"):
        blockwise.save(lazy, tmp_path / "taken.npy", blocks=(3, 3, 3))
    blockwise.save(lazy, tmp_path / "taken.npy", blocks=(3, 3, 3), overwrite=True)
    np.testing.assert_array_equal(np.load(tmp_path / "taken.npy"), data)
    with pytest.raises(OutputExistsError, match="being read|input"):
        blockwise.save(lazy, tmp_path / "in.h5", blocks=(3, 3, 3), overwrite=True)
    with h5py.File(tmp_path / "in.h5", "r", locking=False) as f:
        ds = f[next(iter(f))]
        with pytest.raises(OutputExistsError, match="being read"):
            blockwise.save(ds, tmp_path / "in.h5", blocks=(3, 3, 3), overwrite=True)
    with pytest.raises(FormatError, match="region by region"):
        blockwise.save(lazy, tmp_path / "out.nc", blocks=(3, 3, 3))
    assert _leftovers(tmp_path, {"in.h5", "taken.npy"}) == []


def test_into_an_output_from_create(tmp_path):
    data = np.arange(60, dtype=np.int32).reshape(3, 4, 5)
    out = florin.io.create(tmp_path / "o.zarr", data.shape, data.dtype)
    vol = blockwise.save(data, out, blocks=(2, 2, 2))
    assert out.committed
    np.testing.assert_array_equal(vol.values, data)
