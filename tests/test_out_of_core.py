"""Out-of-core runs (issue 13 items 1, 2, 4): a memory budget, streaming joins, scratch volumes, the planner."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from executor_helpers import assert_executors_agree, executor, logged_calls, logging_executor, mpi_available, run_mpi

import florin
import florin.conncomp as conncomp
import florin.morphology as morphology
import florin.thresholding as thresholding
from florin import memory, planner, tilemeta
from florin.blockwise import _arrays as blockwise_arrays
from florin.cli import main
from florin.errors import ParameterError, PipelineError
from florin.tiling import TileJoin, register_join, unregister_join

sys.path.insert(0, str(Path(__file__).parent / "objects"))
from test_weak_classification import _write_phantom, seed_pipeline  # noqa: E402

TINY = "64KiB"  # every joined volume below goes to scratch, every whole-volume step runs blockwise


class Budgeted:
    """A pipeline called with a memory budget (picklable, for the MPI runner)."""

    def __init__(self, pipeline, memory):
        self.pipeline, self.memory = pipeline, memory

    def __call__(self, data):
        return self.pipeline(data, memory=self.memory)


# -- sizes and budgets ---------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("512MiB", 512 << 20), ("2GiB", 2 << 30), ("1.5G", 3 << 29), ("800MB", 800 * 10**6), ("64k", 64 << 10),
    ("4096", 4096), (4096, 4096), ("2 GiB", 2 << 30),
])
def test_parse_size(text, expected):
    assert memory.parse_size(text) == expected


@pytest.mark.parametrize("bad", ["lots", "2XB", "-1G", "0", "", None, True, "1e400G"])
def test_a_bad_size_is_one_parameter_error_line(bad):
    with pytest.raises(ParameterError, match="memory must be") as info:
        memory.parse_size(bad)
    assert "\n" not in str(info.value)


def test_the_default_budget_is_a_quarter_of_the_available_memory(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: 8 << 30)
    assert memory.default_budget() == 2 << 30


def test_available_memory_without_psutil_reads_proc_meminfo(monkeypatch):
    monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil fails
    got = memory.available_memory()
    text = Path("/proc/meminfo").read_text()
    line = next(line for line in text.splitlines() if line.startswith("MemAvailable:"))
    assert 0 < got <= int(line.split()[1]) * 1024 * 2


def test_memory_is_an_option_of_the_outermost_call_only():
    inner = florin.Serial(lambda v: florin.Serial(np.negative)(v, memory="1GiB"))
    with pytest.raises(PipelineError, match="outermost pipeline call"):
        inner(np.zeros(3))
    with pytest.raises(ParameterError, match="memory must be"):
        florin.Serial(np.negative)(np.zeros(3), memory="much")


# -- streaming -----------------------------------------------------------------------------------
class _Arrival(TileJoin):
    """Records, as each tile result reaches the join, how many tiles the steps had finished."""

    name = "arrival"
    log = []

    @classmethod
    def claims(cls, tile):
        return "arrival" in tile.attrs

    def add(self, tile, info):
        with _counter_lock:
            _Arrival.log.append(_counter[0])
        super().add(tile, info)


_counter = [0]
_counter_lock = threading.Lock()


@florin.florinate
def _count(image):
    with _counter_lock:
        _counter[0] += 1
    out = image.copy(deep=False)
    out.attrs = {**image.attrs, "arrival": True}
    return out


@pytest.fixture
def arrival():
    register_join(_Arrival)
    _Arrival.log, _counter[0] = [], 0
    yield _Arrival
    unregister_join(_Arrival)


@pytest.mark.parametrize("make", [florin.Serial, executor("multithread")], ids=["serial", "multithread"])
def test_tile_results_reach_the_join_while_the_rest_still_runs(arrival, make):
    vol = np.arange(40 * 8, dtype=np.float64).reshape(40, 8)
    out = florin.Serial(florin.tile(shape=(2, 8)), make(np.negative, _count()))(vol)
    np.testing.assert_array_equal(out.values, -vol)
    assert len(arrival.log) == 20
    # The first tile is joined long before the last one is computed: results are not gathered first.
    assert arrival.log[0] <= 2 * 2 + 1 < 20
    if make is florin.Serial:
        assert arrival.log == list(range(1, 21))


def test_an_executor_that_overrides_only_map_still_runs():
    class Reversed(florin.Pipeline):
        def map(self, func, items):
            return list(reversed([func(x) for x in reversed(list(items))]))

    vol = np.arange(24).reshape(4, 6)
    out = florin.Serial(florin.tile(shape=(2, 3)), Reversed(np.negative))(vol)
    np.testing.assert_array_equal(out.values, -vol)
    assert Reversed(np.negative).map(np.negative, [1, 2]) == [-1, -2]


def test_map_of_a_streaming_executor_returns_the_list_in_order():
    got = florin.Multithread(workers=2).map(lambda x: x * 2, range(7))
    assert got == [0, 2, 4, 6, 8, 10, 12]


# -- scratch -------------------------------------------------------------------------------------
def test_a_volume_above_the_budget_is_joined_into_scratch_and_small_ones_stay_in_memory(tmp_path):
    vol = np.random.default_rng(0).random((16, 32, 32))
    pipe = florin.Serial(florin.tile(shape=(4, 16, 16)), florin.Serial(np.negative))
    small = pipe(vol)
    assert type(small.variable._data) is np.ndarray
    big = pipe(vol, memory=TINY, scratch=tmp_path)
    assert memory.is_scratch(big)
    np.testing.assert_array_equal(big.values, small.values)
    assert list(tmp_path.iterdir()) == []  # removed after the run


def test_scratch_is_removed_after_a_failed_run(tmp_path):
    def explode(volume):
        assert memory.is_scratch(volume) and any(tmp_path.iterdir())  # it is in scratch while the run lasts
        raise RuntimeError("boom")

    vol = np.random.default_rng(0).random((16, 32, 32))
    pipe = florin.Serial(florin.tile(shape=(4, 16, 16)), florin.Serial(np.negative), explode)
    with pytest.raises(PipelineError, match="boom"):
        pipe(vol, memory=TINY, scratch=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_scratch_is_removed_after_a_failing_tile(tmp_path):
    def fail_late(tile):
        if tilemeta.info_of(tile).index == 5:
            raise ValueError("tile five")
        return tile

    vol = np.random.default_rng(0).random((16, 32, 32))
    pipe = florin.Serial(florin.tile(shape=(4, 16, 16)), florin.Serial(florin.florinate(fail_late)()))
    with pytest.raises(PipelineError, match="tile five"):
        pipe(vol, memory=TINY, scratch=tmp_path)
    assert list(tmp_path.iterdir()) == []


HELD = """
import sys
import time

