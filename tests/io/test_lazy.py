"""Lazy volumes: reading a file reads no voxels, slicing reads only the slice, pickles are references."""

import os
import pickle
import subprocess
import sys
import textwrap

import cloudpickle
import h5py
import numpy as np
import pytest

import florin
import florin.thresholding as thresholding
from florin.io import lazy, read, write
from florin.io.lazy import FileArray, is_lazy, sources

FORMATS = ["v.h5", "v.nc", "v.zarr", "v.ome.zarr", "v.tif", "v.npy", "stack/"]


@pytest.fixture
def reads(monkeypatch):
    """Bytes returned by every lazy read (all formats read through FileArray._read)."""
    log = []
    original = FileArray._read

    def counting(self, index):
        out = original(self, index)
        log.append(np.asarray(out).nbytes)
        return out

    monkeypatch.setattr(FileArray, "_read", counting)
    return log


def _path(tmp_path, name):
    return os.path.join(tmp_path, name)


@pytest.fixture
def big(rng):
    return florin.as_volume((rng.random((16, 64, 96)) * 60000).astype(np.uint16), spacing=(3.0, 1.0, 1.0))


@pytest.mark.parametrize("name", FORMATS + ["c.tif"])
def test_loading_reads_nothing_and_slicing_reads_the_slice(tmp_path, big, reads, name):
    options = {"compression": "zlib"} if name == "c.tif" else {}
    write(_path(tmp_path, name), big, **options)
    vol = read(_path(tmp_path, name))
    assert reads == [] and is_lazy(vol)
    part = vol[4:6, 10:30]
    assert reads == [] and is_lazy(part)
    np.testing.assert_array_equal(part.values, big.values[4:6, 10:30])
    assert sum(reads) == 2 * 20 * 96 * 2  # exactly the slice
    reads.clear()
    np.testing.assert_array_equal(vol[7, 5, ::10].values, big.values[7, 5, ::10])
    assert sum(reads) <= 96 * 2


@pytest.mark.parametrize("name", FORMATS)
def test_lazy_volume_pickles_as_a_file_reference(tmp_path, rng, name):
    data = (rng.random((32, 256, 256)) * 255).astype(np.uint8)  # 2 MiB
    write(_path(tmp_path, name), florin.as_volume(data, spacing=(2.0, 0.5, 0.5)))
    vol = read(_path(tmp_path, name))
    tile = vol[8:16, 100:200, 50:150]
    for dumps in (pickle.dumps, cloudpickle.dumps):
        blob = dumps(tile)
        assert len(blob) < 20_000, len(blob)
        back = pickle.loads(blob)
        assert is_lazy(back)
        np.testing.assert_array_equal(back.values, data[8:16, 100:200, 50:150])
        assert back.attrs == tile.attrs and florin.get_spacing(back) == (2.0, 0.5, 0.5)
    assert sources(tile) == [os.fspath(_path(tmp_path, name)).rstrip("/")]


