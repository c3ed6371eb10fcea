"""Resumable runs (issue 13 item 6): killed or failed runs continue from per-tile records, with the same output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from executor_helpers import in_process_executors

import florin
import florin.conncomp as conncomp
import florin.morphology as morphology
import florin.thresholding as thresholding
from florin import tilemeta
from florin.cli import main
from florin.data import phantom
from florin.errors import OutputBusyError, ParameterError, PipelineError, ResumeError
from florin.resume import Resume, partial_folder

N_TILES = 16  # a (16, 64, 64) volume in tiles of (4, 32, 32)

# A pipeline file for `florin run`: each tile appends its index to COUNT (in whichever process computes it) and
# the tile KILL_AT kills the whole process group (SIGKILL: no clean-up at all), as a crash or an OOM kill would.
PIPELINE = '''
import os
import signal
import time

import florin
import florin.conncomp as conncomp
import florin.morphology as morphology
import florin.thresholding as thresholding
from florin import tilemeta

COUNT, KILL_AT, WHERE, SIGNAL = {count!r}, {kill_at!r}, {where!r}, signal.{signal}


def counted(tile):
    index = tilemeta.info_of(tile).index
    with open(COUNT, "a") as f:
        f.write(f"{{index}}\\n")
    if index == KILL_AT:
        time.sleep(1.0)  # the tiles already done reach the join (and its records) first
        os.killpg(os.getpgrp(), SIGNAL)
    return tile


tiled = [florin.florinate(counted)(), thresholding.ndnt(shape=(3, 9, 9)), morphology.binary_opening()]
if WHERE == "inside":  # the tiled part saves each tile (the streaming shape)
    pipeline = florin.Serial(florin.load(), florin.tile(shape=(4, 32, 32)),
                             florin.Serial(*tiled, florin.save({mask!r})),
                             conncomp.label(), florin.save({labels!r}))
else:  # the tiles are joined, then saved and labelled
    pipeline = florin.Serial(florin.load(), florin.tile(shape=(4, 32, 32)), florin.Serial(*tiled),
                             florin.save({mask!r}), conncomp.label(), florin.save({labels!r}))
'''


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    path = tmp_path_factory.mktemp("input") / "in.npy"
    np.save(path, phantom((16, 64, 64), seed=1).image)
    return path


def _florin_run(tmp_path, volume, name, *, where, executor, kill_at=None, resume=True, sig="SIGKILL"):
    """Run the counting pipeline with `florin run` in a new process group; (return code, tiles computed)."""
    out = tmp_path / name
    out.mkdir(exist_ok=True)
    mask = out / ("mask.h5" if where == "inside" else "mask.npy")
    count = out / "count"
    script = tmp_path / f"{name}-{kill_at}.py"
    script.write_text(PIPELINE.format(count=str(count), kill_at=kill_at, where=where, signal=sig, mask=str(mask),
                                      labels=str(out / "labels.npy")))
    before = count.read_text().split() if count.exists() else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, "-m", "florin", "-q", "run", str(script), str(volume), "-e", executor, "-j", "2"]
    proc = subprocess.run(args + (["--resume"] if resume else []), env=env, start_new_session=True,
                          capture_output=True, text=True, timeout=300)
    computed = count.read_text().split()[len(before):]
    return proc, [int(i) for i in computed], out, mask


@pytest.mark.parametrize("where", ["inside", "after"])
@pytest.mark.parametrize("executor", ["serial", "multiprocess"])
def test_a_run_killed_half_way_and_resumed_equals_an_uninterrupted_run(tmp_path, volume, executor, where):
    proc, computed, ref, ref_mask = _florin_run(tmp_path, volume, "reference", where=where, executor=executor,
                                                resume=False)
    assert proc.returncode == 0, proc.stderr
    assert sorted(computed) == list(range(N_TILES))

    proc, first, out, mask = _florin_run(tmp_path, volume, "out", where=where, executor=executor, kill_at=9)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    folder = partial_folder(florin.Serial(florin.save(mask)))
    assert folder.is_dir() and not (out / "labels.npy").exists()
    recorded = {int(i) for i in (folder / "part-000" / "done.log").read_text().split()}
    assert recorded and 9 not in recorded and recorded <= set(first)

    proc, second, out, mask = _florin_run(tmp_path, volume, "out", where=where, executor=executor)
    assert proc.returncode == 0, proc.stderr
    assert len(second) < N_TILES and 9 in second  # fewer tiles than a run from the start, the killed one among them
    assert set(first) | set(second) == set(range(N_TILES))
    for name in (mask.name, "labels.npy"):
        np.testing.assert_array_equal(florin.io.read(out / name).values, florin.io.read(ref / name).values)
    assert not folder.exists()  # removed when the run succeeded
    assert not [p.name for p in out.iterdir() if ".florin-" in p.name]  # nor any temporary output or claim


# -- in process: failing tiles are never recorded --------------------------------------------------
def _counting_pipeline(tmp_path, executor, *, fail_at=None, inside=False, threshold=0.25):
    """A tiled NDNT and opening whose tile ``fail_at`` raises while ``tmp_path / 'fail'`` exists."""
    count, flag = tmp_path / "count", tmp_path / "fail"

    def counted(tile):
        index = tilemeta.info_of(tile).index
        with open(count, "a") as f:
            f.write(f"{index}\n")
        if index == fail_at and flag.exists():
            raise RuntimeError(f"tile {index} failed")
        return tile

    tiled = [florin.florinate(counted)(), thresholding.ndnt(shape=(3, 9, 9), threshold=threshold),
             morphology.binary_opening()]
    if inside:
        tiled.append(florin.save(tmp_path / "mask.h5"))
        after = []
    else:
        after = [florin.save(tmp_path / "mask.npy")]
    return florin.Serial(florin.tile(shape=(4, 32, 32)), executor(*tiled), *after, conncomp.label(),
                         florin.save(tmp_path / "labels.npy"))


def _computed(tmp_path):
    path = tmp_path / "count"
    found = [int(i) for i in path.read_text().split()] if path.exists() else []
    path.unlink(missing_ok=True)
    return found


EXECUTORS = {"serial": florin.Serial, **in_process_executors()}  # Multithread, Multiprocess, Dask when installed


@pytest.mark.parametrize("inside", [False, True], ids=["joined", "saved-in-tiles"])
@pytest.mark.parametrize("name", EXECUTORS)
def test_a_failing_tile_is_never_recorded_and_the_resumed_run_computes_it(tmp_path, volume, name, inside):
    executor = EXECUTORS[name]
    data = np.load(volume)
    reference = _counting_pipeline(tmp_path / "ref", florin.Serial, inside=inside)
    (tmp_path / "ref").mkdir()
    reference(data)
    pipe = _counting_pipeline(tmp_path, executor, fail_at=6, inside=inside)
    (tmp_path / "fail").touch()
    with pytest.raises(PipelineError, match="tile 6 failed"):
        pipe(data, resume=True)
    folder = tmp_path / "mask.h5.florin-partial" if inside else tmp_path / "mask.npy.florin-partial"
    log = folder / "part-000" / "done.log"  # none when no result reached the join (an executor returning a list)
    recorded = {int(i) for i in log.read_text().split()} if log.exists() else set()
    first = _computed(tmp_path)
    assert 6 in first and 6 not in recorded and recorded <= set(first) - {6}
    if name == "serial":
        assert recorded == set(range(6))  # every tile before the failing one
    (tmp_path / "fail").unlink()
    pipe(data, resume=True)
    second = _computed(tmp_path)
    assert 6 in second and set(second) == set(range(N_TILES)) - recorded
    mask = "mask.h5" if inside else "mask.npy"
    for name in (mask, "labels.npy"):
        np.testing.assert_array_equal(florin.io.read(tmp_path / name).values,
                                      florin.io.read(tmp_path / "ref" / name).values)
    assert not folder.exists()


def test_outputs_the_interrupted_run_committed_are_not_written_again(tmp_path, volume):
    data = np.load(volume)
    calls = []

    def fail_once(image):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("after the mask")
        return image

    pipe = florin.Serial(florin.tile(shape=(4, 32, 32)), florin.Serial(thresholding.ndnt(shape=(3, 9, 9))),
                         florin.save(tmp_path / "mask.npy"), fail_once, conncomp.label(),
                         florin.save(tmp_path / "labels.npy"))
    with pytest.raises(PipelineError, match="after the mask"):
        pipe(data, resume=True)
    written = (tmp_path / "mask.npy").stat().st_mtime_ns
    result = pipe(data, resume=True)
    assert (tmp_path / "mask.npy").stat().st_mtime_ns == written
    expected = florin.Serial(thresholding.ndnt(shape=(3, 9, 9)), conncomp.label())(data)
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), expected.values)
    np.testing.assert_array_equal(result.values, expected.values)


def test_a_run_stopped_right_after_a_tiled_save_renamed_its_output_resumes(tmp_path, volume, monkeypatch):
    from florin import resume

    data = np.load(volume)
    real = resume.Part.finished

    def stop(self, kind, record=None):
        if record:  # the output is in place, its record not yet written: the process dies here
            raise KeyboardInterrupt
        return real(self, kind, record)

    monkeypatch.setattr(resume.Part, "finished", stop)
    pipe = _counting_pipeline(tmp_path, florin.Serial, inside=True)
    with pytest.raises(KeyboardInterrupt):
        pipe(data, resume=True)
    assert (tmp_path / "mask.h5").exists() and sorted(_computed(tmp_path)) == list(range(N_TILES))
    monkeypatch.setattr(resume.Part, "finished", real)
    pipe(data, resume=True)
    assert _computed(tmp_path) == []  # the saved tiles were taken as they are
    expected = _counting_pipeline(tmp_path / "ref", florin.Serial, inside=True)
    (tmp_path / "ref").mkdir()
    expected(data)
    for name in ("mask.h5", "labels.npy"):
        np.testing.assert_array_equal(florin.io.read(tmp_path / name).values,
                                      florin.io.read(tmp_path / "ref" / name).values)
    assert not [p.name for p in tmp_path.iterdir() if ".florin-" in p.name]


@pytest.mark.parametrize("inside", [False, True], ids=["joined", "saved-in-tiles"])
@pytest.mark.parametrize("name", ["serial", "multiprocess"])
def test_a_failing_tile_without_resume_leaves_no_scratch_and_no_records(tmp_path, volume, name, inside, monkeypatch):
    from florin import memory

    made = []
    real = memory.Scratch.allocate
    monkeypatch.setattr(memory.Scratch, "allocate", lambda self, *a, **k: made.append(1) or real(self, *a, **k))
    scratch = tmp_path / "scratch"
    pipe = _counting_pipeline(tmp_path, EXECUTORS[name], fail_at=6, inside=inside)
    (tmp_path / "fail").touch()
    with pytest.raises(PipelineError, match="tile 6 failed"):
        pipe(np.load(volume), memory="64KiB", scratch=scratch)
    assert made or inside  # the join was writing into scratch when the tile failed
    assert not scratch.exists() or list(scratch.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "scratch") == ["count", "fail"]  # no partial or
    # temporary output


def test_a_partial_run_of_another_pipeline_or_input_is_refused_in_one_line(tmp_path, volume):
    data = np.load(volume)
    (tmp_path / "fail").touch()
    with pytest.raises(PipelineError):
        _counting_pipeline(tmp_path, florin.Serial, fail_at=6)(data, resume=True)
    folder = tmp_path / "mask.npy.florin-partial"
    with pytest.raises(ResumeError, match="of another pipeline; remove that folder or run without --resume") as info:
        _counting_pipeline(tmp_path, florin.Serial, threshold=0.3)(data, resume=True)
    assert str(folder) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ResumeError, match="of another input"):
        _counting_pipeline(tmp_path, florin.Serial, fail_at=6)(data + 1, resume=True)
    assert (folder / "part-000" / "done.log").exists()  # a refused run touches nothing


def test_a_run_that_resumes_is_locked_and_needs_a_place_for_its_records(tmp_path):
    pipe = florin.Serial(florin.save(tmp_path / "out.npy"))
    held = Resume.start(pipe, np.zeros(3), partial_folder(pipe), budget=1 << 20)
    try:
        with pytest.raises(OutputBusyError, match="being resumed by another florin run"):
            pipe(np.zeros(3), resume=True)
    finally:
        held.close(keep=False)
    with pytest.raises(ParameterError, match="resume=True needs a place for its records"):
        florin.Serial(np.negative)(np.zeros(3), resume=True)
    with pytest.raises(ParameterError, match="resume must be True, False or a folder"):
        florin.Serial(np.negative)(np.zeros(3), resume=3)
    florin.Serial(np.negative)(np.zeros(3), resume=tmp_path / "records")  # a folder of one's own
    assert not (tmp_path / "records").exists()


def test_segment_resume_continues_after_a_failure_without_rewriting_committed_outputs(tmp_path, volume, monkeypatch):
    from florin.regions import Regions

    common = [str(volume), "--tile", "4,64,64", "--min-size", "20", "--shape", "3,9,9"]
    assert main(["-q", "segment", *common, "-o", str(tmp_path / "ref.npy"), "--mask", str(tmp_path / "ref_m.npy"),
                 "--objects", str(tmp_path / "ref.csv")]) == 0
    args = ["-q", "segment", *common, "-o", str(tmp_path / "lab.npy"), "--mask", str(tmp_path / "m.npy"),
            "--objects", str(tmp_path / "objects.csv"), "--resume"]
    real = Regions.to_csv

    def broken(self, path):
        raise OSError(28, "No space left on device", os.fspath(path))

    monkeypatch.setattr(Regions, "to_csv", broken)
    assert main(args) == 1  # the objects table is written last: the mask and labels were committed
    folder = tmp_path / "m.npy.florin-partial"
    assert set(json.loads((folder / "committed.json").read_text())) == {str(tmp_path / n) for n in ("m.npy", "lab.npy")}
    stamps = {n: (tmp_path / n).stat().st_mtime_ns for n in ("m.npy", "lab.npy")}
    assert main(args[:-1]) == 2  # without --resume they are outputs that exist
    monkeypatch.setattr(Regions, "to_csv", real)
    assert main(args) == 0
    assert {n: (tmp_path / n).stat().st_mtime_ns for n in stamps} == stamps
    for name, ref in (("lab.npy", "ref.npy"), ("m.npy", "ref_m.npy")):
        np.testing.assert_array_equal(np.load(tmp_path / name), np.load(tmp_path / ref))
    assert (tmp_path / "objects.csv").read_text() == (tmp_path / "ref.csv").read_text()
    assert not folder.exists()


def test_resume_is_refused_under_mpi_spmd(tmp_path, monkeypatch):
    from florin import _run

    monkeypatch.setattr(_run, "_agreement", lambda thunk: thunk())  # what florin.MPI installs in SPMD mode
    with pytest.raises(ParameterError, match="not available under MPI in SPMD mode"):
        florin.Serial(florin.save(tmp_path / "out.npy"))(np.zeros(3), resume=True)
    assert list(tmp_path.iterdir()) == []


FLAKY = """
import pathlib

