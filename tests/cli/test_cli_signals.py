"""Ctrl-C and SIGTERM during writes (issue 14, items 6 and 14).

A run stopped by SIGINT or SIGTERM exits with 130 or 143 and one line, removes its temporary
files (whole-volume writes and tile-by-tile saves alike) and leaves nothing under the output's
name; workers of a stopped or killed parent print no tracebacks.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import florin

EXPECTED = {signal.SIGINT: (130, "florin: interrupted"), signal.SIGTERM: (143, "florin: terminated")}

TILED = """
import time

import florin


def slow(tile):
    time.sleep(0.05)
    return -tile


pipeline = florin.Serial(florin.load(), florin.tile(shape=(8, 64, 64)), florin.{executor}(slow, florin.save({out!r})))
"""


@pytest.fixture(scope="module")
def big_input(tmp_path_factory):
    """32 MiB of random doubles: writing them as gzip-compressed HDF5 takes seconds."""
    path = tmp_path_factory.mktemp("input") / "in.npy"
    np.save(path, np.random.default_rng(0).random((64, 256, 256)))
    return path


def _start(tmp_path, case, big_input, *, session=False):
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / (case if case.startswith("out.") else "out.h5")
    if case.startswith("out."):  # the pipeline's result written whole by -o
        pipe = tmp_path / "p.toml"
        pipe.write_text(florin.Serial(florin.load(), np.negative).to_toml())
        extra = ["-o", str(out)]
    else:
        pipe = tmp_path / "p.py"
        pipe.write_text(TILED.format(executor=case, out=str(out)))
        extra = []
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-m", "florin", "-q", "run", str(pipe), str(big_input), *extra],
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=session)
    deadline = time.monotonic() + 120
    while not any(".florin-" in name for name in os.listdir(outdir)):  # the temporary output appeared
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "no temporary output appeared"
        time.sleep(0.005)
    return proc, outdir


@pytest.mark.parametrize("case", ["out.h5", "out.zarr", "Serial", "Multiprocess"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_a_write_stops_the_run_and_removes_its_temporary_files(tmp_path, big_input, case, signum):
    proc, outdir = _start(tmp_path, case, big_input)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    code, line = EXPECTED[signum]
    assert (proc.returncode, err.strip()) == (code, line), err  # no "Exception ignored", no worker traceback
    assert os.listdir(outdir) == []  # no temporary file, no claim, nothing under the output's name


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_whole_process_group_stops_parent_and_workers_quietly(tmp_path, big_input, signum):
    """Ctrl-C in a terminal (or a batch system's SIGTERM) reaches the workers too."""
    proc, outdir = _start(tmp_path, "Multiprocess", big_input, session=True)
    os.killpg(proc.pid, signum)
    _, err = proc.communicate(timeout=120)
    assert (proc.returncode, err.strip()) == EXPECTED[signum], err
    assert os.listdir(outdir) == []


def test_workers_of_a_killed_parent_exit_without_a_traceback(tmp_path, big_input):
    proc, outdir = _start(tmp_path, "Multiprocess", big_input)
    proc.kill()
    _, err = proc.communicate(timeout=120)  # returns once the workers, which share stderr, have exited too
    assert proc.returncode == -signal.SIGKILL
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_an_error_a_signal_turned_into_is_reported_as_the_interrupt(tmp_path, monkeypatch, capsys):
    """A library's bare ``except:`` can turn the KeyboardInterrupt into another error (multiprocess's import does:
    ModuleNotFoundError 'version'); the run was interrupted, and says so in one line."""
    from florin import _signals
    from florin.cli import main

    path = tmp_path / "v.npy"
    np.save(path, np.zeros((4, 8, 8), np.uint16))

    def interrupted_read(*args, **kwargs):
        _signals._pending = signal.SIGINT  # as _signals' handler records it
        raise ModuleNotFoundError("No module named 'version'")

    monkeypatch.setattr(florin.io, "read", interrupted_read)
    assert main(["info", str(path)]) == 130
    assert capsys.readouterr().err.strip() == "florin: interrupted"
    # without a signal, the same error is an internal error, as before
    monkeypatch.setattr(florin.io, "read", lambda *a, **k: (_ for _ in ()).throw(ModuleNotFoundError("x")))
    assert main(["info", str(path)]) == 1
    assert "internal error: ModuleNotFoundError" in capsys.readouterr().err
