"""The planner chooses the blocks of a tiled run (issue 15 item 7).

When every step of the tiled part declares a finite halo the tiled result is
exact, so florin replaces the user's tiles by its own blocks: the result must
equal the whole-volume run and the run on the user's tiles voxel for voxel
under every executor, the blocks must partition the volume within the memory
budget, and a step that declares no halo keeps the user's tiles.
"""

import math

import numpy as np
import pytest
from executor_helpers import assert_executors_agree, executor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import florin
import florin.morphology as morphology
import florin.thresholding as thresholding
from florin import planner, tilemeta
from florin.conncomp import label
from florin.errors import ParameterError
from florin.tiling import tile_infos

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Recorder:
    """A step that declares ``halo`` (or none) and records the tile geometry it runs on (in-process executors)."""

    def __init__(self, halo=0):
        self.infos = []
        if halo is not None:
            self.halo = halo

    def __call__(self, image):
        self.infos.append(tilemeta.info_of(image))
        return image


def _cores_partition(infos, shape):
    owner = np.zeros(shape, np.int64)
    for info in infos:
        owner[info.core_slices] += 1
    return bool((owner == 1).all())


@st.composite
def case(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 20)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, n)) for n in shape)
    tile = tuple(s + draw(st.integers(0, 4)) for s in stride)
    nshape = tuple(draw(st.integers(1, 7)) for _ in shape)
    image = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(0, 60, shape).astype(np.uint16)
    memory = draw(st.sampled_from([None, 2048, 1 << 16]))
    return image, tile, stride, nshape, memory


@SETTINGS
@given(case(), st.sampled_from(["serial", "multithread"]))
def test_regrouped_run_equals_whole_volume_and_user_tiles(c, name):
    image, tile, stride, nshape, memory = c
    make = florin.Serial if name == "serial" else executor(name)
    steps = lambda: [thresholding.ndnt(shape=nshape, threshold=0.2), morphology.binary_opening()]  # noqa: E731
    whole = florin.Serial(*steps())(image)
    rec = Recorder()
    regrouped = florin.Serial(florin.tile(shape=tile, stride=stride), make(*steps(), rec))(image, memory=memory)
    users = florin.Serial(florin.tile(shape=tile, stride=stride, blocks="tiles"), make(*steps()))(image, memory=memory)
    np.testing.assert_array_equal(regrouped.values, whole.values)
    np.testing.assert_array_equal(users.values, whole.values)
    assert _cores_partition(rec.infos, image.shape)
    # Each block's context is the steps' halo only (the user's stride overlap is not read), clipped at the edges.
    halo = tuple(h for h in np.add(thresholding.ndnt(shape=nshape).halo(image.shape),
                                  morphology.binary_opening().halo(image.shape)))
    for info in rec.infos:
        for o, c_, b, a, h, n in zip(info.origin, info.core_shape, info.before, info.after, halo, image.shape,
                                     strict=True):
            assert b == min(o, h) and a == min(n - o - c_, h)


def test_regrouping_merges_small_tiles_and_splits_for_workers():
    image = np.random.default_rng(1).integers(0, 100, (16, 64, 64)).astype(np.uint16)
    steps = lambda rec: [thresholding.ndnt(shape=(4, 16, 16)), morphology.binary_opening(), rec]  # noqa: E731
    serial, threads = Recorder(), Recorder()
    florin.Serial(florin.tile(shape=(4, 16, 16), stride=(4, 8, 8)), *steps(serial))(image)
    florin.Serial(florin.tile(shape=(4, 16, 16), stride=(4, 8, 8)), florin.Multithread(*steps(threads), workers=2))(image)
    user = tile_infos(image.shape, (4, 16, 16), (4, 8, 8))
    assert len(user) == 256
    assert [i.core_shape for i in serial.infos] == [image.shape]  # one block: no halo at all
    assert planner.BLOCKS_PER_WORKER * 2 <= len(threads.infos) < len(user)
    assert _cores_partition(threads.infos, image.shape)


def test_a_step_without_a_declared_halo_keeps_the_users_tiles():
    image = np.random.default_rng(2).integers(0, 100, (6, 30, 30)).astype(np.uint16)

    @florin.florinate
    def above_tile_mean(image):  # per-tile: the result depends on the tile
        return image > image.mean()

    rec = Recorder(halo=None)
    tiled = florin.Serial(florin.tile(shape=(6, 16, 16), stride=(6, 10, 10)),
                          florin.Serial(thresholding.ndnt(shape=(3, 5, 5)), rec, above_tile_mean()))(image)
    user = tile_infos(image.shape, (6, 16, 16), (6, 10, 10), halo=thresholding.ndnt(shape=(3, 5, 5)).halo(image.shape))
    assert rec.infos == user
    expected = np.zeros(image.shape, bool)  # today's per-tile behaviour, computed by hand
    ndnt = thresholding.ndnt(image, shape=(3, 5, 5)).values
    for info in user:
        part = ndnt[info.read_slices]
        expected[info.core_slices] = (part > part.mean())[info.core_in_tile]
    np.testing.assert_array_equal(tiled.values, expected)
    # The same in a flat pipeline, and for a plain function.
    flat = Recorder(halo=None)
    florin.Serial(florin.tile(shape=(6, 16, 16), stride=(6, 10, 10)), thresholding.ndnt(shape=(3, 5, 5)), flat)(image)
    assert flat.infos == user


@pytest.mark.parametrize("tile_options", [{"blocks": "tiles"}, {"halo": 3}])
def test_blocks_tiles_and_an_explicit_halo_keep_the_users_tiles(tile_options):
    image = np.random.default_rng(3).random((20, 20))
    rec = Recorder()
    florin.Serial(florin.tile(shape=(8, 8), stride=(4, 4), **tile_options), rec)(image)
    halo = tile_options.get("halo", 0)
    assert rec.infos == tile_infos(image.shape, (8, 8), (4, 4), halo=halo)


def test_labels_merged_at_the_join_are_not_regrouped():
    assert not planner.exact_under_tiling([thresholding.ndnt(), label()], (8, 8))
    assert not planner.exact_under_tiling([florin.Serial(morphology.binary_opening(), label())], (8, 8))
    assert not planner.exact_under_tiling([], (8, 8))
    assert not planner.exact_under_tiling([morphology.remove_small_objects()], (8, 8))
    assert planner.exact_under_tiling([florin.Serial(thresholding.ndnt(), morphology.binary_opening())], (8, 8))
    mask = np.random.default_rng(4).random((24, 24)) < 0.5
    tiled = florin.Serial(florin.tile(shape=(6, 6), stride=(4, 4)), florin.Serial(morphology.binary_opening(), label()))
    np.testing.assert_array_equal(tiled(mask).values > 0, morphology.binary_opening(mask).values)


def test_a_save_inside_the_regrouped_part_writes_the_whole_output(tmp_path):
    image = np.random.default_rng(5).integers(0, 100, (8, 40, 40)).astype(np.uint16)
    whole = morphology.binary_opening(thresholding.ndnt(image, shape=(3, 9, 9))).values
    rec = Recorder()
    for make in (florin.Serial, executor("multithread"), executor("multiprocess")):
        path = tmp_path / f"seg-{make.__name__ if hasattr(make, '__name__') else id(make)}.h5"
        steps = [thresholding.ndnt(shape=(3, 9, 9)), morphology.binary_opening()]
        if make is florin.Serial:
            steps.append(rec)
        out = florin.Serial(florin.tile(shape=(4, 10, 10), stride=(4, 5, 5)), make(*steps, florin.save(path)))(image)
        np.testing.assert_array_equal(np.asarray(out.values), whole)
        np.testing.assert_array_equal(florin.io.read(path).values, whole)
    assert len(rec.infos) == 1  # Serial: one block instead of 128 tiles


def test_blocks_respect_the_memory_budget():
    image = np.random.default_rng(6).integers(0, 100, (32, 96, 96)).astype(np.uint16)
    rec = Recorder()
    memory = 1 << 20
    out = florin.Serial(florin.tile(shape=(2, 8, 8)), florin.Multithread(thresholding.ndnt(shape=(3, 5, 5)), rec,
                                                                         workers=2))(image, memory=memory)
    np.testing.assert_array_equal(out.values, thresholding.ndnt(image, shape=(3, 5, 5)).values)
    in_flight = planner.IN_FLIGHT_PER_WORKER * 2
    limit = memory * planner.BLOCK_FRACTION // (in_flight * planner.BYTES_PER_VOXEL)
    assert max(math.prod(i.tile_shape) for i in rec.infos) <= limit
    assert len(rec.infos) < len(tile_infos(image.shape, (2, 8, 8)))  # still merged: 2x8x8 tiles are far smaller


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_block_shape_meets_its_limits(data):
    ndim = data.draw(st.integers(1, 4))
    side = {1: 300, 2: 60, 3: 16, 4: 8}[ndim]  # at most ~4096 voxels past one axis: the partition check is dense
    shape = tuple(data.draw(st.integers(1, side)) for _ in range(ndim))
    halo = tuple(data.draw(st.integers(0, 40)) for _ in range(ndim))
    chunks = data.draw(st.one_of(st.none(), st.tuples(*[st.integers(1, 64) for _ in range(ndim)])))
    min_blocks = data.draw(st.integers(1, 16))
    max_voxels = data.draw(st.integers(1, 2 * math.prod(shape) + 1))
    core = planner.block_shape(shape, halo, max_voxels=max_voxels, min_blocks=min_blocks, chunks=chunks)
    infos = tile_infos(shape, core, halo=halo)
    assert _cores_partition(infos, shape)
    finest = tuple(min(n, c) for n, c in zip(shape, chunks or (1,) * ndim, strict=True))
    if len(infos) < min_blocks:  # only when no axis can be cut finer
        assert core == finest
    if max(math.prod(i.tile_shape) for i in infos) > max_voxels:  # only when no finer cut makes a block smaller
        halo = tuple(min(h, n) for h, n in zip(halo, shape, strict=True))
        assert all(min(n, f + 2 * h) == min(n, c + 2 * h) for n, f, c, h in zip(shape, finest, core, halo, strict=True))
    if chunks is not None:
        assert all(c == n or c % k == 0 for c, n, k in zip(core, shape, chunks, strict=True))


def test_block_shape_prefers_few_halo_voxels():
    # The seed's geometry: one block in one process; 4 blocks of 2 x 2 for two workers (halo read on 2 axes only).
    assert planner.block_shape((64, 512, 512), (7, 34, 34), max_voxels=2**40) == (64, 512, 512)
    assert planner.block_shape((64, 512, 512), (7, 34, 34), max_voxels=2**40, min_blocks=4) == (64, 256, 256)
    assert planner.block_shape((64, 512, 512), (7, 34, 34), max_voxels=2**40, min_blocks=4,
                               chunks=(16, 200, 200)) == (64, 400, 400)


def test_bad_blocks_is_a_one_line_error():
    with pytest.raises(ParameterError, match=r"^tile\(\) blocks must be 'auto' or 'tiles', got 'user'$"):
        florin.tile(shape=4, blocks="user")


def test_blocks_round_trip_through_a_pipeline_file():
    pipe = florin.Serial(florin.tile(shape=(4, 4), blocks="tiles"), morphology.binary_opening())
    back = florin.Serial.from_toml(pipe.to_toml())
    assert back.steps[0].blocks == "tiles"
    assert florin.Serial.from_toml(florin.Serial(florin.tile(shape=4)).to_toml()).steps[0].blocks == "auto"