import florin
from florin import tilemeta

FLAG = pathlib.Path({flag!r})


def flaky(tile):
    if tilemeta.info_of(tile).index == 3 and FLAG.exists():
        raise OSError("the node went down")
    return -tile


pipeline = florin.Serial(florin.load(), florin.tile(shape=(4, 32, 32)), florin.Serial(flaky))
"""


def test_run_resume_without_save_steps_keeps_its_records_beside_the_output(tmp_path, volume, capsys):
    script = tmp_path / "p.py"
    script.write_text(FLAKY.format(flag=str(tmp_path / "down")))
    (tmp_path / "down").touch()
    args = ["-q", "run", str(script), str(volume), "-o", str(tmp_path / "out.npy"), "--resume"]
    assert main(args) == 1
    assert "the node went down" in capsys.readouterr().err
    folder = tmp_path / "out.npy.florin-partial"
    assert {int(i) for i in (folder / "part-000" / "done.log").read_text().split()} == {0, 1, 2}
    (tmp_path / "down").unlink()
    assert main(args) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), -np.load(volume))
    assert not folder.exists()


def test_the_cli_help_names_resume(capsys):
    for command in ("run", "segment"):
        assert main([command, "--help"]) == 0
        assert "--resume" in capsys.readouterr().out


def test_a_join_kind_resumes_only_when_its_own_class_says_so():
    from florin.conncomp import LabelJoin
    from florin.io.written_join import WrittenJoin
    from florin.tiling import TileJoin

    class Plugin(TileJoin):  # its add() may keep state that TileJoin.restore() knows nothing of
        name = "plugin"

    class Declared(TileJoin):
        name = "declared"
        resumable = True

    assert TileJoin.resumable and WrittenJoin.resumable and LabelJoin.resumable and Declared.resumable
    assert not Plugin.resumable


def test_a_serial_run_resumes_under_multiprocess(tmp_path, volume):
    data = np.load(volume)
    (tmp_path / "fail").touch()
    with pytest.raises(PipelineError, match="tile 6 failed"):
        _counting_pipeline(tmp_path, florin.Serial, fail_at=6, inside=True)(data, resume=True)
    assert sorted(_computed(tmp_path)) == list(range(7))
    (tmp_path / "fail").unlink()
    _counting_pipeline(tmp_path, EXECUTORS["multiprocess"], fail_at=6, inside=True)(data, resume=True)
    assert sorted(_computed(tmp_path)) == list(range(6, N_TILES))  # the executor is not part of the records
    (tmp_path / "ref").mkdir()
    _counting_pipeline(tmp_path / "ref", florin.Serial, inside=True)(data)
    for name in ("mask.h5", "labels.npy"):
        np.testing.assert_array_equal(florin.io.read(tmp_path / name).values,
                                      florin.io.read(tmp_path / "ref" / name).values)


def test_a_run_stopped_by_sigterm_keeps_its_records_and_resumes(tmp_path, volume):
    """SIGTERM (a batch system's wall time): exit 143, temporary outputs and records kept for --resume."""
    proc, first, out, mask = _florin_run(tmp_path, volume, "out", where="inside", executor="serial", kill_at=9,
                                         sig="SIGTERM")
    assert proc.returncode == 143 and "florin: terminated" in proc.stderr
    folder = partial_folder(florin.Serial(florin.save(mask)))
    assert {int(i) for i in (folder / "part-000" / "done.log").read_text().split()} == set(range(9))
    assert [p for p in out.iterdir() if ".florin-tiles-" in p.name]  # the saved tiles are kept
    proc, second, out, mask = _florin_run(tmp_path, volume, "out", where="inside", executor="serial")
    assert proc.returncode == 0, proc.stderr
    assert sorted(second) == list(range(9, N_TILES))
    ref = florin.Serial(thresholding.ndnt(shape=(3, 9, 9)), morphology.binary_opening())(np.load(volume))
    np.testing.assert_array_equal(florin.io.read(mask).values, ref.values)
    assert not folder.exists()


@pytest.mark.parametrize("measure", [False, True], ids=["labels", "regions"])
@pytest.mark.parametrize("name", ["serial", "multiprocess"])
def test_labels_joined_in_the_tiled_part_resume_from_their_records(tmp_path, volume, name, measure, monkeypatch):
    from florin.conncomp import LabelJoin

    data = np.load(volume)
    count, flag = tmp_path / "count", tmp_path / "fail"

    def counted(tile):
        index = tilemeta.info_of(tile).index
        with open(count, "a") as f:
            f.write(f"{index}\n")
        if index == 6 and flag.exists():
            raise RuntimeError("tile 6 failed")
        return tile

    tiled = [florin.florinate(counted)(), thresholding.ndnt(shape=(3, 9, 9)), conncomp.label(connectivity=3)]
    tiled += [conncomp.regionprops()] if measure else []
    pipe = florin.Serial(florin.tile(shape=(4, 32, 32)), EXECUTORS[name](*tiled))
    expected = pipe(data)
    _computed(tmp_path)
    flag.touch()
    with pytest.raises(PipelineError, match="tile 6 failed"):
        pipe(data, resume=tmp_path / "records")
    recorded = {int(i) for i in (tmp_path / "records" / "part-000" / "done.log").read_text().split()}
    assert recorded and 6 not in recorded
    kept = {int(p.stem.split("-")[1]) for p in (tmp_path / "records" / "part-000").glob("tile-*.pkl")}
    assert kept == recorded  # each recorded tile's LabelTile beside its record
    _computed(tmp_path)
    flag.unlink()
    got = pipe(data, resume=tmp_path / "records")
    assert set(_computed(tmp_path)) == set(range(N_TILES)) - recorded
    if measure:
        assert got.to_dataframe().equals(expected.to_dataframe())
        got, expected = got.labels, expected.labels
    np.testing.assert_array_equal(got.values, expected.values)

    # stopped while the join rewrites its provisional labels: the records are gone, the part runs again whole
    real = LabelJoin.finish
    monkeypatch.setattr(LabelJoin, "finish", lambda self: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        pipe(data, resume=tmp_path / "records")
    assert not (tmp_path / "records" / "part-000" / "done.log").exists()
    assert not list((tmp_path / "records" / "part-000").glob("tile-*.pkl"))
    monkeypatch.setattr(LabelJoin, "finish", real)
    _computed(tmp_path)
    again = pipe(data, resume=tmp_path / "records")
    assert sorted(_computed(tmp_path)) == list(range(N_TILES))
    np.testing.assert_array_equal((again.labels if measure else again).values, expected.values)
