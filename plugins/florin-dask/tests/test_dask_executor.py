"""The Dask executor on real clusters: a LocalCluster and a subprocess scheduler with workers.

Every result is compared with ``florin.Serial`` on the seed documentation's
pipelines (tile, NDNT, binary opening; and the objects half, labelling,
region properties, classification and reconstruction, when the core has it).
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from florin_dask import Dask

import florin
import florin.conncomp as conncomp
import florin.morphology as morphology
import florin.thresholding as thresholding
from conftest import HOST, free_port, subprocess_cluster

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))  # florin's own test helpers
from executor_helpers import logged_calls, logging_executor  # noqa: E402
from florin import tilemeta
from florin.errors import ParameterError, PipelineError, WorkerError
from florin.registry import get_registry

pytestmark = pytest.mark.timeout(300)

HAS_OBJECTS = all(importlib.util.find_spec(m) is not None for m in ("florin.conncomp", "florin.classification"))


# -- the seed's pipelines, for any executor --------------------------------------------------
def segmentation(executor, **options):
    """Seed example 1: tile, NDNT, binary opening (the tiles mapped by ``executor``)."""
    return florin.Serial(
        florin.tile(shape=(10, 64, 64), stride=(10, 32, 32)),
        executor(
            thresholding.ndnt(shape=(10, 64, 64), threshold=0.3),
            morphology.binary_opening(),
            **options,
        ),
    )


def objects(executor, **options):
    """Seed example 2: segmentation, then label, region properties, classify (mapped), reconstruct."""
    import florin.conncomp as conncomp

    return florin.Serial(
        florin.tile(shape=(10, 64, 64), stride=(10, 32, 32)),
        executor(
            thresholding.ndnt(shape=(10, 64, 64), threshold=0.3),
            morphology.binary_opening(),
            **options,
        ),
        conncomp.label(),
        morphology.remove_small_holes(min_size=20),
        conncomp.regionprops(),
        executor(
            florin.classify(
                florin.bounds_classifier("cell", area=(100, 300), depth=(10, 25), width=(50, 100), height=(50, 100)),
                florin.bounds_classifier("vasculature"),
            ),
            **options,
        ),
        florin.reconstruct(),
    )


SEED_PIPELINES = [
    pytest.param(segmentation, id="segmentation"),
    pytest.param(
        objects,
        id="objects",
        marks=pytest.mark.skipif(not HAS_OBJECTS, reason="florin.conncomp / florin.classification not in the core yet"),
    ),
]


@pytest.fixture(scope="module")
def serial_results(volume):
    cache = {}

    def result(build):
        if build not in cache:
            cache[build] = build(florin.Serial)(volume)
        return cache[build]

    return result


def assert_same(result, expected):
    assert result.shape == expected.shape
    assert result.dtype == expected.dtype
    np.testing.assert_array_equal(result.values, expected.values)
    assert result.dims == expected.dims


@florin.florinate
def _identity(image):
    return image


def _failing_at(origin):
    """An operator (pickled by value) that fails on the tile whose core starts at ``origin``."""

    def explode(image):
        info = tilemeta.info_of(image)
        if info is not None and tuple(info.origin) == tuple(origin):
            raise ValueError("bad voxels here")
        return image

    return florin.florinate(explode)()


def _killing_at(origin):
    """An operator that kills the worker process running the tile at ``origin``."""

    def kill_worker(image):
        info = tilemeta.info_of(image)
        if info is not None and tuple(info.origin) == tuple(origin):
            os._exit(17)
        return image

    return florin.florinate(kill_worker)()


# -- registration ---------------------------------------------------------------------------------
def test_registered_through_the_executor_hook():
    registry = get_registry()
    assert registry.executor("dask") is Dask
    assert registry.executor("Dask") is Dask
    assert florin.Dask is Dask
    info = registry.plugins["florin-dask"]
    assert info.status == "loaded"
    assert info.registered["executors"] == ["dask"]
    assert info.registered["operators"] == [] and info.registered["formats"] == []


def test_florin_plugins_lists_the_dask_executor():
    proc = subprocess.run([sys.executable, "-m", "florin", "plugins"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "florin-dask" in proc.stdout and "[loaded]" in proc.stdout
    assert "executors: dask" in proc.stdout


def test_options_are_checked_when_the_pipeline_is_built():
    with pytest.raises(ParameterError, match="workers"):
        Dask(_identity(), workers=0)
    with pytest.raises(ParameterError, match="address= or client="):
        Dask(_identity(), address="tcp://127.0.0.1:1", client=object())
    with pytest.raises(ParameterError, match="worker_timeout"):
        Dask(_identity(), worker_timeout=0)


# -- a LocalCluster started by the executor itself ----------------------------------------------
def _cluster_processes(before):
    """Child processes started since ``before``, except multiprocessing's lifelong helpers."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.pid in before or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if any("resource_tracker" in part or "forkserver" in part for part in proc.cmdline()):
                continue
        except psutil.NoSuchProcess:
            continue
        found.append(proc)
    return found


