"""Faults: a failing item is reported with its operator and tile origin; a dead worker never hangs a run."""

import os
import signal
import sys
import textwrap
import time

import numpy as np
import pytest
from executor_helpers import MPI_TIMEOUT, executor, in_process_executors, mpi_available, run_job, run_mpi

import florin
from florin.errors import PipelineError, WorkerError
from florin.executors import Multiprocess, RemoteException, RemoteTraceback


@florin.florinate
def fails_on_tile(image, index=1):
    """Raises on the tile with raster index ``index``."""
    if florin.tilemeta.info_of(image).index == index:
        raise ValueError(f"bad tile {index}")
    return image


class Unpicklable(Exception):
    def __init__(self, message, handle):
        super().__init__(message)
        self.handle = handle

    def __reduce__(self):
        raise TypeError("cannot pickle me")


@florin.florinate
def raises_unpicklable(image):
    if florin.tilemeta.info_of(image).index == 2:
        raise Unpicklable("odd failure", handle=lambda: None)
    return image


@florin.florinate
def dies_on_tile(image, how="exit", index=2):
    """Kills its worker process on one tile (never call it outside a worker)."""
    if florin.tilemeta.info_of(image).index == index:
        if how == "exit":
            os._exit(3)
        elif how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif how == "segfault":
            import ctypes

            ctypes.string_at(0)
    return image


def _failing(make):
    return florin.Serial(florin.tile(shape=(4, 4)), make(np.negative, fails_on_tile(index=1)))


IMAGE = np.arange(64.0).reshape(8, 8)


def test_failing_item_names_operator_and_origin_under_every_executor():
    for name, make in {"serial": florin.Serial, **in_process_executors()}.items():
        with pytest.raises(PipelineError) as err:
            _failing(make)(IMAGE)
        assert err.value.operator == "fails_on_tile", name
        assert err.value.origin == (0, 4), name
        assert "fails_on_tile" in str(err.value) and "(0, 4)" in str(err.value), name
        cause = err.value.__cause__
        assert isinstance(cause, ValueError) and str(cause) == "bad tile 1", name


def test_process_failure_chains_the_worker_traceback():
    with pytest.raises(PipelineError) as err:
        _failing(lambda *s: Multiprocess(*s, workers=2))(IMAGE)
    remote = err.value.__cause__.__cause__
    assert isinstance(remote, RemoteTraceback)
    assert "fails_on_tile" in remote.tb and "ValueError: bad tile 1" in remote.tb


def test_unpicklable_worker_exception_still_reported():
    pipe = florin.Serial(florin.tile(shape=(4, 4)), Multiprocess(raises_unpicklable(), workers=2))
    with pytest.raises(PipelineError) as err:
        pipe(IMAGE)
    assert err.value.operator == "raises_unpicklable" and err.value.origin == (4, 0)
    assert isinstance(err.value.__cause__, RemoteException) and "odd failure" in str(err.value.__cause__)


