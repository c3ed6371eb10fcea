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


@pytest.fixture(scope="module")
def few_objects(sample):
    """Four cells and the vessel (label 9) of the sample, as a label image file."""
    root, _, _, _, ph = sample
    assert ph.object_classes.tolist() == [1] * 8 + [2]
    path = root / "objects.tif"
    florin.io.write(path, florin.as_volume(np.where(np.isin(ph.labels, [1, 2, 3, 4, 9]), ph.labels, 0).astype(np.uint8)))
    return path


def test_tune_classes_writes_a_pipeline_whose_run_gives_the_classes(sample, few_objects, tmp_path, capsys):
    _, volume, _, _, ph = sample
    toml, page, out = tmp_path / "classes.toml", tmp_path / "report.html", tmp_path / "classes.tif"
    assert main(["tune", str(volume), "--labels", str(few_objects), "--classes", "cell=1-4;vasculature=9",
                 "-o", str(toml), "--report", str(page), "--budget", "20"]) == 0
    printed = capsys.readouterr().out
    assert "classes: per-object accuracy 1.0000 (5/5) on searched objects" in printed
    assert "vasculature  (no bounds: every other object)" in printed and "cell " in printed
    assert "classes: per-object accuracy" in page.read_text()
    assert main(["run", str(toml), str(volume), "-o", str(out)]) == 0
    result = florin.io.read(out)
    expected = florin.Pipeline.from_toml(toml)(ph.image)  # the same file in Python
    np.testing.assert_array_equal(result.values, expected.values)
    assert expected.attrs["classes"] == {"1": "cell", "2": "vasculature"}
    # every object of the volume (5 of 9 annotated) gets its class
    for i, truth in enumerate(ph.object_classes, 1):
        got = expected.values[ph.labels == i]
        assert np.bincount(got[got > 0]).argmax() == truth
    other = tmp_path / "multithread.tif"
    assert main(["run", str(toml), str(volume), "-o", str(other), "--executor", "multithread", "-j", "2"]) == 0
    np.testing.assert_array_equal(florin.io.read(other).values, result.values)
    # the same classes from a file (TOML: name = [labels]; JSON: {"label": "name"} works too)
    for name, text in (("classes.toml", 'cell = [1, 2, 3, 4]\nvasculature = 9\n'),
                       ("classes.json", '{"1": "cell", "2": "cell", "3": "cell", "4": "cell", "9": "vasculature"}')):
        (tmp_path / name).write_text(text)
        assert main(["tune", str(volume), "--labels", str(few_objects), "--classes", str(tmp_path / name),
                     "-o", str(toml), "--budget", "5", "--overwrite"]) == 0
        assert "classes: per-object accuracy 1.0000 (5/5)" in capsys.readouterr().out


@pytest.mark.parametrize(("spec", "message"), [
    (";", "--classes: empty mapping; give NAME=LABELS items"),
    ("cell=1;vasculature=99", "--classes: label 99 (class 'vasculature') is not in labels; labels has 1, 2, 3, 4, 9"),
    ("cell=1-4;vasculature=", "--classes: class 'vasculature' has no annotated object (no labels)"),
    ("cell=1;cell=2", "--classes: class 'cell' is given twice"),
    ("missing.toml", "--classes 'missing.toml' does not exist"),
])
def test_bad_classes_exit_2_with_one_line_naming_the_option(sample, few_objects, tmp_path, capsys, spec, message):
    _, volume, _, _, _ = sample
    assert main(["tune", str(volume), "--labels", str(few_objects), "--classes", spec,
                 "-o", str(tmp_path / "p.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"florin: error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "p.toml").exists()


def test_classes_need_labels_on_the_command_line(sample, tmp_path, capsys):
    _, volume, annotation, _, _ = sample
    assert main(["tune", str(volume), "--annotation", str(annotation), "--classes", "cell=1",
                 "-o", str(tmp_path / "p.toml")]) == 2
    assert capsys.readouterr().err.startswith("florin: error: --classes needs --labels")