def test_every_executor_gives_the_regrouped_result(tmp_path):
    rng = np.random.default_rng(7)
    image = rng.integers(0, 200, (12, 45, 38)).astype(np.uint16)
    whole = morphology.binary_opening(thresholding.ndnt(image, shape=(5, 11, 11))).values

    def build(make):
        return florin.Serial(florin.tile(shape=(5, 16, 16), stride=(5, 8, 8)),
                             make(thresholding.ndnt(shape=(5, 11, 11)), morphology.binary_opening()))

    results = assert_executors_agree({"blocks": (build, image)}, tmp_path, mpi=("spmd-2",))
    for name, result in results["blocks"].items():
        np.testing.assert_array_equal(result.values, whole, err_msg=name)


def test_a_resumable_run_keeps_the_users_tiles(tmp_path):
    # Its records name the items it ran; a resume under another executor or budget would choose other blocks.
    image = np.random.default_rng(8).integers(0, 100, (4, 20, 20)).astype(np.uint16)
    rec = Recorder()
    path = tmp_path / "seg.h5"
    florin.Serial(florin.tile(shape=(4, 10, 10)), thresholding.ndnt(shape=(3, 5, 5)), rec,
                  florin.save(path))(image, resume=True)
    assert len(rec.infos) == 4
    np.testing.assert_array_equal(florin.io.read(path).values, thresholding.ndnt(image, shape=(3, 5, 5)).values)


@pytest.mark.parametrize("fmt", ["h5", "zarr"])
def test_blocks_are_aligned_to_the_inputs_chunks(tmp_path, fmt):
    image = np.random.default_rng(9).integers(0, 100, (8, 48, 40)).astype(np.uint16)
    path = tmp_path / f"in.{fmt}"
    if fmt == "h5":
        h5py = pytest.importorskip("h5py")
        with h5py.File(path, "w") as f:
            f.create_dataset("image", data=image, chunks=(8, 16, 15))
    else:
        zarr = pytest.importorskip("zarr")
        zarr.open(str(path), mode="w", shape=image.shape, chunks=(8, 16, 15), dtype=image.dtype)[:] = image
    volume = florin.io.read(path)
    assert florin.io.lazy.chunks_of(volume) == (8, 16, 15)
    rec = Recorder()
    out = florin.Serial(florin.tile(shape=(4, 8, 8)), florin.Multithread(thresholding.ndnt(shape=(3, 5, 5)), rec,
                                                                         workers=2))(volume)
    np.testing.assert_array_equal(out.values, thresholding.ndnt(image, shape=(3, 5, 5)).values)
    assert len(rec.infos) >= 2 * planner.BLOCKS_PER_WORKER  # split for the two workers
    for info in rec.infos:  # every core starts on a chunk boundary and is whole chunks (or ends at the edge)
        for start, size, n, chunk in zip(info.origin, info.core_shape, image.shape, (8, 16, 15), strict=True):
            assert start % chunk == 0 and (size % chunk == 0 or start + size == n)


@pytest.mark.parametrize("shape", [(128, 2048, 2048), (64, 512, 512), (7, 300, 200), (1000, 1000)])
@pytest.mark.parametrize("budget_mib", [8, 64, 370, 4096])
@pytest.mark.parametrize("workers", [1, 2, 4])
def test_default_tile_holds_the_tiles_in_flight_within_the_budget(shape, budget_mib, workers):
    budget = budget_mib * 2**20
    tile = planner.default_tile(shape, workers, budget)
    in_flight = planner.IN_FLIGHT_PER_WORKER * workers * math.prod(tile) * planner.BYTES_PER_VOXEL
    assert in_flight <= budget * planner.BLOCK_FRACTION or math.prod(tile[:-1]) == 1  # one row cannot be cut
    assert tile[-1] == shape[-1]  # whole rows
    count = math.prod(-(-n // t) for n, t in zip(shape, tile, strict=True))
    assert count >= min(planner.BLOCKS_PER_WORKER * workers, math.prod(shape[:-1]))
