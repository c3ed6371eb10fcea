"""The NDNT and segment widgets in a headless napari viewer."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from florin_napari._core import NDNTSettings, SegmentSettings
from florin_napari._widgets import PREVIEW_NAME, NDNTWidget, SegmentWidget

import florin
import florin.conncomp as conncomp
import florin.io
from florin.errors import FlorinDeprecationWarning

SPACING = (2.0, 0.5, 0.5)
TIMEOUT = 120_000


@pytest.fixture
def viewer(make_napari_viewer, phantom):
    viewer = make_napari_viewer()
    viewer.add_image(phantom.values, name="phantom", scale=SPACING, units=("um",) * 3)
    return viewer


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)


def _whole(phantom, settings):
    return np.asarray(florin.Serial(*settings.steps())(phantom.values))


def _configure(widget, shape=(5, 17, 17), threshold=0.3, opening=True):
    widget.preview.value = False
    widget.controls.isotropic.value = False
    widget.controls.set_shape(shape)
    widget.controls.threshold.value = threshold
    widget.controls.opening.value = opening


def test_preview_is_the_whole_volume_ndnt_on_the_current_slice(viewer, phantom, qtbot):
    widget = NDNTWidget(viewer)
    _configure(widget)
    settings = widget.settings()
    assert settings == NDNTSettings(shape=(5, 17, 17), threshold=0.3, polarity="dark", opening=True)
    whole = _whole(phantom, settings)
    widget.preview.value = True
    for z in (0, 15, 7):
        requested = widget._generation
        viewer.dims.set_point(0, z * SPACING[0])  # moving the slider requests the preview of the new slice
        assert widget._generation > requested
        _wait(qtbot, widget)
        layer = viewer.layers[PREVIEW_NAME]
        assert layer.data.shape == (1, 64, 80)
        np.testing.assert_array_equal(layer.data[0].astype(bool), whole[z])
        assert tuple(layer.translate) == (z * SPACING[0], 0.0, 0.0) and tuple(layer.scale) == SPACING
        assert widget.applied[-1] == widget._generation


def test_a_newer_preview_supersedes_a_running_one(viewer, phantom, qtbot):
    widget = NDNTWidget(viewer)
    _configure(widget)
    widget.preview.value = True
    first = widget.request_preview()
    widget.controls.threshold.value = 0.1  # a parameter change requests a new preview
    last = widget._worker
    assert last is not first and first.abort_requested
    _wait(qtbot, widget)
    qtbot.wait(50)
    assert widget.applied[-1] == widget._generation
    assert all(g == widget._generation for g in widget.applied[-1:])
    z = int(round(viewer.dims.point[0] / SPACING[0]))
    expected = _whole(phantom, replace_threshold(widget.settings(), 0.1))[z]
    np.testing.assert_array_equal(viewer.layers[PREVIEW_NAME].data[0].astype(bool), expected)


def replace_threshold(settings, t):
    from dataclasses import replace

    return replace(settings, threshold=t)


def test_isotropic_lock_keeps_the_physical_extent(viewer):
    widget = NDNTWidget(viewer)
    widget.preview.value = False
    assert [s.value for s in widget.controls.spins] == [16 // 8, 64 // 8, 80 // 8] or widget.controls.isotropic.value
    widget.controls.isotropic.value = True
    widget.controls.spins[2].value = 64
    assert widget.settings().shape == (16, 64, 64)  # 64 x 0.5 um = 32 um = 16 x 2 um
    widget.controls.isotropic.value = False
    widget.controls.spins[0].value = 3
    assert widget.settings().shape == (3, 64, 64)


@pytest.mark.parametrize("executor", ["serial", "multithread", "multiprocess"])
def test_apply_equals_the_whole_volume_ndnt_under_each_executor(viewer, phantom, qtbot, executor):
    widget = NDNTWidget(viewer)
    _configure(widget)
    widget.exec_controls.executor.value = executor
    progress = []
    widget.progress.changed.connect(progress.append)
    widget.apply()
    _wait(qtbot, widget)
    result = viewer.layers["phantom NDNT"]
    np.testing.assert_array_equal(result.data.astype(bool), _whole(phantom, widget.settings()))
    assert [p for p in progress if p] == list(range(1, 9))  # the bar moved chunk by chunk
    assert widget.progress.value == widget.progress.max == 8
    assert tuple(result.scale) == SPACING


def _segment(viewer, qtbot, classes=()):
    widget = SegmentWidget(viewer)
    widget.controls.isotropic.value = False
    widget.controls.set_shape((5, 17, 17))
    widget.controls.threshold.value = 0.3
    widget.min_size.value = 20
    widget.set_classes(classes)
    widget.exec_controls.executor.value = "multithread"
    assert widget.run() is not None, widget.status.value
    _wait(qtbot, widget)
    assert widget.result is not None, widget.status.value
    return widget


def test_segment_gives_labels_whose_features_are_the_regionprops_table(viewer, phantom, qtbot, tmp_path):
    widget = _segment(viewer, qtbot, classes=[("small", "area=..1000"), ("large", "")])
    objects = viewer.layers["phantom objects"]
    expected = florin.Serial(florin.thresholding.ndnt(shape=(5, 17, 17), threshold=0.3),
                             florin.morphology.binary_opening(),
                             florin.morphology.remove_small_objects(max_size=19), conncomp.label())(phantom)
    np.testing.assert_array_equal(objects.data, expected.values)
    regions = conncomp.regionprops(intensity=phantom)(expected)
    table = regions.to_dataframe()
    assert len(objects.features) == len(table) == int(expected.max()) > 0
    np.testing.assert_array_equal(objects.features["index"], table["label"])
    for column in ("area", "physical_volume", "intensity_mean", "centroid_z"):
        np.testing.assert_allclose(objects.features[column], table[column])
    assert set(objects.features["class_name"]) <= {"small", "large"}
    assert list(objects.features["class_name"]) == ["small" if a <= 1000 else "large" for a in table["area"]]
    classes = viewer.layers["phantom classes"]
    assert list(classes.features["class_name"]) == ["small", "large"]
    assert set(np.unique(classes.data)) <= {0, 1, 2}
    # the table goes to CSV
    widget.export_csv(tmp_path / "objects.csv")
    back = pd.read_csv(tmp_path / "objects.csv")
    assert list(back["label"]) == list(table["label"]) and "index" not in back
    np.testing.assert_allclose(back["area"], table["area"])


def test_pipeline_toml_round_trip_and_florin_run_executes_it_unchanged(viewer, phantom, qtbot, tmp_path):
    widget = _segment(viewer, qtbot, classes=[("small", "area=..1000, depth=2..16"), ("large", "")])
    path = tmp_path / "pipeline.toml"
    widget.save_pipeline(path)
    text = path.read_text()
    for expected in ('op = "thresholding.ndnt"', "shape = [5, 17, 17]", "threshold = 0.3",
                     'op = "morphology.binary_opening"', "max_size = 19", 'executor = "multithread"',
                     'op = "classify"', 'name = "small"', 'op = "reconstruct"'):
        assert expected in text, expected
    # back into a fresh widget: the same settings
    other = SegmentWidget(viewer)
    other.load_pipeline(path)
    assert other.settings() == widget.settings()
    assert other.settings().classes == (("small", "area=..1000, depth=2..16"), ("large", ""))
    # `florin run` (the CLI, in process) executes the file as it is and gives the widget's class volume
    florin.io.write(tmp_path / "volume.tif", phantom)
    from florin.cli import main

    assert main(["run", str(path), str(tmp_path / "volume.tif"), "-o", str(tmp_path / "classes.tif")]) == 0
    np.testing.assert_array_equal(florin.io.read(tmp_path / "classes.tif").values,
                                  viewer.layers["phantom classes"].data)


def test_widget_settings_to_pipeline_and_bad_input():
    from florin_napari._core import parse_rules, preview_plane

    from florin.errors import ParameterError

    settings = SegmentSettings(ndnt=NDNTSettings(shape=(3, 9, 9), threshold=0.2, polarity="bright"), min_size=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlorinDeprecationWarning)  # max_size, not the deprecated min_size
        steps = settings.pipeline((8, 32, 32)).steps
        text = settings.to_toml((8, 32, 32))
    assert "max_size = 4" in text and "min_size" not in text
    image = np.zeros((8, 32, 32), bool)
    image[0, :2, :2] = True  # 4 voxels: removed
    image[4, :2, :5] = True  # 10 voxels: kept
    assert steps[2](image).values.sum() == 10
    from florin_napari._core import settings_from_toml

    back = settings_from_toml(text, shape=(8, 32, 32))
    assert back.min_size == 5
    old = text.replace("max_size = 4", "min_size = 7")  # a file written before max_size: still read
    with pytest.warns(FlorinDeprecationWarning, match="min_size=7"):
        assert settings_from_toml(old, shape=(8, 32, 32)).min_size == 7
    assert [getattr(s, "name", type(s).__name__) for s in steps][1:] == [
        "ndnt", "remove_small_objects", "label"]
    with pytest.raises(ParameterError, match="class name"):
        parse_rules("", "area=1..2")
    with pytest.raises(ParameterError, match="threshold"):
        preview_plane(np.ones((4, 8, 8), np.uint8), NDNTSettings(shape=(3, 3, 3), threshold=500), (1, 0, 0))


@pytest.mark.parametrize(("shape", "opening", "dtype"), [
    ((5, 17, 17), True, np.uint16), ((5, 17, 17), True, np.float32), ((1, 9, 9), False, np.uint16),
    ((31, 31, 31), True, np.uint16)])
def test_every_preview_plane_equals_the_whole_volume_result(phantom, shape, opening, dtype):
    from florin_napari._core import preview_plane

    image = phantom.values.astype(dtype)
    settings = NDNTSettings(shape=shape, threshold=0.3, opening=opening, polarity="dark")
    whole = np.asarray(florin.Serial(*settings.steps())(image))
    for z in range(image.shape[0]):
        np.testing.assert_array_equal(preview_plane(image, settings, (z, 0, 0)), whole[z])


@pytest.mark.parametrize(("dtype", "shape", "polarity", "threshold"), [
    (np.int8, (5, 17, 17), "dark", 0.3),  # negative values (the phantom wraps)
    (np.uint8, (3, 9, 9), "bright", 0.05),
    ("bool", (7, 9, 9), "dark", 0.2),
    (np.int32, (9, 33, 33), "bright", 0.1),
    (np.uint32, (5, 17, 17), "dark", 30),  # too wide to sum exactly: NDNT on the context; a percentage
    (np.float64, (1, 9, 9), "dark", 0.3),  # a one-plane z window: plane by plane for floats too
    (np.uint16, (41, 3, 200), "dark", 0.25)])  # windows larger than the volume
def test_every_preview_plane_of_each_dtype_equals_the_whole_volume_result(phantom, dtype, shape, polarity, threshold):
    from florin_napari._core import preview_plane

    values = phantom.values
    image = values > np.median(values) if dtype == "bool" else values.astype(dtype)
    for opening in (False, True):
        settings = NDNTSettings(shape=shape, threshold=threshold, opening=opening, polarity=polarity)
        whole = np.asarray(florin.Serial(*settings.steps())(image))
        for z in range(image.shape[0]):
            np.testing.assert_array_equal(preview_plane(image, settings, (z, 0, 0)), whole[z], err_msg=f"z={z}")


def test_the_ndnt_piece_computes_only_the_planes_the_opening_needs(phantom, monkeypatch):
    """NDNT computes the 5 mask planes the opening needs, each from two planes, not the 19 planes of the context."""
    from florin_napari._core import preview_pieces

    import florin.thresholding

    kernel_inputs = []
    original = florin.thresholding.ndnt_mask
    monkeypatch.setattr(florin.thresholding, "ndnt_mask",
                        lambda image, *args, **kw: kernel_inputs.append(image.shape) or original(image, *args, **kw))
    settings = NDNTSettings(shape=(15, 17, 17), threshold=0.3, opening=True)  # z halo 7 + opening 2
    pieces = preview_pieces(phantom.values, settings, (8, 0, 0))
    assert list(pieces) == ["read"] + ["ndnt"] * 5 + ["binary_opening"]  # a superseded preview stops between them
    assert kernel_inputs == [(2, 64, 80)] * 5
    # a float image: its window sums are not exact, so NDNT runs on its z-context (planes 0..15), one piece
    kernel_inputs.clear()
    assert list(preview_pieces(phantom.values.astype(np.float32), settings, (8, 0, 0))) == [
        "read", "ndnt", "binary_opening"]
    assert kernel_inputs == [(16, 64, 80)]


def test_the_z_context_is_read_in_pieces(phantom, monkeypatch):
    from florin_napari import _core

    monkeypatch.setattr(_core, "_READ_BYTES", 3 * 64 * 80 * 2)  # three planes of the phantom per read
    settings = NDNTSettings(shape=(5, 17, 17), threshold=0.3, opening=True)
    # a volume that is read (a florin volume, as the reader's layers have); a numpy array's planes are a view
    pieces = _core.preview_pieces(phantom, settings, (8, 0, 0))
    assert list(pieces)[:4] == ["read"] * 3 + ["ndnt"]  # planes 4..12: 3 + 3 + 3
    np.testing.assert_array_equal(_core.preview_plane(phantom, settings, (8, 0, 0)), _whole(phantom, settings)[8])
    assert list(_core.preview_pieces(phantom.values, settings, (8, 0, 0)))[:2] == ["read", "ndnt"]


def test_preview_reads_only_the_z_context(phantom):
    from florin_napari._core import preview_plane

    class Spy:
        def __init__(self, array):
            self.array, self.shape, self.ndim, self.dtype, self.reads = array, array.shape, array.ndim, array.dtype, []

        def __getitem__(self, key):
            self.reads.append(key)
            return self.array[key]

    spy = Spy(phantom.values)
    settings = NDNTSettings(shape=(5, 17, 17), threshold=0.3, opening=True)  # z halo 2 + opening 2
    preview_plane(spy, settings, (8, 0, 0))
    assert spy.reads == [slice(4, 13)]


def test_the_docs_page_shows_the_pipeline_file_the_widget_writes():
    """docs/napari.md's TOML is what Save pipeline writes for the demo settings of the screenshots."""
    import re
    from pathlib import Path

    from florin_napari._core import rules_text

    from florin.data import PHANTOM_CLASSES

    page = (Path(__file__).resolve().parents[3] / "docs" / "napari.md").read_text()
    [shown] = re.findall(r"```toml\n(.*?)```", page, flags=re.S)
    classes = tuple((n, rules_text(florin.bounds_classifier(n, **b))) for n, b in PHANTOM_CLASSES)
    settings = SegmentSettings(ndnt=NDNTSettings(shape=(10, 64, 64), threshold=0.3, opening=True), min_size=20,
                               classes=classes, executor="multithread", workers=2)
    assert settings.to_toml((48, 192, 192)) == shown


