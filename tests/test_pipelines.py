import os

import numpy as np
import pytest
import xarray as xr

import florin
import florin.morphology as morphology
import florin.thresholding as thresholding
from florin.errors import PipelineError


@florin.florinate
def add(image, value=1):
    return image + value


def test_serial_runs_steps_in_order():
    out = florin.Serial(add(value=2), np.negative)(np.array([1, 2]))
    assert isinstance(out, xr.DataArray)
    assert out.values.tolist() == [-3, -4]


def test_nested_pipelines_are_steps():
    inner = florin.Serial(add(value=1), add(value=10))
    out = florin.Serial(add(value=100), inner, florin.Serial(florin.Serial(np.negative)))(np.array([0]))
    assert out.values.tolist() == [-111]


def test_plain_one_argument_callable_is_a_step():
    out = florin.Serial(np.squeeze)(np.zeros((1, 3, 4)))
    assert out.shape == (3, 4)


def test_pipeline_with_bound_load_runs_without_arguments(tmp_path, volume):
    path = tmp_path / "v.npy"
    np.save(path, volume)
    out = florin.Serial(florin.load(path), thresholding.ndnt(shape=(3, 9, 9)))()
    expected = thresholding.ndnt(volume, shape=(3, 9, 9))
    np.testing.assert_array_equal(out.values, expected.values)


def test_pipeline_accepts_path_array_and_dataarray(tmp_path, volume):
    path = tmp_path / "v.tif"
    florin.io.write(path, volume)
    pipe = florin.Serial(florin.load(), add(value=1))
    for data in (path, str(path), volume, florin.as_volume(volume)):
        np.testing.assert_allclose(pipe(data).values, volume + 1)


def test_pipeline_without_input_explains_how_to_give_one():
    with pytest.raises(PipelineError, match="no input"):
        florin.Serial(add())()


def test_non_callable_step_is_rejected_at_build_time():
    with pytest.raises(PipelineError, match="step 2"):
        florin.Serial(add(), 42)


def test_failing_step_names_operator_and_chains_cause():
    @florin.florinate
    def broken(image):
        raise RuntimeError("boom")

    with pytest.raises(PipelineError, match="broken") as err:
        florin.Serial(broken())(np.zeros(3))
    assert isinstance(err.value.__cause__, RuntimeError)


def test_failure_inside_tile_names_tile_origin():
    @florin.florinate
    def fails_on_second_tile(image):
        if florin.tilemeta.info_of(image).index == 1:
            raise ValueError("bad tile")
        return image

    with pytest.raises(PipelineError) as err:
        florin.Serial(florin.tile(shape=(4, 4)), fails_on_second_tile())(np.zeros((4, 8)))
    assert err.value.origin == (0, 4) and "fails_on_second_tile" in str(err.value)


def test_seed_first_example_tiled_equals_whole_volume(tmp_path, volume):
    pipeline = florin.Serial(
        florin.load(),
        florin.tile(shape=(10, 16, 16), stride=(10, 8, 8)),
        thresholding.ndnt(shape=(10, 16, 16), threshold=0.3),
        morphology.binary_opening(),
        florin.save(tmp_path / "segmented.tiff"),
    )
    segmented = pipeline(volume)
    whole = morphology.binary_opening(thresholding.ndnt(volume, shape=(10, 16, 16), threshold=0.3))
    np.testing.assert_array_equal(segmented.values, whole.values)
    saved = florin.io.read(tmp_path / "segmented.tiff")
    np.testing.assert_array_equal(saved.values, whole.values)
    assert saved.dtype == bool


def test_nested_pipeline_over_tiles_joins_implicitly(volume):
    pipeline = florin.Serial(
        florin.tile(shape=(6, 16, 16), stride=(6, 8, 8)),
        florin.Serial(thresholding.ndnt(shape=(5, 9, 9)), morphology.binary_opening()),
        np.logical_not,
    )
    whole = ~morphology.binary_opening(thresholding.ndnt(volume, shape=(5, 9, 9))).values
    np.testing.assert_array_equal(pipeline(volume).values, whole)


def test_subclass_overrides_map(volume):
    calls = []

    class Recording(florin.Pipeline):
        def map(self, func, items):
            items = list(items)
            calls.append(len(items))
            return [func(item) for item in items]

    out = florin.Serial(florin.tile(shape=(12, 20, 24)), Recording(thresholding.ndnt(shape=3)))(volume)
    assert calls == [4]
    np.testing.assert_array_equal(out.values, thresholding.ndnt(volume, shape=3).values)


def test_dump_and_run_with_python_m_florin(tmp_path, volume):
    import subprocess
    import sys

    src = tmp_path / "in.npy"
    np.save(src, volume)
    out = tmp_path / "out.npy"
    pipeline = florin.Serial(florin.load(), add(value=1), florin.save(out))
    pipeline.dump(tmp_path / "pipe.pkl")
    loaded = florin.Pipeline.from_file(tmp_path / "pipe.pkl")
    assert isinstance(loaded, florin.Serial)
    proc = subprocess.run([sys.executable, "-m", "florin", "run", str(tmp_path / "pipe.pkl"), str(src)],
                          capture_output=True, text=True, cwd=os.getcwd(), env={**os.environ, "PYTHONPATH": os.path.dirname(__file__)})
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.load(out), volume + 1)


def test_whole_volume_step_after_tiles_joins_them_first(volume):
    # remove_small_objects needs whole objects (unbounded halo): the flat pipeline
    # joins the tiles before it instead of refusing to tile.
    flat = florin.Serial(
        florin.tile(shape=(6, 16, 16), stride=(6, 8, 8)),
        thresholding.ndnt(shape=(5, 9, 9)),
        morphology.binary_opening(),
        morphology.remove_small_objects(max_size=29),
    )
    whole = morphology.remove_small_objects(
        morphology.binary_opening(thresholding.ndnt(volume, shape=(5, 9, 9))), max_size=29
    )
    np.testing.assert_array_equal(flat(volume).values, whole.values)


def test_progress_ticks_once_per_tile_and_timings_are_recorded(volume):
    from florin import _run

    class Recorder:
        def __init__(self):
            self.tasks, self.ticks = [], 0

        def add_task(self, description, total):
            self.tasks.append((description, total))
            return len(self.tasks)

        def advance(self, task, n):
            self.ticks += n

        def remove_task(self, task):
            pass

    recorder = Recorder()
    pipe = florin.Serial(florin.tile(shape=(12, 20, 24), blocks="tiles"), florin.Serial(thresholding.ndnt(shape=3)))
    with _run.observe(progress=recorder) as observer:
        pipe(volume)
    assert recorder.tasks == [("Serial over 4 tiles", 4)] and recorder.ticks == 4
    assert {"tile", "ndnt", "serial"} <= set(observer.timings)