def test_worker_process_reads_only_its_tile(tmp_path, rng):
    """A tile shipped to another interpreter is a reference; the worker reads only its slice."""
    data = (rng.random((16, 128, 128)) * 1000).astype(np.uint16)
    write(tmp_path / "v.h5", data)
    tile = read(tmp_path / "v.h5")[4:8, 32:64]
    blob = pickle.dumps(tile)
    assert len(blob) < 10_000
    script = textwrap.dedent(
        """
        import pickle, sys
        import numpy as np
        from florin.io.lazy import FileArray
        seen = []
        original = FileArray._read
        FileArray._read = lambda self, index: seen.append(index) or original(self, index)
        tile = pickle.loads(sys.stdin.buffer.read())
        values = tile.values
        print(int(values.sum()), values.nbytes, len(seen))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], input=blob, capture_output=True, check=True)
    total, nbytes, calls = map(int, out.stdout.split())
    assert total == int(data[4:8, 32:64].sum()) and nbytes == 4 * 32 * 128 * 2 and calls == 1


def test_hdf5_bytes_read_from_disk(tmp_path, rng, monkeypatch):
    """Count the bytes h5py pulls from the file (not just what it returns) for one tile."""
    import florin.io.hdf5 as hdf5

    data = (rng.random((64, 256, 256)) * 60000).astype(np.uint16)  # 8 MiB
    write(tmp_path / "v.h5", data, chunks=(8, 64, 64), compression=None)
    counted = {"bytes": 0}

    class CountingFile:
        def __init__(self, path):
            self.f = open(path, "rb")

        def read(self, n=-1):
            out = self.f.read(n)
            counted["bytes"] += len(out)
            return out

        def readinto(self, buf):
            n = self.f.readinto(buf)
            counted["bytes"] += n
            return n

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(hdf5, "_open_read", lambda path: h5py.File(CountingFile(path), "r"))
    lazy.close_handles()
    vol = read(tmp_path / "v.h5")
    counted["bytes"] = 0
    tile = vol[8:16, 64:128, 64:128].values  # exactly one chunk
    np.testing.assert_array_equal(tile, data[8:16, 64:128, 64:128])
    assert counted["bytes"] < 4 * tile.nbytes, counted  # one 64 KiB chunk plus B-tree nodes, not 8 MiB
    lazy.close_handles()


@pytest.mark.parametrize("name", ["v.h5", "v.npy", "v.tif", "v.zarr"])
def test_tiled_run_reads_each_tile_once(tmp_path, big, reads, name):
    write(_path(tmp_path, name), big)
    out = _path(tmp_path, "seg.h5")
    pipe = florin.Serial(
        florin.load(_path(tmp_path, name)),
        florin.tile(shape=(8, 32, 32), blocks="tiles"),  # the user's tiles: each read once
        florin.Serial(thresholding.ndnt(shape=(3, 9, 9), threshold=0.2), florin.save(out)),
    )
    result = pipe()
    during = list(reads)
    whole = thresholding.ndnt(big, shape=(3, 9, 9), threshold=0.2).values
    np.testing.assert_array_equal(result.values, whole)
    tiles = florin.tile(shape=(8, 32, 32), halo=(1, 4, 4))(big)
    tile_bytes = sorted(int(np.prod(t.shape)) * 2 for t in tiles)
    assert sorted(during) == tile_bytes  # each tile (with its halo) read once, nothing else


def test_numpy_conversions_read_everything(tmp_path, big):
    write(tmp_path / "v.h5", big)
    vol = read(tmp_path / "v.h5")
    np.testing.assert_array_equal(np.asarray(vol), big.values)
    assert float(vol.mean()) == pytest.approx(float(big.values.mean()))
    np.testing.assert_array_equal((vol[0] + 1).values, big.values[0] + 1)


def test_memmap_reads_do_not_stay_resident(tmp_path, rng):
    """NPY/TIFF are mapped per read only: reading tile after tile does not grow the mapped set."""
    data = np.zeros((64, 512, 512), np.uint16)  # 32 MiB
    write(tmp_path / "v.npy", data)
    vol = read(tmp_path / "v.npy")
    for z in range(0, 64, 8):
        np.asarray(vol[z : z + 8])
    with open(f"/proc/{os.getpid()}/maps") as f:
        assert str(tmp_path / "v.npy") not in f.read()


def test_lazy_reads_follow_a_replaced_file(tmp_path):
    write(tmp_path / "v.h5", np.zeros((2, 3, 4), np.uint8))
    assert int(read(tmp_path / "v.h5").values.sum()) == 0
    write(tmp_path / "v.h5", np.ones((2, 3, 4), np.uint8), overwrite=True)
    assert int(read(tmp_path / "v.h5").values.sum()) == 24


_RSS_SCRIPT = """
import os, sys, threading, time
import numpy as np, psutil
import florin
import florin.thresholding as thresholding
from florin.io import read

src, out = sys.argv[1], sys.argv[2]
# Compile the kernels first, so that their memory is not counted.
thresholding.ndnt(np.zeros((8, 16, 16), np.uint16), shape=(3, 9, 9), threshold=0.2)
proc = psutil.Process()
base = proc.memory_info().rss
peak = [base]
done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.002)
threading.Thread(target=sample, daemon=True).start()
pipe = florin.Serial(
    florin.load(src),
    florin.tile(shape=(16, 256, 256), blocks="tiles"),  # the user's 2 MiB tiles bound the memory
    florin.Serial(thresholding.ndnt(shape=(3, 9, 9), threshold=0.2), florin.save(out)),
)
result = pipe()
done.set()
assert result.shape == read(src).shape
print((peak[0] - base) // 2**20)
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", ["v.h5", "v.npy"])
def test_tiled_run_memory_stays_bounded(tmp_path, name):
    """A 192 MiB file goes through a tiled run with a few MiB of tiles: measured peak RSS growth stays small."""
    from florin.io import create

    shape = (96, 1024, 1024)  # uint16: 192 MiB
    options = {"compression": None} if name.endswith(".h5") else {}
    with create(tmp_path / name, shape, np.uint16, **options) as src:
        rng = np.random.default_rng(0)
        for z in range(0, shape[0], 8):
            src[z : z + 8] = (rng.random((8, *shape[1:])) * 1000).astype(np.uint16)
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(tmp_path / name), str(tmp_path / "seg.h5")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    growth = int(out.stdout.split()[-1])
    assert growth < 96, f"peak RSS grew by {growth} MiB for a 192 MiB input (tiles of 2 MiB)"
    seg = read(tmp_path / "seg.h5")
    assert seg.shape == shape and seg.dtype == bool
