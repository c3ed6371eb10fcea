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
    from florin.cli import _files, main

    path = tmp_path / "v.npy"
    np.save(path, np.zeros((4, 8, 8), np.uint16))

    def interrupted_read(*args, **kwargs):
        _signals._pending = signal.SIGINT  # as _signals' handler records it
        raise ModuleNotFoundError("No module named 'version'")

    monkeypatch.setattr(_files, "read", interrupted_read)  # where the CLI's commands find it
    assert main(["info", str(path)]) == 130
    assert capsys.readouterr().err.strip() == "florin: interrupted"
    # without a signal, the same error is an internal error, as before
    monkeypatch.setattr(_files, "read", lambda *a, **k: (_ for _ in ()).throw(ModuleNotFoundError("x")))
    assert main(["info", str(path)]) == 1
    assert "internal error: ModuleNotFoundError" in capsys.readouterr().err


SWALLOWED = """
import signal
import sys
import time

import florin


class SignalDuringImport:
    # multiprocess imports dill inside a bare `except:` that falls back to pickle: SIGTERM arriving then is swallowed
    def find_spec(self, name, path=None, target=None):
        if name == "dill.__info__":
            sys.meta_path.remove(self)
            open({marker!r}, "w").close()
            signal.raise_signal(signal.SIGTERM)
        return None


sys.meta_path.insert(0, SignalDuringImport())


def slow(tile):
    time.sleep(0.05)
    return -tile


pipeline = florin.Serial(florin.load(), florin.tile(shape=(8, 64, 64)), florin.Multiprocess(slow, florin.save({out!r})))
"""


def test_a_signal_a_library_swallows_still_stops_the_run_before_its_output_is_committed(tmp_path, big_input):
    """SIGTERM during the first Multiprocess map's import of dill used to be lost: the run went on, committed out.h5
    and exited 143 (seen under load as test_a_signal_to_the_whole_process_group_... leaving ['out.h5'])."""
    outdir, marker = tmp_path / "out", tmp_path / "signalled"
    outdir.mkdir()
    pipe = tmp_path / "p.py"
    pipe.write_text(SWALLOWED.format(marker=str(marker), out=str(outdir / "out.h5")))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.run([sys.executable, "-m", "florin", "-q", "run", str(pipe), str(big_input)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert marker.exists(), "the signal was not delivered during dill's import (is dill imported earlier now?)"
    assert (proc.returncode, proc.stderr.strip()) == EXPECTED[signal.SIGTERM], proc.stderr
    assert os.listdir(outdir) == []


@pytest.fixture
def swallowed_signal():
    """Inside the CLI's signal handling, a SIGTERM that arrived and whose exception a library swallowed."""
    from florin import _signals

    with _signals.install():
        _signals._pending = signal.SIGTERM  # what the handler records before it raises
        yield
        assert _signals.received() == signal.SIGTERM


def test_no_output_is_put_in_place_after_a_swallowed_signal(tmp_path, swallowed_signal):
    from florin._signals import Terminated

    volume = np.arange(24, dtype=np.uint16).reshape(2, 3, 4)
    with pytest.raises(Terminated):
        florin.io.write(tmp_path / "whole.npy", volume)
    out = florin.io.create(tmp_path / "regions.h5", like=volume)
    out[...] = volume
    with pytest.raises(Terminated):
        out.commit()
    out.abort()
    assert os.listdir(tmp_path) == []


def test_a_swallowed_signal_stops_a_tiled_run_after_the_item_in_progress(tmp_path, capsys):
    from florin.cli import main

    np.save(tmp_path / "in.npy", np.arange(8 * 16 * 16, dtype=np.float64).reshape(8, 16, 16))
    seen = tmp_path / "seen.txt"
    pipe = tmp_path / "p.py"
    pipe.write_text(SWALLOWING.format(seen=str(seen), out=str(tmp_path / "out" / "out.h5")))
    assert main(["-q", "run", str(pipe), str(tmp_path / "in.npy")]) == 143
    assert capsys.readouterr().err.strip() == "florin: terminated"
    assert seen.read_text() == "x"  # stopped after the first of the 8 tiles
    assert os.listdir(tmp_path / "out") == []


SWALLOWING = """
import signal

import florin
from florin import _signals


def swallowing(tile):
    with open({seen!r}, "a") as f:
        f.write("x")
    _signals._pending = signal.SIGTERM  # the handler ran; a library's `except:` ate its Terminated
    return -tile


pipeline = florin.Serial(florin.load(), florin.tile(shape=(4, 8, 8)), florin.Serial(swallowing, florin.save({out!r})))
"""


IN_THE_WINDOW = """
import os
import signal

import numpy as np

import florin
from florin.executors import _processes

worker_main = _processes._worker_main


def signalled_worker_main(*args):  # in the new worker, before its own handlers are set: the window
    os.killpg(0, signal.{signal})
    worker_main(*args)


_processes._worker_main = signalled_worker_main
pipeline = florin.Serial(florin.load(), florin.tile(shape=(4, 8, 8)), florin.Multiprocess(np.negative, workers=2),
                         florin.save({out!r}))
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_group_before_a_new_worker_set_its_handlers_stops_the_run_once(tmp_path, signum):
    """A signal between fork() and the worker's own handlers ran the CLI's handlers in the worker: a traceback
    ("Process florin-worker: ... Terminated"). Workers now start with both signals blocked."""
    outdir = tmp_path / "out"
    outdir.mkdir()
    np.save(tmp_path / "in.npy", np.zeros((8, 16, 16)))
    pipe = tmp_path / "p.py"
    pipe.write_text(IN_THE_WINDOW.format(signal=signum.name, out=str(outdir / "out.npy")))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.run([sys.executable, "-m", "florin", "-q", "run", str(pipe), str(tmp_path / "in.npy")],
                          capture_output=True, text=True, env=env, timeout=120, start_new_session=True)
    assert (proc.returncode, proc.stderr.strip()) == EXPECTED[signum], proc.stderr
    assert os.listdir(outdir) == []


def test_a_signal_as_the_command_returns_is_reported_in_one_line(tmp_path, monkeypatch, capsys):
    from florin import cli

    def returns_signalled(argv):
        os.kill(os.getpid(), signal.SIGTERM)  # the handler raises wherever Python checks next
        for _ in range(1000):
            pass
        return 0

    monkeypatch.setattr(cli, "_run_app", returns_signalled)
    assert cli.main(["info", "x"]) == 143
    assert capsys.readouterr().err.strip() == "florin: terminated"


def test_once_the_outcome_is_decided_signals_are_recorded_and_not_sent_again():
    """A signal re-sent (or a late one) after install() restored the previous handlers exited -15 or printed a
    traceback."""
    from florin import _signals

    seen = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        with _signals.install():
            _signals._pending = signal.SIGINT  # the handler ran, and its interrupt was raised in a __del__:
            _signals._unraisable(type("Info", (), {"exc_value": KeyboardInterrupt()})())  # sent again in 10 ms
        time.sleep(0.05)  # it would have reached the restored handler by now
        assert seen == []
        with _signals.install():
            assert _signals.hold() is None
            os.kill(os.getpid(), signal.SIGINT)  # a late one: recorded, not raised
            time.sleep(0.01)
            assert _signals.received() == signal.SIGINT
        assert seen == [] and signal.getsignal(signal.SIGINT) is not _signals._handler
    finally:
        signal.signal(signal.SIGINT, previous)
