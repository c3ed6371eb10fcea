"""The CLI says what is wrong, in one line, where it printed "internal error" (issue 14 items 10 and 12)."""

import os

import numpy as np
import pytest
import tifffile

import florin
from florin.cli import _files, _segmenting, main  # the modules the commands find io.read, save_preview in


def _one_error_line(capsys, *needles):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("florin: error: ") and "internal error" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], err
    return lines[0]


# -- item 10 -----------------------------------------------------------------------------------------------------
def test_preview_of_a_volume_without_voxels(tmp_path, capsys):
    path = tmp_path / "empty.npy"
    np.save(path, np.zeros((0, 5, 5), np.uint8))
    assert main(["preview", str(path), "-o", str(tmp_path / "p.png")]) == 2
    _one_error_line(capsys, "(0, 5, 5)")
    assert not (tmp_path / "p.png").exists()


def test_preview_into_a_read_only_folder_fails_before_reading(tmp_path, capsys, monkeypatch):
    path = tmp_path / "v.npy"
    np.save(path, np.zeros((4, 8, 8), np.uint8))
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # Reported read-only whoever runs the test (root ignores chmod).
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.fspath(p) == os.fspath(locked)
                        else real_access(p, mode))
    monkeypatch.setattr(_files, "read", lambda *a, **k: pytest.fail("read before the output was checked"))
    assert main(["preview", str(path), "-o", str(locked / "p.png")]) == 1
    _one_error_line(capsys, "locked", "not writable")
    assert not any(locked.iterdir())


def test_an_operating_system_refusal_is_its_reason_not_an_internal_error(tmp_path, capsys, monkeypatch):
    # What the system refuses late (a read-only mount, a full disk) is its own reason, not "internal error".
    path = tmp_path / "v.npy"
    np.save(path, np.zeros((4, 8, 8), np.uint8))
    out = tmp_path / "p.png"

    def refuse(target, *args, **kwargs):
        raise PermissionError(13, "Permission denied", os.fspath(target))

    monkeypatch.setattr(_segmenting, "save_preview", refuse)  # where the CLI finds it
    assert main(["preview", str(path), "-o", str(out)]) == 1
    _one_error_line(capsys, "Permission denied", "p.png")


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        ("import florin\nx = 1\nraise ValueError('bad config')\npipeline = florin.Serial()\n", 3,
         "ValueError: bad config"),
        ("import florin\npipeline = florin.Serial(\n  x = = 3\n", 2, "SyntaxError"),
        ("import florin\nif True:\npipeline = florin.Serial()\n", 3, "IndentationError"),
        ("import florin\n\n\nimport no_such_module_for_florin\n", 4, "ModuleNotFoundError"),
        ("import sys\nsys.exit(3)\n", 2, "SystemExit"),
    ],
)
def test_run_of_a_python_file_that_fails_names_its_file_line_and_message(tmp_path, capsys, source, line, message):
    script = tmp_path / "pipe.py"
    script.write_text(source)
    vol = tmp_path / "v.npy"
    np.save(vol, np.zeros((4, 8, 8), np.uint8))
    assert main(["run", str(script), str(vol), "-o", str(tmp_path / "out.npy")]) == 1
    _one_error_line(capsys, f"pipe.py, line {line}", message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.py", "v.npy"]


def test_segment_checks_dimensions_when_loading(tmp_path, capsys, monkeypatch):
    path = tmp_path / "line.npy"
    np.save(path, np.arange(10, dtype=np.uint8))
    import florin.thresholding

    monkeypatch.setattr(florin.Pipeline, "__call__", lambda *a, **k: pytest.fail("the pipeline ran"))
    assert main(["segment", str(path), "-o", str(tmp_path / "out.tif")]) == 2
    _one_error_line(capsys, "line.npy", "(10,)", "2-D")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["line.npy"]


def test_truncated_tiff_is_one_line_without_tifffile_warnings(tmp_path, capsys):
    full = tmp_path / "full.tif"
    tifffile.imwrite(full, np.arange(8 * 64 * 64, dtype=np.uint32).reshape(8, 64, 64).astype(np.uint8))
    data = full.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 3])
    for command in (["info", str(cut)], ["segment", str(cut), "-o", str(tmp_path / "o.tif")]):
        assert main(command) == 1
        _one_error_line(capsys, "cut.tif", "truncated")
    assert not (tmp_path / "o.tif").exists()


# -- item 12 -----------------------------------------------------------------------------------------------------
@pytest.fixture
def small(tmp_path):
    path = tmp_path / "v.npy"
    np.save(path, np.random.default_rng(0).random((6, 16, 16)).astype(np.float32))
    return path