import numpy as np

from florin import memory

scratch = memory.Scratch(1, sys.argv[1])
scratch.allocate((8, 8), np.uint8)  # above the budget: the scratch directory is made
print(scratch.path, flush=True)
time.sleep(120)
"""


def test_the_next_run_removes_the_scratch_of_a_killed_run_and_keeps_a_live_ones(tmp_path):
    import signal
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    runs = [subprocess.Popen([sys.executable, "-c", HELD, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
            for _ in range(2)]
    try:
        killed, live = (Path(run.stdout.readline().strip()) for run in runs)
        runs[0].send_signal(signal.SIGKILL)  # cannot clean up
        runs[0].wait(timeout=30)
        assert killed.is_dir() and (killed / "owner.lock").is_file() and live.is_dir()
        unowned = tmp_path / "florin-scratch-unowned"  # no owner record (being made, or an older florin's): kept
        unowned.mkdir()
        vol = np.random.default_rng(0).random((16, 32, 32))
        pipe = florin.Serial(florin.tile(shape=(4, 16, 16)), florin.Serial(np.negative))
        np.testing.assert_array_equal(pipe(vol, memory=TINY, scratch=tmp_path).values, -vol)
        assert sorted(tmp_path.iterdir()) == sorted([live, unowned])  # the killed run's is gone, this run's removed
    finally:
        for run in runs:
            run.kill()
            run.wait(timeout=30)
    assert memory.remove_stale_scratch(tmp_path) == [live]  # its run is gone now


# -- the planner ---------------------------------------------------------------------------------
def _spy_on_blockwise(monkeypatch):
    import florin.blockwise as blockwise

    calls = []
    for name in ("label", "remove_small_objects", "remove_small_holes", "regionprops", "reconstruct"):
        real = getattr(blockwise, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(blockwise, name, spy)
    return calls


def test_whole_volume_steps_above_the_budget_run_blockwise_by_their_kind(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    vol = rng.random((12, 40, 40))

    def build():
        return florin.Serial(
            florin.tile(shape=(4, 20, 20)),
            florin.Serial(thresholding.ndnt(shape=(3, 9, 9), threshold=0.1), morphology.binary_opening()),
            morphology.remove_small_objects(max_size=4, connectivity=2),
            morphology.binary_dilation(),  # a map step on a scratch volume: tiled with its halo
            conncomp.label(connectivity=2),
            morphology.remove_small_holes(max_size=5),
        )

    expected = build()(vol)
    calls = _spy_on_blockwise(monkeypatch)
    got = build()(vol, memory=TINY, scratch=tmp_path)
    assert calls == ["remove_small_objects", "label", "remove_small_holes"]
    np.testing.assert_array_equal(got.values, expected.values)
    assert got.dtype == expected.dtype and got.dims == expected.dims


def test_the_seed_weak_classification_pipeline_under_a_tiny_budget_equals_the_in_memory_run(tmp_path, monkeypatch):
    _, path = _write_phantom((20, 96, 96), tmp_path)
    plain, capped = tmp_path / "plain", tmp_path / "capped"
    plain.mkdir(), capped.mkdir()
    seed_pipeline(plain)(path)
    calls = _spy_on_blockwise(monkeypatch)
    seed_pipeline(capped)(path, memory=TINY, scratch=tmp_path / "scratch")
    assert calls == ["label", "remove_small_holes", "regionprops", "reconstruct"]
    for name in ("segmented.tiff", "labeled.tiff"):
        a, b = florin.io.read(plain / name), florin.io.read(capped / name)
        np.testing.assert_array_equal(b.values, a.values, err_msg=name)
        assert a.dtype == b.dtype
    labeled = florin.io.read(plain / "labeled.tiff").values
    assert set(np.unique(labeled)) > {0}  # something was classified
    assert list((tmp_path / "scratch").iterdir()) == []


def test_executors_agree_with_serial_under_a_tiny_budget(tmp_path):
    rng = np.random.default_rng(7)
    vol = rng.random((12, 40, 40))

    def joined_then_planned(make):
        return Budgeted(florin.Serial(
            florin.tile(shape=(4, 20, 20)),
            make(thresholding.ndnt(shape=(3, 9, 9), threshold=0.1), morphology.binary_opening()),
            conncomp.label(),
            morphology.remove_small_objects(max_size=3),
        ), TINY)

    def labels_merged_in_scratch(make):
        return Budgeted(florin.Serial(
            florin.tile(shape=(5, 16, 24)),
            make(thresholding.ndnt(shape=(3, 9, 9), threshold=0.1), conncomp.label(connectivity=3),
                 conncomp.regionprops()),
        ), TINY)

    cases = {"joined": (joined_then_planned, vol), "regions": (labels_merged_in_scratch, vol)}
    out = assert_executors_agree(cases, tmp_path, mpi=("spmd-2", "spawn"))
    plain = florin.Serial(florin.tile(shape=(4, 20, 20)), florin.Serial(thresholding.ndnt(shape=(3, 9, 9), threshold=0.1),
                          morphology.binary_opening()), conncomp.label(), morphology.remove_small_objects(max_size=3))
    np.testing.assert_array_equal(out["joined"]["serial"].values, plain(vol).values)


#: The per-block functions of the seed's planned steps (label, remove_small_holes, regionprops, reconstruct).
SEED_BLOCK_FUNCTIONS = {"_label_block", "_shell_pairs", "_relabel_block", "_fill_block",
                        "_block_stats", "_lookup_block"}


def _seed_under_a_logging_executor(cls, folder, out_dir, **options):
    def make(*steps):
        return logging_executor(cls, folder)(*steps, **options)

    return seed_pipeline(out_dir, make)


def _assert_same_outputs(out_dir, reference):
    for name in ("segmented.tiff", "labeled.tiff"):
        np.testing.assert_array_equal(florin.io.read(out_dir / name).values,
                                      florin.io.read(reference / name).values, err_msg=name)


@pytest.fixture(scope="module")
def seed_reference(tmp_path_factory):
    """The seed pipeline's outputs, Serial and in memory, on a small phantom."""
    directory = tmp_path_factory.mktemp("seed")
    _, path = _write_phantom((20, 96, 96), directory)
    seed_pipeline(directory)(path)
    return path, directory


