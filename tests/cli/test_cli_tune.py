"""``florin tune`` and ``florin segment --auto`` on a small phantom (issue 19 items 2 and 3)."""

import numpy as np
import pytest

import florin
from florin.cli import main
from florin.data import phantom
from florin.tuning import score_masks


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    ph = phantom((16, 64, 64), seed=3, n_cells=12)
    volume = root / "volume.tif"
    florin.io.write(volume, florin.as_volume(ph.image))
    annotation = np.zeros(ph.image.shape, np.uint8)
    for z in (4, 8, 12):
        annotation[z] = np.where(ph.labels[z] > 0, 2, 1)
    path = root / "annotation.tif"
    florin.io.write(path, florin.as_volume(annotation))
    return root, volume, path, annotation, ph


def test_tune_writes_a_pipeline_that_run_runs_unchanged(sample, tmp_path, capsys):
    _, volume, annotation, _, ph = sample
    toml, report, html, out = tmp_path / "pipeline.toml", tmp_path / "report.png", tmp_path / "r.html", tmp_path / "o.tif"
    assert main(["tune", str(volume), "--annotation", str(annotation), "-o", str(toml), "--report", str(report),
                 "--budget", "30"]) == 0
    printed = capsys.readouterr().out
    assert "top configurations" in printed and "held-out" in printed and " 1. 0.9" in printed
    assert f"florin run {toml} {volume}" in printed
    assert report.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["run", str(toml), str(volume), "-o", str(out)]) == 0
    labels = florin.io.read(out).values
    assert labels.shape == ph.image.shape and score_masks(labels > 0, ph.labels > 0) > 0.95
    # under another executor (tests/test_tuning.py runs the file under every executor)
    other = tmp_path / "multithread.tif"
    assert main(["run", str(toml), str(volume), "-o", str(other), "--executor", "multithread", "-j", "2"]) == 0
    np.testing.assert_array_equal(florin.io.read(other).values, labels)
    assert main(["tune", str(volume), "--annotation", str(annotation), "-o", str(toml), "--report", str(html),
                 "--budget", "5", "--overwrite"]) == 0
    assert "data:image/png;base64," in html.read_text() and "top configurations" in html.read_text()


def _bad(annotation, kind):
    a = annotation.copy()
    if kind == "wrong-shape":
        return a[:, :32]
    if kind == "no-foreground":
        return np.where(a == 2, 1, a).astype(np.uint8)
    if kind == "no-background":
        return np.where(a == 1, 0, a).astype(np.uint8)
    return np.where(a == 2, 5, a).astype(np.uint8)


@pytest.mark.parametrize(("kind", "message"), [
    ("wrong-shape", "florin: error: annotation: shape (16, 32, 64) differs from the volume's (16, 64, 64)"),
    ("no-foreground", "florin: error: annotation: no foreground voxels (value 2)"),
    ("no-background", "florin: error: annotation: no background voxels (value 1)"),
    ("other-values", "florin: error: annotation: values must be 0 (unlabeled), 1 (background) or 2 (foreground), "
                     "found 5"),
])
def test_bad_annotations_exit_2_with_one_line(sample, tmp_path, capsys, kind, message):
    _, volume, _, annotation, _ = sample
    path = tmp_path / "bad.tif"
    florin.io.write(path, florin.as_volume(_bad(annotation, kind)))
    assert main(["tune", str(volume), "--annotation", str(path), "-o", str(tmp_path / "p.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "p.toml").exists()


def test_tune_usage_errors_exit_2(sample, tmp_path, capsys):
    _, volume, annotation, _, _ = sample
    assert main(["tune", str(volume), "--annotation", str(annotation), "-o", str(tmp_path / "p.json")]) == 2
    assert "--output must be a .toml pipeline file" in capsys.readouterr().err
    assert main(["tune", str(volume), "--annotation", str(tmp_path / "missing.tif"), "-o", str(tmp_path / "p.toml")]) == 2
    assert "--annotation" in capsys.readouterr().err
    assert main(["tune", str(volume), "-o", str(tmp_path / "p.toml"), "--report", str(tmp_path / "r.png")]) == 2
    assert "--report needs --annotation or --labels" in capsys.readouterr().err


def test_tune_without_annotation_estimates_and_prints_the_parameters(sample, tmp_path, capsys):
    _, volume, _, _, ph = sample
    toml = tmp_path / "auto.toml"
    assert main(["tune", str(volume), "-o", str(toml), "--tile", "none"]) == 0
    printed = capsys.readouterr().out
    assert "polarity=dark" in printed and "estimated without annotation" in printed
    labels = florin.Pipeline.from_toml(toml)(ph.image).values
    assert score_masks(labels > 0, ph.labels > 0) > 0.8


def test_segment_auto_finds_bright_nuclei_larger_than_the_default_window(tmp_path, capsys):
    big = phantom((24, 96, 96), seed=2, n_cells=10, n_vessels=1, cell_radius=((5, 7), (9, 12), (9, 12)))
    volume = tmp_path / "nuclei.tif"
    florin.io.write(volume, florin.as_volume((65535 - big.image).astype(np.uint16)))
    truth = big.labels > 0
    scores = {}
    for name, extra in (("default", []), ("bright", ["--polarity", "bright"]), ("auto", ["--auto"])):
        out = tmp_path / f"{name}.tif"
        assert main(["segment", str(volume), "-o", str(out), *extra]) == 0
        scores[name] = score_masks(florin.io.read(out).values > 0, truth)
    printed = capsys.readouterr().out
    assert "auto: --polarity bright --shape " in printed
    assert scores["auto"] > 0.9 and scores["auto"] > max(scores["default"], scores["bright"]) + 0.3
    # an option given explicitly wins over the estimate
    assert main(["segment", str(volume), "-o", str(tmp_path / "t.tif"), "--auto", "--threshold", "0.3"]) == 0
    assert "--threshold 0.3 " in capsys.readouterr().out
