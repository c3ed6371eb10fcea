"""One run per output: concurrent tile-by-tile saves (issue 14, item 1) and outputs checked first (item 3)."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import florin
from florin.errors import OutputBusyError, OutputExistsError, OutputNotWritableError, ParameterError
from florin.io import read

IMAGE = np.arange(8 * 64, dtype=np.float64).reshape(8, 64)


def _left(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_second_run_on_an_output_being_written_fails_at_once_and_the_first_run_wins(tmp_path):
    started, go = threading.Event(), threading.Event()

    def waiting(tile):
        started.set()
        assert go.wait(60)
        return tile

    out = tmp_path / "out.h5"
    first = florin.Serial(florin.tile(shape=(4, 16)), florin.Serial(waiting, florin.save(out)))
    second = florin.Serial(florin.tile(shape=(4, 16)), florin.Serial(np.negative, florin.save(out, overwrite=True)))
    results = {}
    thread = threading.Thread(target=lambda: results.setdefault("first", first(IMAGE)))
    thread.start()
    try:
        assert started.wait(60)
        with pytest.raises(OutputBusyError, match=r"being written by another florin run \(pid \d+ on "):
            second(IMAGE)
        # The refused run removed nothing of the first run's: its temporary output and claim are still there.
        assert [n for n in _left(tmp_path) if n.startswith(".out.h5.florin-tiles-")]
        assert ".out.h5.florin-claim" in _left(tmp_path)
    finally:
        go.set()
        thread.join(60)
    np.testing.assert_array_equal(results["first"].values, IMAGE)
    np.testing.assert_array_equal(read(out).values, IMAGE)
    assert _left(tmp_path) == ["out.h5"]


def test_each_run_writes_its_own_temporary_output(tmp_path):
    seen = []

    def spy(tile):
        seen.extend(n for n in os.listdir(tmp_path) if ".florin-tiles" in n)
        return tile

    out = tmp_path / "out.npy"
    pipe = florin.Serial(florin.tile(shape=(4, 16)), florin.Serial(spy, florin.save(out, overwrite=True)))
    pipe(IMAGE)
    pipe(IMAGE)
    names = sorted(set(seen))
    assert len(names) == 2 and all(n.startswith(".out.npy.florin-tiles-") for n in names), names
    assert _left(tmp_path) == ["out.npy", "out.npy.json"]


def test_a_claim_left_by_a_killed_run_does_not_block_the_next(tmp_path):
    out = tmp_path / "out.h5"
    (tmp_path / ".out.h5.florin-claim").write_text("pid 999999 on elsewhere")  # nobody holds its lock
    result = florin.Serial(florin.tile(shape=(4, 16)), florin.Serial(np.negative, florin.save(out)))(IMAGE)
    np.testing.assert_array_equal(result.values, -IMAGE)
    assert _left(tmp_path) == ["out.h5"]


PIPELINE = """
import os
import time

import florin

GO = {go!r}


def waiting(tile):
    deadline = time.monotonic() + 60
    while {wait} and not os.path.exists(GO) and time.monotonic() < deadline:
        time.sleep(0.02)
    return tile