def test_planned_blocks_are_read_and_written_by_the_nested_executors_workers(tmp_path, monkeypatch, seed_reference):
    path, reference = seed_reference
    applied = []
    real_apply = blockwise_arrays.Sink.apply
    monkeypatch.setattr(blockwise_arrays.Sink, "apply",
                        lambda self, pending: (applied.append(pending is not None), real_apply(self, pending))[1])
    logs, out_dir = tmp_path / "logs", tmp_path / "out"
    logs.mkdir(), out_dir.mkdir()
    pipe = _seed_under_a_logging_executor(florin.Multiprocess, logs, out_dir, workers=2)
    pipe(path, memory=TINY, scratch=tmp_path / "scratch")
    _assert_same_outputs(out_dir, reference)
    calls = logged_calls(logs)
    assert SEED_BLOCK_FUNCTIONS <= calls["worker"]  # every planned step's blocks ran in the workers
    assert not calls["parent"] & SEED_BLOCK_FUNCTIONS
    assert os.getpid() not in calls["worker_pids"] and len(calls["worker_pids"]) >= 1
    assert applied and not any(applied)  # the workers wrote every block themselves: none came back to be written


@pytest.mark.skipif(mpi_available() is not None, reason=str(mpi_available()))
def test_planned_blocks_run_on_the_mpi_pool_workers(tmp_path, seed_reference):
    path, reference = seed_reference
    logs, out_dir = tmp_path / "logs", tmp_path / "out"
    logs.mkdir(), out_dir.mkdir()
    pipe = _seed_under_a_logging_executor(florin.MPI, logs, out_dir, workers=2)
    result = run_mpi({"seed": (Budgeted(pipe, TINY), str(path))}, tmp_path, "spawn")["seed"][0]
    assert not isinstance(result, BaseException), result
    _assert_same_outputs(out_dir, reference)
    calls = logged_calls(logs)
    assert SEED_BLOCK_FUNCTIONS <= calls["worker"] and not calls["parent"] & SEED_BLOCK_FUNCTIONS


def test_the_block_executor_is_the_nearest_parallel_one_and_serial_stays_in_process():
    step = conncomp.label()
    threads, processes = florin.Multithread(np.negative, workers=2), florin.Multiprocess(np.negative, workers=2)
    assert planner.block_executor(step, florin.Serial(threads, step, florin.Serial(processes))) is threads
    assert planner.block_executor(step, florin.Serial(florin.Serial(processes), np.abs, step, threads)) is threads
    assert planner.block_executor(step, processes) is processes
    assert planner.block_executor(step, florin.Serial(step, np.abs)) is None


# -- the CLI -------------------------------------------------------------------------------------
def test_segment_with_a_memory_budget_equals_the_unbudgeted_run(tmp_path):
    _, path = _write_phantom((16, 64, 64), tmp_path)
    scratch = tmp_path / "scratch"
    common = [str(path), "--tile", "8,32,32", "--class", "cell:area=100..300", "--class", "other", "--min-size", "8"]
    assert main(["segment", *common, "-o", str(tmp_path / "a.tif"), "--objects", str(tmp_path / "a.csv")]) == 0
    assert main(["segment", *common, "-o", str(tmp_path / "b.tif"), "--objects", str(tmp_path / "b.csv"),
                 "--memory", TINY, "--scratch", str(scratch)]) == 0
    np.testing.assert_array_equal(florin.io.read(tmp_path / "b.tif").values, florin.io.read(tmp_path / "a.tif").values)
    assert (tmp_path / "a.csv").read_text().splitlines()[0] == (tmp_path / "b.csv").read_text().splitlines()[0]
    assert list(scratch.iterdir()) == []


def test_run_takes_memory_and_scratch(tmp_path):
    vol = np.random.default_rng(1).random((12, 32, 32)).astype(np.float32)
    florin.io.write(tmp_path / "in.npy", vol)
    pipe = florin.Serial(florin.load(), florin.tile(shape=(4, 16, 16)),
                         florin.Serial(thresholding.ndnt(shape=(3, 9, 9))), conncomp.label())
    pipe.dump(tmp_path / "p.pkl")
    assert main(["run", str(tmp_path / "p.pkl"), str(tmp_path / "in.npy"), "-o", str(tmp_path / "out.npy"),
                 "--memory", "8KiB", "--scratch", str(tmp_path / "s")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), pipe(tmp_path / "in.npy").values)
    assert (tmp_path / "s").is_dir() and list((tmp_path / "s").iterdir()) == []  # it was used, and removed


@pytest.mark.parametrize("command", ["segment", "run"])
def test_a_bad_memory_option_is_one_line(tmp_path, capsys, command):
    florin.io.write(tmp_path / "in.npy", np.zeros((4, 4), np.float32))
    args = [str(tmp_path / "in.npy"), "-o", str(tmp_path / "o.npy")]
    if command == "run":
        florin.Serial(np.negative).dump(tmp_path / "p.pkl")
        args = [str(tmp_path / "p.pkl"), *args]
    assert main([command, *args, "--memory", "2 bananas"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--memory must be a size such as 512MiB" in err[0]


def test_a_subclass_that_overrides_map_of_a_streaming_executor_is_used():
    class Watching(florin.Multithread):
        seen = None

        def map(self, func, items):
            items = list(items)
            Watching.seen = len(items)
            return super().map(func, items)

    vol = np.arange(24.0).reshape(4, 6)
    out = florin.Serial(florin.tile(shape=(2, 3)), Watching(np.negative, workers=2))(vol)
    np.testing.assert_array_equal(out.values, -vol)
    assert Watching.seen == 4