def test_own_local_cluster_equals_serial_and_is_shut_down(volume, serial_results):
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    result = segmentation(Dask, workers=2)(volume)
    assert_same(result, serial_results(segmentation))
    deadline = time.monotonic() + 30
    while True:
        left = _cluster_processes(before)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not left, f"the LocalCluster's processes are still running: {left}"


def test_context_manager_keeps_one_cluster_for_several_runs(volume, mask):
    with Dask(morphology.binary_opening(), workers=2) as executor:
        pipeline = florin.Serial(florin.tile(shape=(10, 48, 48)), executor)
        first = pipeline(mask)
        client = executor._session[0]
        second = pipeline(~mask)
        assert executor._session[0] is client
    assert executor._session is None
    assert client.status == "closed"
    expected = florin.Serial(morphology.binary_opening())
    np.testing.assert_array_equal(first.values, expected(mask).values)
    np.testing.assert_array_equal(second.values, expected(~mask).values)


# -- a LocalCluster with 2 workers, given as client= --------------------------------------------
@pytest.mark.parametrize("build", SEED_PIPELINES)
def test_seed_pipelines_on_a_local_cluster_equal_serial(build, volume, local_client, serial_results):
    assert len(local_client.nthreads()) == 2
    assert_same(build(Dask, client=local_client)(volume), serial_results(build))
    assert local_client.status == "running"  # a user's client is never closed by florin


def test_a_failing_tile_names_the_operator_and_origin(volume, local_client):
    pipeline = florin.Serial(
        florin.tile(shape=(10, 64, 64), stride=(10, 32, 32)),
        Dask(morphology.binary_opening(), _failing_at((10, 32, 64)), client=local_client),
    )
    with pytest.raises(PipelineError) as caught:
        pipeline(volume > 1000)
    err = caught.value
    assert err.operator == "explode"
    assert err.origin == (10, 32, 64)
    assert "explode" in str(err) and "(10, 32, 64)" in str(err) and "bad voxels here" in str(err)


def test_lazy_input_ships_references_that_workers_read(tmp_path, volume, local_client, serial_results):
    np.save(tmp_path / "volume.npy", volume)

    class Spy(Dask):
        shipped = []

        def map(self, func, items):
            items = list(items)
            Spy.shipped = [len(pickle.dumps(item)) for item in items]
            return super().map(func, items)

    pipeline = florin.Serial(
        florin.load(),
        florin.tile(shape=(10, 64, 64), stride=(10, 32, 32)),
        Spy(thresholding.ndnt(shape=(10, 64, 64), threshold=0.3), morphology.binary_opening(), client=local_client),
    )
    result = pipeline(tmp_path / "volume.npy")
    assert_same(result, serial_results(segmentation))
    tile_bytes = 10 * 64 * 64 * volume.itemsize
    assert Spy.shipped and max(Spy.shipped) < tile_bytes / 4, (
        f"tasks carried {max(Spy.shipped)} bytes for tiles of >= {tile_bytes} bytes: "
        "the volume's tiles should travel as file references read by the workers"
    )


def test_pipeline_with_a_client_pickles_without_it(tmp_path, local_client, mask):
    pipeline = florin.Serial(florin.tile(shape=(10, 48, 48)), Dask(morphology.binary_opening(), client=local_client))
    pipeline.dump(tmp_path / "p.pkl")
    loaded = florin.Pipeline.from_file(tmp_path / "p.pkl")
    inner = loaded.steps[1]
    assert isinstance(inner, Dask) and inner.client is None and inner._session is None
    assert 'executor = "dask"' in florin.Serial(Dask(morphology.binary_opening(), workers=3)).to_toml()