def test_the_docs_page_shows_the_screenshots_its_script_takes():
    """docs/napari.md shows exactly the PNGs docs/_scripts/napari_screenshots.py writes, and they are in docs/_static."""
    import re
    from pathlib import Path

    docs = Path(__file__).resolve().parents[3] / "docs"
    shown = re.findall(r"```\{image\} _static/(napari-[\w-]+\.png)", (docs / "napari.md").read_text())
    taken = re.findall(r'"(napari-[\w-]+\.png)"', (docs / "_scripts" / "napari_screenshots.py").read_text())
    assert shown == taken == ["napari-ndnt.png", "napari-segment.png", "napari-features.png"]
    for name in shown:
        assert (docs / "_static" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_ndnt_widget_pipeline_file_runs_in_florin_run_and_loads_back(viewer, phantom, tmp_path):
    from florin.cli import main

    widget = NDNTWidget(viewer)
    _configure(widget)
    widget.exec_controls.executor.value = "multithread"
    widget.save_pipeline(tmp_path / "ndnt.toml")
    text = (tmp_path / "ndnt.toml").read_text()
    assert 'op = "thresholding.ndnt"' in text and "remove_small_objects" not in text
    florin.io.write(tmp_path / "volume.tif", phantom)
    assert main(["run", str(tmp_path / "ndnt.toml"), str(tmp_path / "volume.tif"), "-o", str(tmp_path / "m.tif")]) == 0
    np.testing.assert_array_equal(florin.io.read(tmp_path / "m.tif").values.astype(bool),
                                  _whole(phantom, widget.settings()))
    other = NDNTWidget(viewer)
    other.load_pipeline(tmp_path / "ndnt.toml")
    assert other.settings() == widget.settings() and other.exec_controls.executor.value == "multithread"


def test_3d_view_previews_a_small_volume_whole_and_2d_images_work(make_napari_viewer, phantom, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(phantom.values, name="phantom", scale=SPACING)
    widget = NDNTWidget(viewer)
    _configure(widget)
    widget.preview.value = True
    viewer.dims.ndisplay = 3
    _wait(qtbot, widget)
    np.testing.assert_array_equal(viewer.layers[PREVIEW_NAME].data.astype(bool), _whole(phantom, widget.settings()))
    viewer.dims.ndisplay = 2
    viewer.layers.clear()
    plane = phantom.values[7]
    viewer.add_image(plane, name="plane")
    flat = NDNTWidget(viewer)
    assert len(flat.controls.spins) == 2
    flat.preview.value = False
    flat.controls.isotropic.value = False
    flat.controls.set_shape((17, 17))
    flat.preview.value = True
    _wait(qtbot, flat)
    expected = np.asarray(florin.Serial(*flat.settings().steps())(plane))
    np.testing.assert_array_equal(viewer.layers[PREVIEW_NAME].data.astype(bool), expected)


def test_3d_view_of_a_large_volume_previews_the_current_slice(viewer, phantom, qtbot, monkeypatch):
    from florin_napari import _widgets

    monkeypatch.setattr(_widgets, "PREVIEW_3D_VOXELS", phantom.size - 1)  # the phantom is "large"
    widget = NDNTWidget(viewer)
    _configure(widget)
    widget.preview.value = True
    viewer.dims.ndisplay = 3
    _wait(qtbot, widget)
    z = int(round(viewer.dims.point[0] / SPACING[0]))
    layer = viewer.layers[PREVIEW_NAME]
    assert layer.data.shape == (1, 64, 80)
    np.testing.assert_array_equal(layer.data[0].astype(bool), _whole(phantom, widget.settings())[z])


def test_preview_of_a_lazy_layer_reads_its_z_context_in_one_read(phantom, monkeypatch):
    """A layer the reader made (dask, a chunk per plane): the context is one read of the volume, not 9 dask tasks."""
    from florin_napari import _layers
    from florin_napari._core import preview_plane

    data = _layers.lazy_array(phantom)
    reads = []
    original = _layers._Planes.__getitem__
    monkeypatch.setattr(_layers._Planes, "__getitem__", lambda self, key: reads.append(key) or original(self, key))
    settings = NDNTSettings(shape=(5, 17, 17), threshold=0.3, opening=True)
    plane = preview_plane(data, settings, (8, 0, 0))
    np.testing.assert_array_equal(plane, _whole(phantom, settings)[8])
    assert reads == []  # not through dask's chunks
    assert _layers.source_of(data) is phantom and _layers.source_of(data[2:]) is not phantom


def test_a_superseded_preview_stops_between_pieces(viewer, qtbot, monkeypatch):
    """A preview still computing when a newer one is requested stops at its next piece instead of running on."""
    import threading
    import time

    from florin_napari import _widgets

    started, pieces, on_gui_thread = threading.Event(), {}, []
    original = _widgets.preview_pieces

    def slow(image, settings, index=()):
        key = settings.threshold
        pieces[key] = 0
        on_gui_thread.append(threading.current_thread() is threading.main_thread())
        for _ in range(200):  # 200 pieces of 10 ms: far longer than the test takes to supersede it
            started.set()
            time.sleep(0.01)
            pieces[key] += 1
            yield "piece"
        return (yield from original(image, settings, index))

    widget = NDNTWidget(viewer)
    _configure(widget, opening=False)
    monkeypatch.setattr(_widgets, "preview_pieces", slow)
    widget.preview.value = True  # requests the first (slow) preview
    assert started.wait(60)
    monkeypatch.setattr(_widgets, "preview_pieces", original)
    widget.controls.threshold.value = 0.1  # supersedes it
    _wait(qtbot, widget)
    assert pieces[0.3] < 200  # stopped early, not run to its end and dropped
    assert on_gui_thread == [False]  # computed in a worker thread
    assert widget.applied == [widget._generation]


def test_kernels_warm_up_off_the_gui_thread_after_the_first_preview(viewer, qtbot, monkeypatch):
    """The widget shows its first preview, then loads the other previews' kernels in a worker thread (not waited on)."""
    import threading

    from florin_napari import _widgets

    release, events = threading.Event(), []

    def blocked_warm_up(dtype):  # stands for the warm-up, until the test releases it
        events.append(("starts", threading.current_thread() is threading.main_thread(), np.dtype(dtype)))
        while not release.wait(0.01):
            yield
        events.append(("ends",))

    monkeypatch.setattr(_widgets, "warm_up", blocked_warm_up)
    monkeypatch.setattr(_widgets, "is_warm", lambda dtype: False)
    widget = NDNTWidget(viewer)  # returns while the warm-up is still to come: the GUI thread never waits for it
    qtbot.waitUntil(lambda: bool(events), timeout=TIMEOUT)
    assert events == [("starts", False, np.dtype(np.uint16))]  # in a worker thread, for the image's dtype
    assert widget.applied  # after the first preview was shown
    widget.controls.threshold.value = 0.1  # a preview during the warm-up does not wait for it
    qtbot.waitUntil(lambda: widget.applied[-1] == widget._generation, timeout=TIMEOUT)
    assert len(events) == 1 and widget.busy
    release.set()
    _wait(qtbot, widget)
    assert events[-1] == ("ends",)
    # closing the widget stops a running warm-up at its next piece
    release.clear()
    events.clear()
    other = NDNTWidget(viewer)
    qtbot.waitUntil(lambda: bool(events), timeout=TIMEOUT)
    other.native.deleteLater()
    qtbot.waitUntil(lambda: not other.busy, timeout=TIMEOUT)
    assert other.closed and events == [("starts", False, np.dtype(np.uint16))]


_LOADED_KERNELS = """
import gc
import warnings

import numpy as np
from numba.core.dispatcher import Dispatcher
from florin_napari._core import NDNTSettings, preview_plane, warm_up

def loaded():  # florin's numba kernels and the signatures loaded (or compiled) in this process
    return {(d.py_func.__module__, d.py_func.__qualname__, sig) for d in gc.get_objects()
            if isinstance(d, Dispatcher) and d.py_func.__module__.startswith("florin") for sig in d.overloads}

for dtype in ("uint16", "float32"):
    before = loaded()
    for _ in warm_up(dtype):
        pass
    warm = loaded()
    assert warm > before, dtype  # the warm-up loaded kernels
    volume = np.random.default_rng(0).integers(0, 250, (40, 160, 160)).astype(dtype)
    for shape in ((1, 65, 65), (2, 65, 65), (3, 65, 65), (5, 65, 65), (9, 33, 33), (65, 65, 65), (3, 3, 3)):
        for opening in (False, True):
            for polarity in ("dark", "bright"):
                for z in (0, 20):
                    preview_plane(volume, NDNTSettings(shape, 0.3, polarity, opening), (z, 0, 0))
    for opening in (False, True):
        preview_plane(volume[5], NDNTSettings((65, 65), 0.3, "dark", opening))
    assert loaded() == warm, sorted(loaded() - warm)  # no preview loaded another kernel
print("ok")
"""


def test_the_warm_up_loads_every_kernel_a_preview_runs():
    """In a fresh process, after the warm-up no preview (z windows of 1 to 65 planes, opening, polarity) loads a kernel."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _LOADED_KERNELS], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr
