"""Every executor returns exactly Serial's result: the seed's parallel examples and more."""

import os
import pickle
import time

import numpy as np
import pytest
import xarray as xr
from executor_helpers import assert_executors_agree, assert_same, executor, in_process_executors

import florin
import florin.morphology as morphology
import florin.thresholding as thresholding
from florin.errors import FlorinDeprecationWarning, ParameterError, PipelineError
from florin.executors import MPI, Multiprocess, Multithread, shutdown_pools
from florin.tiling import TileRef, Tiles, is_lazy


@pytest.fixture(scope="module")
def sample():
    from florin.data import phantom

    return phantom((20, 96, 96), seed=3).image


@pytest.fixture
def sample_path(tmp_path, sample):
    path = tmp_path / "volume.tif"
    florin.io.write(path, florin.as_volume(sample, spacing=(1.0, 0.5, 0.5)))
    return str(path)


def seed_tiles(make, out):
    """The seed's parallel example, tile half (``thresshold`` corrected)."""
    return florin.Serial(
        florin.load(),
        florin.tile(shape=(10, 64, 64), stride=(10, 32, 32)),
        make(
            thresholding.ndnt(shape=(10, 64, 64), threshold=0.3),
            morphology.binary_opening(),
        ),
        florin.save(out, overwrite=True),
    )


def _objects_available():
    try:
        import florin.classification  # noqa: F401
        import florin.conncomp  # noqa: F401
        import florin.reconstruction  # noqa: F401
    except Exception as exc:  # being written by the objects engineer
        return f"objects modules not importable yet: {exc}"
    return None


def seed_full(make_tiles, make_objects, out_dir):
    """The seed's parallel / mixed-parallelism example, both halves."""
    import florin.conncomp as conncomp

    return florin.Serial(
        florin.load(),
        florin.tile(shape=(10, 64, 64), stride=(10, 32, 32)),
        make_tiles(
            thresholding.ndnt(shape=(10, 64, 64), threshold=0.3),
            morphology.binary_opening(),
        ),
        florin.save(os.path.join(out_dir, "segmented.tiff"), overwrite=True),
        conncomp.label(),
        morphology.remove_small_holes(max_size=19),
        conncomp.regionprops(),
        make_objects(
            florin.classify(
                florin.bounds_classifier("cell", area=(100, 300), depth=(10, 25), width=(50, 100), height=(50, 100)),
                florin.bounds_classifier("vasculature"),
            )
        ),
        florin.reconstruct(),
        florin.save(os.path.join(out_dir, "labeled.tiff"), overwrite=True),
    )


@pytest.mark.mpi
def test_seed_parallel_example_tiles_under_every_executor(tmp_path, sample_path, sample):
    out = str(tmp_path / "segmented.tiff")
    results = assert_executors_agree({"seed": (lambda make: seed_tiles(make, out), sample_path)}, tmp_path)
    whole = morphology.binary_opening(thresholding.ndnt(sample, shape=(10, 64, 64), threshold=0.3))
    np.testing.assert_array_equal(results["seed"]["serial"].values, whole.values)
    np.testing.assert_array_equal(florin.io.read(out).values, whole.values)


@pytest.mark.mpi
def test_seed_parallel_and_mixed_examples_with_objects(tmp_path, sample_path):
    why = _objects_available()
    if why:
        pytest.skip(why)
    out_dir = str(tmp_path)
    cases = {
        # The "Parallel Processing Pipelines" examples: one executor for both halves.
        "parallel": (lambda make: seed_full(make, make, out_dir), sample_path),
        # "Mixed Parallelism": the executor under test for tiles, threads for objects.
        "mixed": (lambda make: seed_full(make, executor("multithread"), out_dir), sample_path),
    }
    results = assert_executors_agree(cases, tmp_path)
    assert int(results["parallel"]["serial"].values.max()) >= 1  # objects were found and classified


@pytest.mark.mpi
def test_seed_mixed_parallelism_mpi_tiles_threads_objects_in_process(tmp_path, sample_path):
    """MPI(spawn) for tiles and Multithread for objects, as in the seed (tile half if objects are missing)."""
    pytest.importorskip("mpi4py")
    out = str(tmp_path / "segmented.tiff")
    mpi, threads = executor("mpi"), executor("multithread")
    expected = seed_tiles(florin.Serial, out)(sample_path)
    if _objects_available() is None:
        expected = seed_full(florin.Serial, florin.Serial, str(tmp_path))(sample_path)
        result = seed_full(mpi, threads, str(tmp_path))(sample_path)
    else:
        result = seed_tiles(mpi, out)(sample_path)
    assert_same(result, expected, "mixed MPI + Multithread")


def _varied(make):
    return florin.Serial(
        florin.tile(shape=(7, 13), stride=(5, 9)),
        make(thresholding.ndnt(shape=(5, 3), threshold=20, polarity="bright"), morphology.binary_closing(footprint=np.ones((3, 5)))),
        np.logical_not,
        florin.tile(shape=9, halo=3),
        make(morphology.binary_erosion()),
    )


@pytest.mark.mpi
def test_uneven_2d_tiles_two_nested_parallel_parts(tmp_path, rng):
    image = rng.integers(0, 255, size=(37, 51)).astype(np.uint8)
    assert_executors_agree({"varied": (_varied, image)}, tmp_path, mpi=("spmd-3",))


@pytest.mark.mpi
def test_lambda_and_closure_steps_travel_to_processes(tmp_path, volume):
    offset = 7.0
    shift = florin.florinate(lambda image, by=1.0: image + by + offset)
    cases = {"closure": (lambda make: florin.Serial(florin.tile(shape=(6, 20, 24)), make(shift(by=2.0), np.sqrt)), volume)}
    out = assert_executors_agree(cases, tmp_path, mpi=("spawn",))
    np.testing.assert_allclose(out["closure"]["serial"].values, np.sqrt(volume + 9.0))


def test_results_keep_dims_coords_and_attrs(volume):
    vol = florin.as_volume(volume, spacing=(2.0, 0.5, 0.5), attrs={"origin": "test"})
    pipe = lambda make: florin.Serial(florin.tile(shape=(6, 20, 20)), make(thresholding.ndnt(shape=(3, 7, 7))))  # noqa: E731
    expected = pipe(florin.Serial)(vol)
    for name, make in in_process_executors().items():
        result = pipe(make)(vol)
        xr.testing.assert_identical(result, expected)
        assert result.attrs.get("origin") == "test", name


@pytest.mark.parametrize(
    "cls, option",
    [(Multithread, "threads"), (Multiprocess, "processes"), (MPI, "max_workers"),
     (Multithread, "workers"), (Multiprocess, "workers"), (MPI, "workers")],
)
@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_invalid_worker_counts_name_the_parameter(cls, option, bad):
    with pytest.raises(ParameterError, match=option):
        cls(np.negative, **{option: bad})


@pytest.mark.parametrize(("cls", "old"), [(Multithread, "threads"), (Multiprocess, "processes"), (MPI, "max_workers")])
def test_workers_is_the_one_worker_count_and_old_names_are_deprecated_aliases(cls, old, recwarn):
    # Issue 16 item 5: workers= on every executor; the old name warns (once, pointing at the caller), means the
    # same, reads back under both names, is not written to pipeline files, and cannot be combined with workers=.
    from florin.pipeline_file import from_dict, to_dict

    new = cls(np.negative, workers=2)
    assert not [w for w in recwarn if issubclass(w.category, FlorinDeprecationWarning)]
    with pytest.warns(FlorinDeprecationWarning, match=rf"{cls.__name__}\({old}=\.\.\.\) is deprecated; use "
                      rf"{cls.__name__}\(workers=2\)") as record:
        aliased = cls(np.negative, **{old: 2})
    assert len(record) == 1 and record[0].filename == __file__
    assert issubclass(record[0].category, FutureWarning)
    assert aliased.workers == new.workers == getattr(aliased, old) == 2
    assert to_dict(florin.Serial(aliased)) == to_dict(florin.Serial(new))
    assert to_dict(florin.Serial(new))["steps"][0]["workers"] == 2
    assert from_dict(to_dict(florin.Serial(aliased))).steps[0].workers == 2
    with pytest.raises(ParameterError, match=rf"pass workers= only \({old}= is its deprecated name\)"):
        cls(np.negative, workers=2, **{old: 2})
    with pytest.raises(ParameterError, match="workers must be an integer >= 1"):
        cls(np.negative, workers=0)


