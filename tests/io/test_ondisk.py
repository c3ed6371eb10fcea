"""Out-of-core outputs: florin.io.create + join(out=...), and save() at the end of a tiled pipeline."""

import dataclasses
import multiprocessing
import os
import pickle
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import cloudpickle
import numpy as np
import pytest

import florin
import florin.morphology as morphology
import florin.thresholding as thresholding
from florin.errors import FormatError, OutputExistsError, ParameterError, PipelineError
from florin.io import create, read, write
from florin.io.lazy import is_lazy
from florin.io.ondisk_array import OnDiskArray
from florin.registry import get_registry

WRITABLE = ["seg.h5", "seg.zarr", "seg.ome.zarr", "seg.tif", "seg.npy"]


def _call(blob):
    func, item = cloudpickle.loads(blob)
    return cloudpickle.dumps(func(item))


class Processes(florin.Pipeline):
    """A minimal process executor (fresh pickles both ways, as Multiprocess/MPI do).

    Its pool uses forkserver: forking a process whose OpenMP runtime (numba's parallel kernels, run by the tests
    before) has started threads aborts the child.
    """

    name = "test-processes"

    def map(self, func, items):
        ctx = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(2, mp_context=ctx) as pool:
            blobs = [cloudpickle.dumps((func, item)) for item in items]
            return [cloudpickle.loads(b) for b in pool.map(_call, blobs)]


class Threads(florin.Pipeline):
    name = "test-threads"

    def map(self, func, items):
        with ThreadPoolExecutor(3) as pool:
            return list(pool.map(func, items))


def _executors():
    """Serial, the minimal executors above, and florin's own parallel executors when installed."""
    found = [florin.Serial, Threads, Processes]
    for name, options in (("Multithread", {"workers": 3}), ("Multiprocess", {"workers": 2})):
        try:
            cls = getattr(florin, name)
        except AttributeError:
            continue
        found.append(lambda *steps, _cls=cls, _opts=options: _cls(*steps, **_opts))
        found[-1].__name__ = name
    return found


EXECUTORS = _executors()


@pytest.fixture
def source(tmp_path, volume):
    vol = florin.as_volume((volume * 100).astype(np.uint16), spacing=(2.0, 0.5, 0.5), units="um",
                           attrs={"sample": "A1"})
    write(tmp_path / "in.h5", vol)
    return vol


def _steps():
    return [thresholding.ndnt(shape=(5, 9, 9), threshold=0.1, threads=1), morphology.binary_opening()]


def _expected(vol):
    return florin.Serial(*_steps())(vol).values


@pytest.mark.parametrize("name", WRITABLE)
@pytest.mark.parametrize("executor", EXECUTORS, ids=lambda e: e.__name__)
def test_save_at_the_end_of_a_tiled_pipeline_streams_tiles(tmp_path, source, name, executor):
    out = tmp_path / name
    pipe = florin.Serial(
        florin.load(tmp_path / "in.h5"),
        florin.tile(shape=(6, 16, 16)),
        executor(*_steps(), florin.save(out)),
    )
    result = pipe()
    assert is_lazy(result) and result.dims == ("z", "y", "x") and result.dtype == bool
    np.testing.assert_array_equal(result.values, _expected(source))
    back = read(out)
    np.testing.assert_array_equal(back.values, _expected(source))
    assert florin.get_spacing(back) == (2.0, 0.5, 0.5) and back.attrs["sample"] == "A1"
    assert back.attrs["units"] == "um"
    # Only the input and the output (and the NPY sidecar): no temporary or lock files left.
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted({"in.h5", name} | ({name + ".json"} if name.endswith(".npy") else set()))


def test_save_after_the_tiled_pipeline_still_works(tmp_path, source):
    pipe = florin.Serial(florin.load(tmp_path / "in.h5"), florin.tile(shape=(6, 16, 16)),
                         florin.Serial(*_steps()), florin.save(tmp_path / "seg.h5"))
    np.testing.assert_array_equal(pipe().values, _expected(source))
    np.testing.assert_array_equal(read(tmp_path / "seg.h5").values, _expected(source))


def test_create_and_join_into_it(tmp_path, source):
    vol = read(tmp_path / "in.h5")
    tiles = florin.tile(shape=(5, 16, 16), halo=(3, 5, 5))(vol)
    processed = [florin.Serial(*_steps())(t) for t in tiles]
    out = create(tmp_path / "j.zarr", like=vol, dtype=bool)
    assert isinstance(out, OnDiskArray) and out.shape == vol.shape and out.dtype == bool
    assert not os.path.exists(tmp_path / "j.zarr")  # atomic: only a hidden temporary so far
    with out:
        joined = florin.join(processed, out=out, like=vol)
        assert is_lazy(joined)
    assert out.committed and os.path.isdir(tmp_path / "j.zarr")
    np.testing.assert_array_equal(joined.values, _expected(source))
    np.testing.assert_array_equal(read(tmp_path / "j.zarr").values, _expected(source))
    assert florin.get_spacing(read(tmp_path / "j.zarr")) == (2.0, 0.5, 0.5)


def test_save_into_a_created_output(tmp_path, source):
    vol = read(tmp_path / "in.h5")
    out = create(tmp_path / "c.h5", like=vol, dtype=bool, chunks=(6, 16, 16), compression="lzf")
    pipe = florin.Serial(florin.tile(shape=(6, 16, 16)), Processes(*_steps(), florin.save(out)))
    result = pipe(vol)
    np.testing.assert_array_equal(result.values, _expected(source))
    assert out.committed  # the implicit join committed it
    np.testing.assert_array_equal(read(tmp_path / "c.h5").values, _expected(source))


def test_ondisk_array_is_a_small_picklable_reference(tmp_path):
    out = create(tmp_path / "p.h5", (64, 512, 512), np.uint16)
    blob = pickle.dumps(out)
    assert len(blob) < 2000
    copy = pickle.loads(blob)
    copy[3:5, 10:20, 30:40] = 7  # written through the copy ...
    assert int(out[4, 15, 35]) == 7  # ... visible through the original
    out.abort()
    assert os.listdir(tmp_path) == []


def test_failed_run_leaves_no_output_and_a_rerun_succeeds(tmp_path, source):
    calls = {"n": 0}

    @florin.florinate
    def flaky(image):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("node died")
        return image

    out = tmp_path / "seg.h5"
    pipe = florin.Serial(florin.load(tmp_path / "in.h5"), florin.tile(shape=(6, 16, 16)),
                         florin.Serial(*_steps(), flaky(), florin.save(out)))
    with pytest.raises(PipelineError, match="node died"):
        pipe()
    assert not out.exists()  # the partial output is under a hidden name only
    np.testing.assert_array_equal(pipe().values, _expected(source))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5", "seg.h5"]


def test_tile_saves_respect_overwrite_and_never_write_the_input(tmp_path, source):
    write(tmp_path / "seg.h5", np.zeros(3))
    pipe = florin.Serial(florin.load(tmp_path / "in.h5"), florin.tile(shape=(6, 16, 16)),
                         florin.Serial(*_steps(), florin.save(tmp_path / "seg.h5")))
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        pipe()
    pipe.steps[-1].steps[-1].overwrite = True
    np.testing.assert_array_equal(pipe().values, _expected(source))
    same = florin.Serial(florin.load(tmp_path / "in.h5"), florin.tile(shape=(6, 16, 16)),
                         florin.Serial(florin.save(tmp_path / "in.h5", overwrite=True)))
    with pytest.raises(OutputExistsError, match="input"):
        same()
    np.testing.assert_array_equal(read(tmp_path / "in.h5").values, source.values)


def test_steps_after_a_tile_save_are_an_error(tmp_path, source):
    pipe = florin.Serial(florin.load(tmp_path / "in.h5"), florin.tile(shape=(6, 16, 16)),
                         florin.Serial(florin.save(tmp_path / "seg.h5"), morphology.binary_opening()))
    with pytest.raises(PipelineError, match="make save the last step"):
        pipe()


def test_formats_that_cannot_write_regions_say_so(tmp_path, source):
    with pytest.raises(FormatError, match=r"netcdf.*region by region; use one of: hdf5, npy"):
        create(tmp_path / "x.nc", (2, 2), np.uint8)
    pipe = florin.Serial(florin.load(tmp_path / "in.h5"), florin.tile(shape=(6, 16, 16)),
                         florin.Serial(florin.save(tmp_path / "x.nc")))
    with pytest.raises(FormatError, match="after the tiled pipeline"):
        pipe()


def test_create_checks(tmp_path):
    with pytest.raises(ParameterError, match="shape= and dtype="):
        create(tmp_path / "a.h5")
    write(tmp_path / "a.h5", np.zeros(2))
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        create(tmp_path / "a.h5", (2,), np.uint8)
    with create(tmp_path / "a.h5", (2,), np.uint8, overwrite=True) as out:
        out[:] = [3, 4]
    assert read(tmp_path / "a.h5").values.tolist() == [3, 4]
    with pytest.raises(RuntimeError), create(tmp_path / "b.tif", (2, 2), np.uint8) as out:
        raise RuntimeError("interrupted")
    assert not (tmp_path / "b.tif").exists() and sorted(os.listdir(tmp_path)) == ["a.h5"]
    out = create(tmp_path / "nested" / "dir" / "c.npy", (3, 3), bool)
    out.fill(np.eye(3, dtype=bool))
    out.commit()
    assert read(tmp_path / "nested" / "dir" / "c.npy").values.tolist() == np.eye(3, dtype=bool).tolist()
    with pytest.raises(PipelineError, match="committed"):
        out[0, 0] = False


def test_create_and_tile_saves_refuse_a_dtype_the_format_cannot_store(tmp_path, monkeypatch):
    npy = get_registry().formats["npy"]
    narrow = dataclasses.replace(npy, name="u8-only", extensions=(".u8",), dtypes=(np.uint8, bool))
    monkeypatch.setitem(get_registry().formats, "u8-only", narrow)
    with pytest.raises(FormatError, match=r"as u8-only: it holds uint8, bool, not uint16$"):
        create(tmp_path / "v.u8", (2, 2), np.uint16)
    save = florin.Serial(florin.tile(shape=(2, 2)), florin.Serial(np.negative, florin.save(tmp_path / "v.u8")))
    with pytest.raises(FormatError, match=r"it holds uint8, bool, not float64$"):
        save(np.zeros((4, 4)))
    assert os.listdir(tmp_path) == []  # nothing created, no temporary folder or claim left
    with create(tmp_path / "v.u8", (2, 2), np.uint8) as out:
        out[:] = 7
    assert np.load(tmp_path / "v.u8").tolist() == [[7, 7], [7, 7]]


@pytest.mark.parametrize("name", ["v.h5", "v.nc"])
def test_save_given_untouched_tiles_writes_the_volume(tmp_path, source, name):
    """save right after tile(): tile by tile where the format allows it, else the volume at once."""
    vol = read(tmp_path / "in.h5")
    result = florin.Serial(florin.tile(shape=(5, 16, 16)), florin.save(tmp_path / name))(vol)
    np.testing.assert_array_equal(read(tmp_path / name).values, source.values)
    np.testing.assert_array_equal(result.values, source.values)


@pytest.mark.parametrize("name", WRITABLE)
@pytest.mark.parametrize("executor", ["Serial", "Multithread", "Multiprocess"])
def test_a_failed_tile_by_tile_save_leaves_no_temporary_files(tmp_path, monkeypatch, executor, name):
    from florin import tilemeta
    from florin.io import written_join

    def fail_late(tile):
        if tilemeta.info_of(tile).origin[0] >= 4:
            raise RuntimeError("boom")
        return tile

    kwargs = {"workers": 2} if executor in ("Multiprocess", "Multithread") else {}
    pipe = florin.Serial(florin.tile(shape=(2, 8)),
                         getattr(florin, executor)(fail_late, florin.save(tmp_path / name), **kwargs))
    with pytest.raises(Exception, match="boom"):
        pipe(np.arange(64.0).reshape(8, 8))
    assert list(tmp_path.iterdir()) == []  # no temporary folder, lock or claim

    def failing_finish(self):
        raise PipelineError("the join failed")

    monkeypatch.setattr(written_join.WrittenJoin, "finish", failing_finish)  # a failure after every tile was written
    pipe = florin.Serial(florin.tile(shape=(2, 8)),
                         getattr(florin, executor)(np.negative, florin.save(tmp_path / name), **kwargs))
    with pytest.raises(PipelineError, match="the join failed"):
        pipe(np.arange(64.0).reshape(8, 8))
    assert list(tmp_path.iterdir()) == []