pipeline = florin.Serial(florin.load(), florin.tile(shape=(4, 16)), florin.{executor}(waiting, florin.save({out!r})))
"""


@pytest.mark.parametrize("executor", ["Serial", "Multiprocess"])
def test_two_concurrent_cli_runs_give_exactly_one_runs_output(tmp_path, executor):
    """The issue's case: two `florin run` jobs save tile by tile to one path; both exited 0 with mixed data."""
    out, go = tmp_path / "out.h5", tmp_path / "go"
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, IMAGE)
    np.save(b, -IMAGE)
    for name, wait in (("first.py", True), ("second.py", False)):
        (tmp_path / name).write_text(PIPELINE.format(go=str(go), wait=wait, executor=executor, out=str(out)))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "florin", "-q", "run"]
    first = subprocess.Popen([*cmd, str(tmp_path / "first.py"), str(a)], stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not any(n.startswith(".out.h5.florin-tiles") for n in os.listdir(tmp_path)):
            assert first.poll() is None and time.monotonic() < deadline, "the first run never started writing"
            time.sleep(0.05)
        second = subprocess.run([*cmd, str(tmp_path / "second.py"), str(b)], capture_output=True, text=True,
                                env=env, timeout=120)
        assert second.returncode == 1, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "is being written by another florin run" in lines[0], second.stderr
    finally:
        go.touch()
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    np.testing.assert_array_equal(read(out).values, IMAGE)
    assert _left(tmp_path) == ["a.npy", "b.npy", "first.py", "go", "out.h5", "second.py"]


# -- item 3: every output of a pipeline is checked before anything is computed ----------------------
class _Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self, image):
        self.calls += 1
        return -image


def test_a_rerun_does_not_rewrite_the_first_output_then_fail_on_the_second(tmp_path):
    first, second = tmp_path / "a.npy", tmp_path / "b.npy"
    step = _Counter()
    pipe = florin.Serial(step, florin.save(first, overwrite=True), np.negative, florin.save(second))
    pipe(IMAGE)
    before = (first.stat().st_mtime_ns, np.load(first).tolist())
    with pytest.raises(OutputExistsError, match=r"b\.npy.*already exists; pass overwrite=True"):
        pipe(IMAGE * 2)
    assert step.calls == 1  # nothing computed ...
    assert (first.stat().st_mtime_ns, np.load(first).tolist()) == before  # ... and the first output untouched


def test_outputs_are_checked_first_inside_tiled_parts_too(tmp_path):
    (tmp_path / "b.h5").write_bytes(b"keep")
    step = _Counter()
    pipe = florin.Serial(florin.tile(shape=(4, 16)), florin.Serial(step, florin.save(tmp_path / "a.h5")),
                         florin.save(tmp_path / "b.h5"))
    with pytest.raises(OutputExistsError, match="b.h5"):
        pipe(IMAGE)
    assert step.calls == 0 and _left(tmp_path) == ["b.h5"]


def test_two_saves_to_one_path_and_unwritable_folders_are_refused_before_running(tmp_path, monkeypatch):
    step = _Counter()
    same = florin.Serial(step, florin.save(tmp_path / "x.npy"), florin.save(tmp_path / "x.npy", overwrite=True))
    with pytest.raises(ParameterError, match="x.npy"):
        same(IMAGE)
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.fspath(p) == os.fspath(locked)
                        else real_access(p, mode))
    pipe = florin.Serial(step, florin.save(tmp_path / "first.npy"), florin.save(locked / "second.npy"))
    with pytest.raises(OutputNotWritableError, match="locked"):
        pipe(IMAGE)
    assert step.calls == 0 and _left(tmp_path) == ["locked"]


MPI_SCRIPT = textwrap.dedent(
    """
    import sys

    import numpy as np

    import florin

    image = np.arange(8 * 64, dtype=np.float64).reshape(8, 64)
    result = florin.Serial(florin.tile(shape=(4, 16)), florin.MPI(np.negative, florin.save(sys.argv[1])))(image)
    assert (result.values == -image).all()
    """
)


@pytest.mark.mpi
def test_mpi_ranks_share_one_runs_tile_by_tile_save(tmp_path):
    """Under mpiexec every rank writes its tiles into the temporary output that rank 0 claimed and named."""
    from executor_helpers import mpi_available, run_job

    if mpi_available() is not None:
        pytest.skip(str(mpi_available()))
    script = tmp_path / "spmd.py"
    script.write_text(MPI_SCRIPT)
    proc = run_job(["mpiexec", "-n", "2", sys.executable, str(script), "out.npy"], cwd=tmp_path,
                   env={**os.environ, "NUMBA_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), -IMAGE)
    assert _left(tmp_path) == ["out.npy", "out.npy.json", "spmd.py"]