def test_options_are_keyword_only_and_kept_as_attributes():
    with pytest.raises(PipelineError, match="not callable"):
        Multithread(np.negative, 2)
    assert Multithread(np.negative, workers=3).workers == 3
    assert Multiprocess(np.negative, workers=2).workers == 2
    assert MPI(np.negative, workers=4).workers == 4
    with pytest.warns(FlorinDeprecationWarning):
        assert Multithread(np.negative, threads=3).threads == 3
    with pytest.warns(FlorinDeprecationWarning):
        assert Multiprocess(np.negative, processes=2).processes == 2
    with pytest.warns(FlorinDeprecationWarning):
        assert MPI(np.negative, max_workers=4).max_workers == 4
    with pytest.raises(ParameterError, match="start_method"):
        Multiprocess(np.negative, start_method="teleport")


def test_executors_resolve_through_the_registry():
    from florin.registry import get_registry

    reg = get_registry()
    assert florin.Multithread is Multithread is reg.executor("multithread")
    assert florin.Multiprocess is Multiprocess is reg.executor("multiprocess")
    assert florin.MPI is MPI is reg.executor("mpi")


def test_single_worker_and_more_workers_than_items(volume):
    pipe = lambda make: florin.Serial(florin.tile(shape=(12, 40, 24)), make(thresholding.ndnt(shape=3)))  # noqa: E731
    expected = pipe(florin.Serial)(volume)
    for make in (lambda *s: Multithread(*s, workers=1), lambda *s: Multithread(*s, workers=16),
                 lambda *s: Multiprocess(*s, workers=1), lambda *s: Multiprocess(*s, workers=5)):
        assert_same(pipe(make)(volume), expected)


def test_nested_executors_inside_process_workers_run_in_place(volume):
    inner = Multiprocess(thresholding.ndnt(shape=3), workers=2)
    pipe = florin.Serial(florin.tile(shape=(6, 20, 24)), Multiprocess(inner, morphology.binary_dilation(), workers=2))
    expected = florin.Serial(florin.tile(shape=(6, 20, 24)), thresholding.ndnt(shape=3), morphology.binary_dilation())
    assert_same(pipe(volume), expected(volume))
    threads = florin.Serial(florin.tile(shape=(6, 20, 24)), Multithread(Multithread(np.negative, workers=2), workers=2))
    assert_same(threads(volume), florin.as_volume(-volume))


def test_a_pipeline_with_executors_pickles_and_runs(tmp_path, volume):
    import cloudpickle

    pipe = florin.Serial(florin.tile(shape=(6, 20, 24)), Multiprocess(thresholding.ndnt(shape=3), workers=2))
    pipe.dump(tmp_path / "p.pkl")
    again = florin.Pipeline.from_file(tmp_path / "p.pkl")
    assert_same(again(volume), pipe(volume))
    assert cloudpickle.loads(cloudpickle.dumps(MPI(np.negative, workers=2))).max_workers == 2


# -- moving data: workers get tiles, file-backed volumes travel as references -------------------
class RecordingMultiprocess(Multiprocess):
    """Records what the map ships and what comes back."""

    def map(self, func, items):
        items = list(items)
        self.shipped = [len(pickle.dumps(item, protocol=5)) for item in items]
        self.kinds = {type(item).__name__ for item in items}
        results = super().map(func, items)
        self.returned = [r.shape for r in results]
        return results


def test_in_memory_tiles_ship_only_their_voxels_and_come_back_as_cores(volume):
    ex = RecordingMultiprocess(thresholding.ndnt(shape=3), workers=2)
    florin.Serial(florin.tile(shape=(6, 20, 24), stride=(6, 10, 12), blocks="tiles"), ex)(volume)
    tiles = florin.tile(shape=(6, 20, 24), stride=(6, 10, 12), halo=(1, 1, 1))(volume)
    assert ex.kinds == {"DataArray"}
    assert max(ex.shipped) < volume.nbytes / 2
    assert ex.returned == [tuple(i.core_shape) for i in tiles.infos]


def test_large_in_memory_volume_travels_once_through_shared_memory(rng):
    import glob

    from florin.executors._shm import _give_back, _share_tiles

    image = rng.random((16, 128, 128))  # 2 MiB: above the shared-memory threshold
    tiles = florin.tile(shape=(8, 64, 64), halo=2)(image)
    block, refs = _share_tiles(tiles.items())
    try:
        assert max(len(pickle.dumps(r)) for r in refs) < 3000 < tiles[0].nbytes
        for i, ref in enumerate(refs):
            tile = Tiles.resolve(pickle.loads(pickle.dumps(ref)))
            xr.testing.assert_identical(tile, tiles[i])
            assert not tile.values.flags.writeable  # no tile can change its neighbours' halos
    finally:
        _give_back(block)
    shutdown_pools()
    before = set(glob.glob("/dev/shm/psm_*"))
    pipe = lambda make: florin.Serial(florin.tile(shape=(8, 64, 64)), make(thresholding.ndnt(shape=3), np.sqrt))  # noqa: E731
    assert_same(pipe(lambda *s: Multiprocess(*s, workers=2))(image), pipe(florin.Serial)(image))
    kept = set(glob.glob("/dev/shm/psm_*")) - before
    assert len(kept) == 1  # one block, kept for the next map
    smaller = image[:12].copy()  # fits the kept block: no new block, and no stale voxels of the last volume
    assert_same(pipe(lambda *s: Multiprocess(*s, workers=2))(smaller), pipe(florin.Serial)(smaller))
    assert set(glob.glob("/dev/shm/psm_*")) - before == kept
    shutdown_pools()
    assert set(glob.glob("/dev/shm/psm_*")) <= before  # released with the pools


def test_threads_sharing_a_process_pool_take_turns(rng):
    import threading

    image = rng.random((64, 64))
    pipe = florin.Serial(florin.tile(shape=(16, 16)), Multiprocess(np.sqrt, workers=2))
    outcomes = []

    def job():
        try:
            for _ in range(20):
                np.testing.assert_array_equal(pipe(image).values, np.sqrt(image))
            outcomes.append("ok")
        except Exception as exc:
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert outcomes == ["ok", "ok"]


def test_a_replaced_kept_block_is_unmapped_by_every_worker(rng):
    import glob

    from florin.executors import _processes, shutdown_pools

    shutdown_pools()
    def pipe(tile_shape):
        return florin.Serial(florin.tile(shape=tile_shape), Multiprocess(np.sqrt, workers=3))

    pipe((8, 64, 64))(rng.random((8, 64, 256)))  # 1 MiB in 4 tiles: the pool's kept block, mapped by all 3
    pool = _processes._process_pools[(3, None)]
    old = pool.block.name
    bigger = rng.random((8, 64, 512))  # 2 MiB in 2 tiles: a new block; one worker gets no task
    assert_same(pipe((8, 64, 256))(bigger), florin.Serial(florin.tile(shape=(8, 64, 256)), np.sqrt)(bigger))
    assert pool.block.name != old and not glob.glob(f"/dev/shm/{old}")

    def holders():
        return [w.proc.pid for w in pool.workers if old in open(f"/proc/{w.proc.pid}/maps").read()]

    deadline = time.monotonic() + 30
    while holders() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert holders() == []  # the deleted block's memory is freed
    shutdown_pools()


def test_volumes_above_the_kept_size_get_a_block_of_their_own(rng, monkeypatch):
    import glob

    from florin.executors import _shm, shutdown_pools

    shutdown_pools()
    monkeypatch.setattr(_shm, "_KEEP_MAX_BYTES", 1 << 20)
    image = rng.random((16, 128, 128))  # 2 MiB: shared, but above the (patched) kept size
    before = set(glob.glob("/dev/shm/psm_*"))
    pipe = lambda make: florin.Serial(florin.tile(shape=(8, 64, 64)), make(thresholding.ndnt(shape=3)))  # noqa: E731
    assert_same(pipe(lambda *s: Multiprocess(*s, workers=2))(image), pipe(florin.Serial)(image))
    assert set(glob.glob("/dev/shm/psm_*")) <= before  # unlinked right after the map


def test_volumes_larger_than_free_shared_memory_travel_as_pickled_tiles(rng, monkeypatch):
    from florin.executors import _shm, shutdown_pools

    shutdown_pools()
    blocks = []

    def no_block(nbytes):
        blocks.append(nbytes)
        raise RuntimeError("no shared memory in this test")

    monkeypatch.setattr(_shm, "_new_block", no_block)
    pipe = lambda make: florin.Serial(florin.tile(shape=(8, 64, 64)), make(thresholding.ndnt(shape=3)))  # noqa: E731
    image = rng.random((16, 128, 128))  # 2 MiB
    monkeypatch.setattr(_shm, "_shared_memory_free", lambda: 1 << 20)  # e.g. Docker's small /dev/shm
    assert_same(pipe(lambda *s: Multiprocess(*s, workers=2))(image), pipe(florin.Serial)(image))
    assert blocks == []  # the tiles were pickled instead
    monkeypatch.setattr(_shm, "_shared_memory_free", lambda: 1 << 30)
    with pytest.raises(RuntimeError, match="no shared memory"):  # with room, the volume goes to shared memory
        pipe(lambda *s: Multiprocess(*s, workers=2))(image)
    assert blocks == [image.nbytes]


