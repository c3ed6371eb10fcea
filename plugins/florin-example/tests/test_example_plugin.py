"""The template plugin, installed, through florin's public API only.

Run from the repository root with ``python -m pytest plugins/florin-example``
after ``pip install -e plugins/florin-example``.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from florin_example import Chunked, read_raw, sauvola, write_raw
from skimage.filters import threshold_sauvola

import florin
import florin.morphology as morphology
from florin.errors import FormatError, OperatorBindError, ParameterError, PipelineError
from florin.registry import get_registry


@pytest.fixture
def volume():
    """An integer 3-D volume with dark blobs on an uneven bright background."""
    rng = np.random.default_rng(7)
    z, y, x = np.mgrid[:12, :40, :52]
    image = 140 + x + rng.normal(0, 6, x.shape)
    for cz, cy, cx in [(6, 10, 12), (5, 28, 30), (7, 20, 44)]:
        image[(z - cz) ** 2 / 9 + (y - cy) ** 2 / 25 + (x - cx) ** 2 / 25 <= 1] -= 90
    return np.clip(image, 0, 255).astype(np.uint8)


# -- registration through the hooks -------------------------------------------------------------
def test_the_plugin_registers_an_operator_a_format_and_an_executor():
    registry = get_registry()
    info = registry.plugins["florin-example"]
    assert info.status == "loaded", info.error
    assert info.registered == {
        "operators": ["example.sauvola"],
        "executors": ["chunked"],
        "formats": ["example-raw"],
        "commands": [],
    }
    assert florin.operator("example.sauvola") is sauvola
    assert registry.executor("chunked") is Chunked and florin.Chunked is Chunked
    assert registry.format_for_path("volume.raw").name == "example-raw"


def test_florin_plugins_lists_the_template():
    proc = subprocess.run([sys.executable, "-m", "florin", "plugins"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "florin-example 0.1.0.dev0 [loaded]" in out
    assert "example.sauvola" in out and "chunked" in out and "example-raw" in out


# -- the operator ---------------------------------------------------------------------------------
def test_sauvola_matches_scikit_image(volume):
    expected = volume <= threshold_sauvola(volume, window_size=(3, 9, 9), k=0.2, r=128.0)
    result = sauvola(volume, window_size=(3, 9, 9))
    np.testing.assert_array_equal(result, expected)
    bright = sauvola(volume, window_size=5, polarity="bright")
    np.testing.assert_array_equal(bright, volume > threshold_sauvola(volume, window_size=5, r=128.0))


def test_sauvola_declares_half_its_window_as_halo():
    assert sauvola(window_size=(3, 9, 15)).halo((12, 40, 52)) == (1, 4, 7)
    assert sauvola().halo((40, 52)) == (7, 7)


def test_sauvola_tiled_equals_whole_volume(volume):
    step = sauvola(window_size=(5, 11, 11), k=0.25)
    whole = florin.Serial(step)(volume)
    tiled = florin.Serial(florin.tile(shape=(6, 16, 16), stride=(4, 12, 12)), florin.Serial(step))(volume)
    assert tiled.dims == whole.dims
    np.testing.assert_array_equal(tiled.values, whole.values)
    assert 0 < whole.values.sum() < whole.size


def test_sauvola_parameters_are_checked():
    with pytest.raises(OperatorBindError, match="did you mean `window_size`"):
        sauvola(window_sise=5)
    with pytest.raises(ParameterError, match="odd"):
        sauvola(np.zeros((4, 4), np.uint8), window_size=4)
    with pytest.raises(ParameterError, match="polarity"):
        sauvola(np.zeros((4, 4), np.uint8), polarity="grey")


# -- the format -------------------------------------------------------------------------------------
def test_raw_format_round_trips_voxels_dims_spacing_and_attrs(tmp_path, volume):
    vol = florin.as_volume(volume, spacing=(2.0, 0.5, 0.5), attrs={"sample": "phantom", "skip": object()})
    florin.io.write(tmp_path / "vol.raw", vol)
    back = florin.io.read(tmp_path / "vol.raw")
    np.testing.assert_array_equal(back.values, volume)
    assert back.dtype == volume.dtype and back.dims == ("z", "y", "x")
    assert florin.get_spacing(back) == (2.0, 0.5, 0.5)
    assert back.attrs["sample"] == "phantom" and "skip" not in back.attrs
    assert isinstance(back.data, np.memmap)  # lazy: tiles are read on demand
    eager = read_raw(tmp_path / "vol.raw", mmap=False)
    np.testing.assert_array_equal(eager.values, volume)


def test_raw_format_rejects_other_files(tmp_path):
    (tmp_path / "other.raw").write_bytes(b"\x00\x01not json\n")
    with pytest.raises(FormatError, match="not a valid .raw file"):
        florin.io.read(tmp_path / "other.raw")


def test_raw_writes_go_through_florins_atomic_save(tmp_path, volume):
    florin.Serial(florin.save(tmp_path / "out.raw"))(volume)
    assert [p.name for p in tmp_path.iterdir()] == ["out.raw"]
    write_raw(tmp_path / "direct.raw", volume)
    np.testing.assert_array_equal(read_raw(tmp_path / "direct.raw").values, volume)


# -- the executor ----------------------------------------------------------------------------------
def test_chunked_equals_serial_and_runs_in_chunks(volume):
    def build(executor, **options):
        return florin.Serial(
            florin.tile(shape=(6, 16, 16), stride=(6, 12, 12)),
            executor(sauvola(window_size=(3, 9, 9)), morphology.binary_opening(), **options),
        )

    expected = build(florin.Serial)(volume)
    chunked = Chunked(sauvola(window_size=(3, 9, 9)), morphology.binary_opening(), chunk_size=4, workers=2)
    pipeline = florin.Serial(florin.tile(shape=(6, 16, 16), stride=(6, 12, 12), blocks="tiles"), chunked)
    np.testing.assert_array_equal(pipeline(volume).values, expected.values)
    n_tiles = 2 * 4 * 5
    assert chunked.last_chunks == [4] * (n_tiles // 4)


def test_chunked_failure_names_the_operator_and_tile(volume):
    @florin.florinate
    def fragile(image):
        if float(image.mean()) < 0:
            return image
        raise ValueError("cannot handle this tile")

    pipeline = florin.Serial(florin.tile(shape=(6, 20, 26)), Chunked(fragile(), chunk_size=2))
    with pytest.raises(PipelineError) as caught:
        pipeline(volume)
    assert caught.value.operator == "fragile"
    assert caught.value.origin == (0, 0, 0)
    assert "cannot handle this tile" in str(caught.value)


def test_chunked_options_are_checked():
    with pytest.raises(ParameterError, match="chunk_size"):
        Chunked(np.negative, chunk_size=0)
    with pytest.raises(ParameterError, match="threads"):
        Chunked(np.negative, threads=True)


# -- all three together, as the plugin guide shows ----------------------------------------------
def test_operator_format_and_executor_work_inside_one_pipeline(tmp_path, volume):
    write_raw(tmp_path / "volume.raw", florin.as_volume(volume, spacing=(2.0, 0.5, 0.5)))
    pipeline = florin.Serial(
        florin.load(),
        florin.tile(shape=(6, 20, 26)),
        florin.Chunked(florin.operator("example.sauvola")(window_size=(3, 9, 9)), chunk_size=3),
        florin.save(tmp_path / "mask.raw"),
    )
    result = pipeline(tmp_path / "volume.raw")
    expected = sauvola(volume, window_size=(3, 9, 9))
    np.testing.assert_array_equal(result.values, expected)
    saved = florin.io.read(tmp_path / "mask.raw")
    np.testing.assert_array_equal(saved.values, expected)
    assert florin.get_spacing(saved) == (2.0, 0.5, 0.5)


def test_pipeline_files_name_the_plugins_operator_and_executor(volume):
    pipeline = florin.Serial(florin.tile(shape=(6, 20, 26)), Chunked(sauvola(window_size=5), chunk_size=3))
    text = pipeline.to_toml()
    assert "example.sauvola" in text and '"chunked"' in text
    rebuilt = florin.Pipeline.from_toml(text)
    assert isinstance(rebuilt.steps[1], Chunked) and rebuilt.steps[1].chunk_size == 3
    np.testing.assert_array_equal(rebuilt(volume).values, pipeline(volume).values)
