import subprocess
import sys

import numpy as np

import florin
from florin.cli import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert florin.__version__ in capsys.readouterr().out


def test_info_shows_shape_dtype_spacing_format(tmp_path, capsys):
    path = tmp_path / "v.tif"
    florin.io.write(path, florin.as_volume(np.zeros((3, 4, 5), np.uint16), spacing=(2, 1, 1), units="um"))
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "(3, 4, 5)" in out and "uint16" in out and "(2.0, 1.0, 1.0) um" in out and "tiff" in out


def test_library_errors_are_one_line_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "florin", "info", str(tmp_path / "missing.tif")],
                          capture_output=True, text=True)
    assert proc.returncode == 2  # a missing input is a usage error
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing.tif" in lines[0] and "Traceback" not in proc.stderr


def test_debug_shows_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "florin", "--debug", "info", str(tmp_path / "missing.tif")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_usage_error_exits_2(capsys):
    assert main(["info"]) == 2
    assert main(["no-such-command"]) == 2


def test_formats_and_ops(capsys):
    assert main(["formats"]) == 0
    assert "tiff" in capsys.readouterr().out
    assert main(["ops"]) == 0
    out = capsys.readouterr().out
    assert "thresholding.ndnt(*, shape=None, threshold=0.25, polarity='dark'" in out
