"""The florin CLI on phantom data: segment, run, demo, preview, and a table of bad invocations."""

import os
import subprocess
import sys

import numpy as np
import pytest

import florin
from florin.cli import main
from florin.data import phantom


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    ph = phantom((20, 96, 96), seed=3)
    path = root / "in.tif"
    florin.io.write(path, florin.as_volume(ph.image, spacing=(1.0, 0.5, 0.5), units="um"))
    return root, path, ph


def test_bare_segment_writes_a_label_volume(sample, tmp_path):
    _, path, ph = sample
    out = tmp_path / "labels.tif"
    assert main(["segment", str(path), "-o", str(out)]) == 0
    labels = florin.io.read(out).values
    assert labels.shape == ph.image.shape and labels.max() > 5
    # labels are 1..N without gaps
    assert set(np.unique(labels)) == set(range(int(labels.max()) + 1))


def test_segment_with_classes_objects_and_mask(sample, tmp_path):
    _, path, ph = sample
    out, csv, mask = tmp_path / "classes.tif", tmp_path / "objects.csv", tmp_path / "mask.tif"
    code = main(["segment", str(path), "-o", str(out), "--shape", "10,32,32", "--threshold", "30",
                 "--tile", "10,48,48", "--stride", "10,32,32", "--min-size", "20",
                 "--class", "cell:area=150..4000,depth=..16,height=7..26,width=7..26", "--class", "vasculature",
                 "--objects", str(csv), "--mask", str(mask)])
    assert code == 0
    classes = florin.io.read(out)
    assert classes.attrs["classes"] == {"1": "cell", "2": "vasculature"}
    import pandas as pd

    table = pd.read_csv(csv)
    assert {"label", "area", "class_name"} <= set(table.columns)
    assert set(table["class_name"]) <= {"cell", "vasculature"}
    m = florin.io.read(mask).values
    truth = ph.labels > 0
    assert 2 * (m & truth).sum() / (m.sum() + truth.sum()) > 0.85


def test_segment_multithread_equals_serial(sample, tmp_path):
    _, path, _ = sample
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    args = ["--shape", "10,32,32", "--tile", "10,48,48", "--stride", "10,32,32"]
    assert main(["segment", str(path), "-o", str(a), *args]) == 0
    assert main(["segment", str(path), "-o", str(b), *args, "--executor", "multithread", "-j", "2"]) == 0
    np.testing.assert_array_equal(florin.io.read(a).values, florin.io.read(b).values)


def test_run_toml_with_output_and_executor(sample, tmp_path):
    _, path, _ = sample
    import florin.morphology as morphology
    import florin.thresholding as thresholding

    pipe = florin.Serial(florin.load(), florin.tile(shape=(10, 48, 48)),
                         florin.Serial(thresholding.ndnt(shape=(5, 17, 17)), morphology.binary_opening()))
    toml = tmp_path / "p.toml"
    toml.write_text(pipe.to_toml())
    out = tmp_path / "out.npy"
    assert main(["run", str(toml), str(path), "-o", str(out), "--executor", "multithread"]) == 0
    expected = pipe(path).values
    np.testing.assert_array_equal(np.load(out), expected)
    script = tmp_path / "p.py"
    script.write_text("import florin\nimport numpy as np\npipeline = florin.Serial(np.negative)\n")
    out2 = tmp_path / "neg.npy"
    assert main(["run", str(script), str(path), "-o", str(out2)]) == 0
    np.testing.assert_array_equal(np.load(out2), -florin.io.read(path).values)


def test_demo_writes_valid_outputs(tmp_path):
    pytest.importorskip("matplotlib", reason="the demo writes previews: pip install 'florin[preview]'")
    proc = subprocess.run([sys.executable, "-m", "florin", "demo", str(tmp_path), "--size", "24,96,96"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    for name in ("volume.tif", "segmented.tiff", "labeled.tiff", "objects.csv", "preview.png", "segmented.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Dice" in proc.stdout and "true class" in proc.stdout
    dice = float(proc.stdout.split("Dice vs. ground truth:")[1].split()[0])
    assert dice >= 0.9
    assert florin.io.read(tmp_path / "labeled.tiff").attrs["classes"]
    # the demo draws exactly the picture `florin preview` draws of its files
    import matplotlib.image

    for png, result in (("preview.png", "labeled.tiff"), ("segmented.png", "segmented.tiff")):
        again = tmp_path / f"again-{png}"
        assert main(["preview", str(tmp_path / "volume.tif"), "--labels", str(tmp_path / result), "-o", str(again)]) == 0
        np.testing.assert_array_equal(matplotlib.image.imread(tmp_path / png), matplotlib.image.imread(again))


def test_preview_is_a_png(sample, tmp_path):
    pytest.importorskip("matplotlib", reason="previews need matplotlib: pip install 'florin[preview]'")
    _, path, _ = sample
    labels = tmp_path / "l.tif"
    assert main(["segment", str(path), "-o", str(labels)]) == 0
    out = tmp_path / "p.png"
    assert main(["preview", str(path), "--labels", str(labels), "-o", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    out2 = tmp_path / "m.png"
    assert main(["preview", str(path), "--montage", "4", "-o", str(out2)]) == 0
    assert out2.stat().st_size > 0


BAD = [
    # (arguments, expected exit code, text the one-line error must contain)
    (["segment", "{missing}", "-o", "{out}"], 2, "does not exist"),
    (["segment", "{input}", "-o", "{out}", "--shape", "10,0,5"], 2, "--shape"),
    (["segment", "{input}", "-o", "{out}", "--shape", "a,b"], 2, "--shape"),
    (["segment", "{input}", "-o", "{out}", "--threshold", "150"], 2, "threshold"),
    (["segment", "{input}", "-o", "{out}", "--executor", "warp"], 2, "unknown executor"),
    (["segment", "{input}", "-o", "{out}", "--class", "cell:volume=1..2"], 2, "unknown property"),
    (["segment", "{input}", "-o", "{out}", "--class", "cell:area=lots"], 2, "not a number"),
    (["segment", "{input}", "-o", "{input}"], 2, "is the input"),
    (["segment", "{input}", "-o", "{tmp}/out.xyz"], 2, "extension"),  # an unknown format is a bad parameter
    (["segment", "{input}", "-o", "{out}", "--polarity", "grey"], 2, "polarity"),
    (["segment", "{input}", "-o", "{out}", "--tile", "10,64,64", "--stride", "20,64,64"], 2, "stride"),
    (["segment", "{unreadable}", "-o", "{out}"], 1, "unreadable.tif"),
    (["segment", "{input}"], 2, "--output"),
    (["run", "{tmp}/nope.toml", "{input}"], 2, "does not exist"),
    (["preview", "{input}", "-o", "{tmp}/p.jpg"], 2, ".png"),
    (["info", "{missing}"], 2, "does not exist"),
]


@pytest.mark.parametrize("args, code, text", BAD, ids=[" ".join(a[:1] + a[2:]) for a, _, _ in BAD])
def test_bad_invocations_give_one_line_and_no_output(sample, tmp_path, args, code, text):
    root, path, _ = sample
    unreadable = tmp_path / "unreadable.tif"
    unreadable.write_bytes(b"\x00garbage")
    fill = {"missing": tmp_path / "missing.tif", "out": tmp_path / "out.tif", "input": path, "tmp": tmp_path,
            "unreadable": unreadable}
    argv = [a.format(**fill) for a in args]
    before = {p.name for p in tmp_path.iterdir()}
    proc = subprocess.run([sys.executable, "-m", "florin", *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == code, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr
    assert text in proc.stderr
    assert len(lines) == 1, proc.stderr
    assert {p.name for p in tmp_path.iterdir()} == before, "a failed run left output behind"
    assert os.path.getsize(path) > 0
