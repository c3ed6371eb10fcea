"""The CLI checks every output before anything is computed (issue 14, item 3)."""

import os
import subprocess
import sys

import numpy as np
import pytest

import florin
from florin.cli import main


@pytest.fixture
def volume(tmp_path):
    path = tmp_path / "v.npy"
    np.save(path, np.random.default_rng(0).random((8, 24, 24)).astype(np.float32))
    return path


def _cli(*argv):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.run([sys.executable, "-m", "florin", *map(str, argv)], capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_mask_and_output_on_one_path_is_a_usage_error(volume, tmp_path, overwrite):
    out = tmp_path / "x.tif"
    proc = _cli("segment", volume, "-o", out, "--mask", out, *overwrite)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "--mask" in proc.stderr, proc.stderr
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.npy"]


def test_objects_in_a_read_only_folder_fails_before_the_output_is_written(volume, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # The folder is reported read-only whoever runs the test (root ignores chmod).
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.fspath(p) == os.fspath(locked)
                        else real_access(p, mode))
    out = tmp_path / "labels.tif"
    assert main(["segment", str(volume), "-o", str(out), "--objects", str(locked / "o.csv")]) == 1
    assert not out.exists() and not any(locked.iterdir())


def _two_save_pipeline(tmp_path, first, second, overwrite=False):
    pipe = florin.Serial(florin.load(), np.negative, florin.save(first, overwrite=overwrite), np.negative,
                         florin.save(second, overwrite=overwrite))
    toml = tmp_path / "p.toml"
    toml.write_text(pipe.to_toml())
    return toml


def test_rerun_does_not_rewrite_the_first_output_then_fail_on_the_second(volume, tmp_path):
    first, second = tmp_path / "a.npy", tmp_path / "b.npy"
    toml = _two_save_pipeline(tmp_path, first, second)
    second.write_bytes(b"keep")
    assert main(["run", str(toml), str(volume)]) == 1
    assert not first.exists() and second.read_bytes() == b"keep"
    assert {p.name for p in tmp_path.iterdir()} == {"v.npy", "p.toml", "b.npy"}


def test_run_overwrite_reaches_the_pipelines_save_steps(volume, tmp_path):
    first, second = tmp_path / "a.npy", tmp_path / "b.npy"
    toml = _two_save_pipeline(tmp_path, first, second)
    first.write_bytes(b"old")
    second.write_bytes(b"old")
    assert main(["run", str(toml), str(volume), "--overwrite"]) == 0
    data = np.load(volume)
    np.testing.assert_array_equal(np.load(first), -data)
    np.testing.assert_array_equal(np.load(second), data)


def test_run_output_sharing_a_save_steps_path_is_a_usage_error(volume, tmp_path):
    first, second = tmp_path / "a.npy", tmp_path / "b.npy"
    toml = _two_save_pipeline(tmp_path, first, second)
    assert main(["run", str(toml), str(volume), "-o", str(first)]) == 2
    assert not first.exists() and not second.exists()