@pytest.mark.parametrize("spec", ["cell area=1..9", "cell,area=1..9", "area=1..9"])
def test_class_without_a_colon_is_refused(small, tmp_path, capsys, spec):
    assert main(["segment", str(small), "-o", str(tmp_path / "o.tif"), "--class", spec]) == 2
    _one_error_line(capsys, "--class", "colon")
    assert not (tmp_path / "o.tif").exists()


def test_stride_without_tile_is_refused(small, tmp_path, capsys):
    assert main(["segment", str(small), "-o", str(tmp_path / "o.tif"), "--stride", "3,8,8"]) == 2
    _one_error_line(capsys, "--stride", "--tile")
    assert not (tmp_path / "o.tif").exists()


def test_rgb_tiff_colour_axis_is_not_a_spatial_axis(tmp_path, capsys):
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8), photometric="rgb")
    vol = florin.io.read(rgb)
    assert vol.dims == ("y", "x", "c")
    assert main(["segment", str(rgb), "-o", str(tmp_path / "o.tif")]) == 2
    _one_error_line(capsys, "rgb.tif", "colour axis")
    # the library refuses too: morphology, labelling and NDNT would use it as a third spatial axis
    mask = vol > 128
    for op in (florin.conncomp.label, florin.morphology.binary_opening, florin.morphology.remove_small_objects,
               florin.thresholding.ndnt):
        with pytest.raises(florin.errors.ParameterError, match="colour axis"):
            op(mask if op is not florin.thresholding.ndnt else vol)
    florin.conncomp.label(mask.isel(c=0))  # one channel is fine


def _folder(path, arrays):
    path.mkdir()
    for i, array in enumerate(arrays):
        tifffile.imwrite(path / f"s{i}.tif", array)
    return path


def test_info_on_a_slice_folder_with_mixed_shapes_fails_like_segment(tmp_path, capsys):
    folder = _folder(tmp_path / "slices", [np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8)])
    assert main(["info", str(folder)]) == 1
    _one_error_line(capsys, "s1.tif", "(8, 9)", "same shape")
    assert main(["segment", str(folder), "-o", str(tmp_path / "o.tif")]) == 1
    _one_error_line(capsys, "s1.tif")


def test_folder_of_3d_tiffs_is_not_read_as_a_4d_stack(tmp_path, capsys):
    folder = _folder(tmp_path / "volumes", [np.zeros((4, 8, 8), np.uint8), np.ones((4, 8, 8), np.uint16)])
    assert main(["info", str(folder)]) == 1
    _one_error_line(capsys, "s0.tif", "(4, 8, 8)", "2-D slices")
    with pytest.raises(florin.errors.InputFileError, match="2-D slices"):
        florin.io.read(folder)


def test_slices_with_mixed_dtypes_are_refused(tmp_path):
    folder = _folder(tmp_path / "slices", [np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint16)])
    with pytest.raises(florin.errors.InputFileError, match="uint16"):
        florin.io.read(folder)


# -- item 13 -----------------------------------------------------------------------------------------------------
def test_segment_warns_in_one_line_when_no_object_matches_a_bounded_class(tmp_path, capsys):
    from florin.data import phantom

    path = tmp_path / "v.npy"
    np.save(path, phantom((16, 48, 48), seed=0).image)
    out = tmp_path / "classes.tif"
    assert main(["-q", "segment", str(path), "-o", str(out), "--min-size", "4",
                 "--class", "huge:area=1000000..", "--class", "rest"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("florin: warning: classify(): none of the "), err
    assert "huge (area 1e+06..): 0" in lines[0] or "huge (area 1000000..): 0" in lines[0], err
    assert "rest: " in lines[0] and "properties seen: area " in lines[0], err
    assert out.exists()


def test_a_1d_volume_written_as_tiff_is_a_clear_format_error(tmp_path, capsys):
    with pytest.raises(florin.errors.FormatError, match="2 or more dims"):
        florin.io.write(tmp_path / "line.tif", np.arange(5))
    path = tmp_path / "line.npy"
    np.save(path, np.arange(10, dtype=np.uint8))
    toml = tmp_path / "p.toml"
    toml.write_text(florin.Serial(florin.load(), np.negative).to_toml())
    assert main(["run", str(toml), str(path), "-o", str(tmp_path / "out.tif")]) == 1
    _one_error_line(capsys, "out.tif", "2 or more dims")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["line.npy", "p.toml"]
