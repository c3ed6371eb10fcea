"""Exit codes for missing inputs, and ``--format`` for files whose extension names no format."""

import subprocess
import sys

import numpy as np
import pytest

import florin
from florin.cli import main


@pytest.fixture
def odd_tiff(tmp_path):
    """A TIFF volume under an extension florin does not know."""
    path = tmp_path / "v.tif"
    image = np.zeros((4, 16, 16), np.uint8)
    image[:, 4:12, 4:12] = 200
    florin.io.write(path, florin.as_volume(image))
    odd = tmp_path / "v.dat"
    path.rename(odd)
    return odd


@pytest.mark.parametrize("command", [["info"], ["preview", "-o", "p.png"], ["segment", "-o", "l.tif"],
                                     ["run", "pipe.toml"]])
def test_missing_input_is_a_usage_error(tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pipe.toml").write_text(florin.Serial(florin.load()).to_toml())
    assert main([*command, "missing.tif"]) == 2
    err = capsys.readouterr().err
    assert "missing.tif" in err and "does not exist" in err


def test_missing_input_exits_2_from_the_shell(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "florin", "info", str(tmp_path / "missing.tif")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_unknown_extension_suggests_format_option(odd_tiff, capsys):
    assert main(["info", str(odd_tiff)]) != 0
    assert "--format" in capsys.readouterr().err


def test_format_option_reads_an_unknown_extension(odd_tiff, tmp_path, capsys):
    assert main(["info", str(odd_tiff), "--format", "tiff"]) == 0
    assert "(4, 16, 16)" in capsys.readouterr().out
    assert main(["preview", str(odd_tiff), "-o", str(tmp_path / "p.png"), "--format", "tiff"]) == 0
    assert (tmp_path / "p.png").stat().st_size > 0
    toml = tmp_path / "pipe.toml"
    toml.write_text(florin.Serial(florin.load()).to_toml())
    assert main(["run", str(toml), str(odd_tiff), "-o", str(tmp_path / "copy.npy"), "--format", "tiff"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "copy.npy"), florin.io.read(odd_tiff, format="tiff").values)
    out = tmp_path / "labels.tif"
    assert main(["segment", str(odd_tiff), "-o", str(out), "--format", "tiff", "--min-size", "1",
                 "--polarity", "bright", "--shape", "4,16,16"]) == 0
    assert florin.io.read(out).shape == (4, 16, 16)