class NeedsTwoArguments(Exception):
    """Pickles, but does not unpickle (its __init__ wants two arguments): most library exceptions with extra fields."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


class UnpicklableFlorinError(florin.errors.FlorinError):
    """A florin error (not wrapped by the pipeline) holding something that cannot be pickled."""

    def __init__(self, message):
        super().__init__(message)
        self.handle = lambda: None

    def __reduce__(self):
        raise TypeError("cannot pickle me")


@florin.florinate
def raises_on_tile_two(image, kind="args"):
    if florin.tilemeta.info_of(image).index == 2:
        if kind == "args":
            raise NeedsTwoArguments("two needed", 7)
        raise UnpicklableFlorinError("florin-typed odd failure")
    return image


@pytest.mark.parametrize("kind", ["args", "florin"])
def test_exception_that_cannot_travel_is_a_pipeline_error_with_operator_origin_and_traceback(kind):
    # Issue 14 item 7: these came back as a bare RemoteException, without operator or tile origin.
    pipe = florin.Serial(florin.tile(shape=(4, 4)), Multiprocess(raises_on_tile_two(kind=kind), workers=2))
    with pytest.raises(PipelineError) as err:
        pipe(IMAGE)
    assert err.value.operator == "raises_on_tile_two" and err.value.origin == (4, 0)
    assert "raises_on_tile_two" in str(err.value) and "(4, 0)" in str(err.value)
    chain, cause = [], err.value.__cause__
    while cause is not None:
        chain.append(cause)
        cause = cause.__cause__
    remote = [c for c in chain if isinstance(c, RemoteTraceback)]
    assert remote and "raises_on_tile_two" in remote[0].tb
    assert ("NeedsTwoArguments: two needed" if kind == "args" else "florin-typed odd failure") in remote[0].tb


@pytest.mark.timeout(60)  # fails fast instead of hanging
@pytest.mark.parametrize("how", ["exit", "kill", "segfault"])
def test_dead_worker_fails_fast_with_a_clear_error(how):
    pipe = florin.Serial(florin.tile(shape=(4, 4)), Multiprocess(dies_on_tile(how=how), workers=2))
    with pytest.raises(WorkerError) as err:
        pipe(IMAGE)
    message = str(err.value)
    assert "died" in message and "dies_on_tile" in message
    # the pool may report a sibling it stopped (SIGTERM) rather than the worker that exited
    expected = {"exit": ("exit code 3", "exit code"), "kill": ("SIGKILL", "SIGTERM"),
                # a crash handler (faulthandler) may turn the segfault into an exit code
                "segfault": ("SIGSEGV", "exit code")}[how]
    assert any(e in message for e in expected), message


@pytest.mark.timeout(60)  # fails fast instead of hanging
@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_dead_worker_detected_with_every_start_method(start_method):
    import multiprocessing

    if start_method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"{start_method} is not available here")
    pipe = florin.Serial(
        florin.tile(shape=(4, 4)), Multiprocess(dies_on_tile(how="kill"), workers=2, start_method=start_method)
    )
    with pytest.raises(WorkerError, match="SIGKILL"):
        pipe(IMAGE)


def test_dead_worker_pool_is_stopped_and_forgotten():
    import psutil

    from florin.executors import _processes

    pipe = florin.Serial(florin.tile(shape=(4, 4)), Multiprocess(dies_on_tile(how="kill"), workers=2))
    with pytest.raises(WorkerError):
        pipe(IMAGE)
    kept = {w.proc.pid for pool in _processes._process_pools.values() for w in pool.workers}
    time.sleep(0.5)
    children = [p for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]
    # What is left are kept pools of other tests, the forkserver and multiprocessing's resource tracker.
    helpers = ("forkserver", "resource_tracker", "mpi4py", "hydra", "mpiexec")
    stray = [p.pid for p in children if p.pid not in kept and not any(h in " ".join(p.cmdline()) for h in helpers)]
    assert not stray


def test_run_after_a_dead_worker_works_again():
    with pytest.raises(WorkerError):
        florin.Serial(florin.tile(shape=(4, 4)), Multiprocess(dies_on_tile(how="exit"), workers=2))(IMAGE)
    out = florin.Serial(florin.tile(shape=(4, 4)), Multiprocess(np.negative, workers=2))(IMAGE)
    np.testing.assert_array_equal(out.values, -IMAGE)


@pytest.mark.parametrize("start_method", ["fork", "forkserver", "spawn"])
def test_shutdown_lets_workers_exit_on_their_own(start_method):
    import multiprocess

    from florin.executors import _processes, shutdown_pools

    if start_method not in multiprocess.get_all_start_methods():
        pytest.skip(f"{start_method} is not available here")
    # Two pools: forked workers of the second must not keep the first one's pipes open.
    for processes in (2, 3):
        florin.Serial(florin.tile(shape=(4, 4)),
                      Multiprocess(np.negative, workers=processes, start_method=start_method))(IMAGE)
    procs = [w.proc for pool in _processes._process_pools.values() for w in pool.workers]
    assert len(procs) >= 5
    shutdown_pools()
    assert [p.exitcode for p in procs] == [0] * len(procs)  # they saw their pipe close; none had to be killed


def test_idle_worker_dying_mid_run_fails_the_run():
    import threading

    from florin.executors import _processes

    ex = Multiprocess(workers=2)
    ex.map(np.sqrt, [1.0, 2.0])  # start the pool
    pool = _processes._process_pools[(2, None)]
    idle = pool.workers[1].proc

    def kill_soon():
        time.sleep(0.5)
        os.kill(idle.pid, signal.SIGKILL)

    def slow(x):
        time.sleep(3)
        return x

    threading.Thread(target=kill_soon).start()
    with pytest.raises(WorkerError, match="SIGKILL"):
        ex.map(slow, [1.0])  # one item: the killed worker held no task


WORKERS_OF_KILLED_PARENT = textwrap.dedent(
    """
    import os, signal, numpy as np, florin
    pipe = florin.Serial(florin.tile(shape=(4, 4)), florin.Multiprocess(np.negative, workers=2))
    pipe(np.ones((8, 8)))
    from florin.executors import _processes
    print(" ".join(str(w.proc.pid) for pool in _processes._process_pools.values() for w in pool.workers), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_workers_exit_when_their_parent_is_killed(tmp_path):
    import psutil

    script = tmp_path / "killed_parent.py"
    script.write_text(WORKERS_OF_KILLED_PARENT)
    proc = run_job([sys.executable, str(script)], cwd=tmp_path, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) == 2

    def running(pid):
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(map(running, pids)):
        time.sleep(0.2)
    assert not [p for p in pids if running(p)]


# -- MPI ------------------------------------------------------------------------------------------
needs_mpi = pytest.mark.skipif(mpi_available() is not None, reason=str(mpi_available()))


@pytest.mark.mpi
@needs_mpi
@pytest.mark.parametrize("launch", ["spmd-3", "spawn"])
def test_mpi_failing_item_reaches_every_rank(tmp_path, launch):
    results = run_mpi({"failing": (_failing(executor("mpi")), IMAGE)}, tmp_path, launch)
    for err in results["failing"]:  # every SPMD rank raises the same error
        assert isinstance(err, PipelineError), err
        assert err.operator == "fails_on_tile" and err.origin == (0, 4)
        assert isinstance(err.__cause__, ValueError) and str(err.__cause__) == "bad tile 1"


DEAD_RANK = textwrap.dedent(
    """
    import os
    import numpy as np
    import florin

    def die(image):
        if florin.tilemeta.info_of(image).index == 1:
            os._exit(7)
        return image

    florin.Serial(florin.tile(shape=(4, 4)), florin.MPI(florin.florinate(die)(), workers=2))(np.zeros((8, 8)))
    print("finished")
    """
)


@pytest.mark.timeout(MPI_TIMEOUT + 30)  # fails fast instead of hanging
@pytest.mark.mpi
@needs_mpi
@pytest.mark.parametrize("launch", [["mpiexec", "-n", "2"], []], ids=["spmd-2", "spawn"])
def test_mpi_dead_rank_ends_the_job_instead_of_hanging(tmp_path, launch):
    script = tmp_path / "dead_rank.py"
    script.write_text(DEAD_RANK)
    proc = run_job([*launch, sys.executable, str(script)], cwd=tmp_path, env={**os.environ, "NUMBA_NUM_THREADS": "1"})
    assert proc.returncode != 0
    assert "finished" not in proc.stdout