# -- a real `dask scheduler` and `dask worker` processes ----------------------------------------
@pytest.mark.parametrize("build", SEED_PIPELINES)
def test_seed_pipelines_on_a_subprocess_scheduler_equal_serial(build, volume, scheduler_address, serial_results):
    assert_same(build(Dask, address=scheduler_address)(volume), serial_results(build))


def test_scheduler_address_from_the_dask_config(monkeypatch, mask, scheduler_address):
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", scheduler_address)
    import dask

    dask.config.refresh()
    try:
        result = florin.Serial(florin.tile(shape=(10, 48, 48)), Dask(morphology.binary_opening()))(mask)
    finally:
        monkeypatch.delenv("DASK_SCHEDULER_ADDRESS")
        dask.config.refresh()
    np.testing.assert_array_equal(result.values, florin.Serial(morphology.binary_opening())(mask).values)


@pytest.mark.timeout(120)  # fails fast instead of hanging
def test_a_dead_worker_raises_worker_error_with_the_tile(tmp_path, mask):
    # allowed-failures=0: the first worker death running a task fails it (default: retried 3 times).
    env = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    with subprocess_cluster(tmp_path, n_workers=1, scheduler_env=env) as address:
        pipeline = florin.Serial(
            florin.tile(shape=(10, 48, 48)),
            Dask(_killing_at((0, 48, 48)), address=address, worker_timeout=30),
        )
        with pytest.raises(WorkerError) as caught:
            pipeline(mask)
    # Dask cannot tell which task a dying worker was running among those it held: all are named.
    assert caught.value.origin is not None
    assert "worker died" in str(caught.value) and "tile at origin (0, 48, 48)" in str(caught.value)


@pytest.mark.timeout(120)  # fails fast instead of hanging
def test_no_worker_left_fails_instead_of_hanging(tmp_path, mask):
    # Without a nanny nobody restarts the worker: the tasks would wait forever.
    with subprocess_cluster(tmp_path, n_workers=1, nanny=False) as address:
        pipeline = florin.Serial(
            florin.tile(shape=(10, 48, 48)),
            Dask(_killing_at((0, 0, 0)), address=address, worker_timeout=3),
        )
        with pytest.raises(WorkerError, match="no worker"):
            pipeline(mask)


@pytest.mark.timeout(60)  # fails fast instead of hanging
def test_an_unreachable_scheduler_fails_within_the_timeout(mask):
    address = f"tcp://{HOST}:{free_port()}"
    with pytest.raises(WorkerError, match="cannot connect"):
        florin.Serial(florin.tile(shape=(10, 48, 48)), Dask(_identity(), address=address, worker_timeout=2))(mask)


# -- the command line -------------------------------------------------------------------------------
def test_cli_executor_dask_runs_a_pipeline_file(tmp_path, volume, serial_results):
    np.save(tmp_path / "in.npy", volume)
    (tmp_path / "p.toml").write_text(segmentation(florin.Serial).to_toml())
    proc = subprocess.run(
        [sys.executable, "-m", "florin", "run", "p.toml", "in.npy", "-o", "out.npy", "--executor", "dask", "-j", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Scheduler" not in proc.stderr and "Nanny" not in proc.stderr  # a private cluster stays quiet
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), serial_results(segmentation).values)


def _planned(make):
    """Whole-volume steps after a tiled part: above a tiny budget the planner runs them blockwise."""
    return florin.Serial(
        florin.tile(shape=(4, 24, 24)),
        make(thresholding.ndnt(shape=(3, 9, 9), threshold=0.1), morphology.binary_opening()),
        conncomp.label(),
        conncomp.regionprops(),
        florin.classify(florin.bounds_classifier("small", area=20), florin.bounds_classifier("big")),
        florin.reconstruct(),
    )


def test_planned_blocks_are_read_and_written_by_the_dask_workers(tmp_path, local_client):
    vol = np.random.default_rng(5).random((8, 48, 48))
    expected = _planned(florin.Serial)(vol)
    logging = logging_executor(Dask, tmp_path)
    got = _planned(lambda *steps: logging(*steps, client=local_client))(vol, memory="64KiB", scratch=tmp_path / "s")
    np.testing.assert_array_equal(got.values, expected.values)
    assert got.attrs["classes"] == expected.attrs["classes"]
    calls = logged_calls(tmp_path)
    blocks = {"_label_block", "_shell_pairs", "_relabel_block", "_block_stats", "_lookup_block"}
    assert blocks <= calls["worker"] and not calls["parent"] & blocks