def test_boolean_results_travel_packed_and_arrive_identical(rng):
    from florin.executors._wire import _from_wire, _PackedMask, _to_wire

    mask = florin.as_volume(rng.random((5, 67, 301)) > 0.5, attrs={"units": "px"})  # size not a multiple of 8
    wire = _to_wire(mask)
    assert isinstance(wire, _PackedMask)
    assert len(pickle.dumps(wire)) < mask.size / 7
    xr.testing.assert_identical(_from_wire(pickle.loads(pickle.dumps(wire))), mask)
    small, floats = mask[:1, :2, :3], mask.astype(float)
    assert _to_wire(small) is small and _to_wire(floats) is floats  # other results travel as they are


def test_memory_mapped_volume_ships_tile_references(tmp_path, volume):
    path = tmp_path / "v.npy"
    np.save(path, volume)
    mapped = florin.as_volume(np.load(path, mmap_mode="r"))
    assert is_lazy(mapped) and not is_lazy(florin.as_volume(volume))
    tiles = florin.tile(shape=(6, 20, 24))(mapped)
    refs = tiles.items()
    assert all(isinstance(r, TileRef) for r in refs)
    # A reference pickles to a file name and offsets, not voxels; in the worker it reads its slice.
    assert max(len(pickle.dumps(r)) for r in refs) < 2000 < tiles[0].nbytes
    for i, ref in enumerate(refs):
        np.testing.assert_array_equal(Tiles.resolve(pickle.loads(pickle.dumps(ref))).values, tiles[i].values)
    ex = RecordingMultiprocess(thresholding.ndnt(shape=3), morphology.binary_opening(), workers=2)
    out = florin.Serial(florin.tile(shape=(6, 20, 24), stride=(6, 10, 12)), ex)(mapped)
    assert ex.kinds == {"TileRef"} and max(ex.shipped) < 2000
    expected = morphology.binary_opening(thresholding.ndnt(volume, shape=3))
    np.testing.assert_array_equal(out.values, expected.values)


class _LoggingBackend(xr.backends.BackendArray):
    """A file-backed lazy array that logs which process reads which region."""

    def __init__(self, path, log):
        self.path, self.log = str(path), str(log)
        arr = np.load(self.path, mmap_mode="r")
        self.shape, self.dtype = arr.shape, arr.dtype

    def __getitem__(self, key):
        return xr.core.indexing.explicit_indexing_adapter(
            key, self.shape, xr.core.indexing.IndexingSupport.BASIC, self._raw
        )

    def _raw(self, key):
        region = [(s.start, s.stop) if isinstance(s, slice) else (int(s), int(s) + 1) for s in key]
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()} {region}\n")
        return np.asarray(np.load(self.path, mmap_mode="r")[key])


def test_lazy_backend_volume_each_worker_reads_only_its_tile(tmp_path, volume):
    path, log = tmp_path / "v.npy", tmp_path / "reads.log"
    np.save(path, volume)
    lazy = xr.DataArray(xr.core.indexing.LazilyIndexedArray(_LoggingBackend(path, log)), dims=("z", "y", "x"))
    assert is_lazy(lazy)
    shape, stride = (6, 20, 24), (6, 10, 12)
    pipe = florin.Serial(florin.tile(shape=shape, stride=stride, blocks="tiles"), Multiprocess(thresholding.ndnt(shape=3), workers=2))
    out = pipe(lazy)
    np.testing.assert_array_equal(out.values, thresholding.ndnt(volume, shape=3).values)
    reads = [line.split(" ", 1) for line in log.read_text().splitlines()]
    assert reads and all(int(pid) != os.getpid() for pid, _ in reads), "the parent read voxels"
    infos = florin.tile(shape=shape, stride=stride, halo=1)(florin.as_volume(volume)).infos
    allowed = {str([(s.start, s.stop) for s in i.read_slices]) for i in infos}
    assert {region.strip() for _, region in reads} <= allowed
    assert len(reads) == len(infos)  # every tile read once, nothing else
