"""florin.tune(..., classes=...): classifier bounds learned from annotated objects of named classes (issue 19 item 1).

A (24, 96, 96) phantom with 16 small round cells and two long vessels, one
along x and one along y. Only some objects are annotated; the tuned pipeline is
scored on every object of the volume.
"""

from __future__ import annotations

import numpy as np
import pytest
from executor_helpers import assert_executors_agree

import florin
from florin.conncomp import regionprops
from florin.data import phantom
from florin.errors import ParameterError
from florin.pipeline_file import from_toml, to_toml
from florin.tuning import build_pipeline, tune
from florin.tuning_classes import (
    check_classes,
    feature_names,
    learn_bounds,
    measure,
    parse_classes,
    parse_classes_text,
)

SPACE = {"shape": [[1, 3, 5], [9, 17, 33], [9, 17, 33]], "threshold": [0.1, 0.15, 0.2, 0.3], "opening": [0, 1],
         "min_size": [0, 40]}


@pytest.fixture(scope="module")
def sample():
    p = phantom((24, 96, 96), seed=3, n_cells=16, n_vessels=2)
    assert p.n_cells >= 12 and p.n_vessels == 2  # the first vessel runs along x, the second along y
    return p


def vessel_along_x(sample):
    return sample.n_cells + 1


def per_object_accuracy(classes_volume, sample):
    """Fraction of the phantom's objects whose voxels mostly get their true class name."""
    names = classes_volume.attrs["classes"]
    values = classes_volume.values
    right = 0
    for i in range(1, int(sample.labels.max()) + 1):
        got = values[sample.labels == i]
        got = got[got > 0]
        name = names.get(str(int(np.bincount(got).argmax()))) if got.size else None
        right += name == sample.class_names[int(sample.object_classes[i - 1])]
    return right / int(sample.labels.max())


@pytest.fixture(scope="module")
def from_objects(sample):
    """Six cells and the vessel along x, labelled in 3-D (labels= alone)."""
    vx = vessel_along_x(sample)
    few = np.where(np.isin(sample.labels, [1, 2, 3, 4, 5, 6, vx]), sample.labels, 0)
    return tune(sample.image, labels=few, classes={"cell": [1, 2, 3, 4, 5, 6], "vasculature": vx}, search=SPACE,
                tile=(8, 48, 48))


@pytest.fixture(scope="module")
def from_slices(sample):
    """Three painted slices (0/1/2) and, on them, the phantom's class volume as labels (1 cell, 2 vessel)."""
    annotation = np.zeros(sample.image.shape, np.uint8)
    labels = np.zeros(sample.image.shape, np.uint8)
    for z in (4, 12, 20):
        annotation[z] = np.where(sample.labels[z] > 0, 2, 1)
        labels[z] = sample.classes[z]
    return tune(sample.image, annotation, labels=labels, classes={1: "cell", 2: "vasculature"}, search=SPACE,
                tile=None)


def test_tuned_classes_classify_every_object_of_the_volume(sample, from_objects):
    pipeline, report = from_objects
    assert [c.name for c in report.classes] == ["cell", "vasculature"]
    cell, vessel = report.classes
    assert vessel.bounds == {} and cell.bounds  # the most general class last, unbounded, as in the seed
    assert report.class_accuracy == 1.0 and cell.searched == (6, 6) and vessel.searched == (1, 1)
    result = pipeline(sample.image)
    assert result.attrs["classes"] == {"1": "cell", "2": "vasculature"}
    # every object, most of them never annotated, among them the vessel along y (only the one along x was)
    assert per_object_accuracy(result, sample) == 1.0
    assert "classes: per-object accuracy 1.0000 (7/7)" in report.summary()
    assert f"cell         {cell.describe()}" in report.summary()


def test_bounds_lie_in_the_gap_between_the_classes(sample, from_objects):
    pipeline, report = from_objects
    labels = build_pipeline(report.params)(sample.image).values
    table = regionprops(labels).table
    # the objects the tuned segmentation finds on the annotated cells and vessel
    vx = vessel_along_x(sample)
    matched = {i: int(np.bincount(labels[sample.labels == i]).argmax()) for i in (1, 2, 3, 4, 5, 6, vx)}
    row = {i: int(np.flatnonzero(table["label"] == m)[0]) for i, m in matched.items()}
    for prop, (lo, hi) in report.classes[0].bounds.items():
        cells = [table[prop][row[i]] for i in range(1, 7)]
        vessel = table[prop][row[vx]]
        assert lo is None and max(cells) < hi < vessel


def test_objects_are_measured_on_crops_as_the_whole_volume_run_measures_them(sample, from_slices):
    _, report = from_slices
    labels = np.zeros(sample.image.shape, np.uint8)
    labels[12] = sample.classes[12]
    _, objects = check_classes({"cell": 1, "vasculature": 2}, labels)
    names = feature_names(3)
    assert names == ["area", "depth", "height", "width", "intensity_mean"]
    computed = measure(objects, sample.image, report.params, 1)
    assert 0 < computed
    whole = build_pipeline(report.params)(sample.image).values
    table = regionprops(whole, intensity=sample.image).table
    assert len(objects) >= 8 and sum(o.features is not None for o in objects) >= len(objects) - 1
    for obj in objects:
        if obj.features is None:
            continue
        hit = whole[obj.box][obj.voxels]
        row = int(np.flatnonzero(table["label"] == np.bincount(hit[hit > 0]).argmax())[0])
        assert obj.features == pytest.approx({n: float(table[n][row]) for n in names}, rel=1e-12)


def test_held_out_objects_are_scored_next_to_the_searched_ones(sample, from_slices):
    pipeline, report = from_slices
    assert report.heldout_regions == [(12, 12)]
    assert report.class_accuracy >= 0.9 and report.heldout_class_accuracy is not None
    right = sum(c.heldout[0] for c in report.classes)
    total = sum(c.heldout[1] for c in report.classes)
    labels12 = np.zeros(sample.image.shape, np.uint8)
    labels12[12] = sample.classes[12]
    assert total == len(check_classes({1: "cell", 2: "vasculature"}, labels12)[1])  # every object on slice 12
    assert report.heldout_class_accuracy == right / total >= 0.9
    assert f"held-out: {report.heldout_class_accuracy:.4f} ({right}/{total})" in report.summary()
    assert per_object_accuracy(pipeline(sample.image), sample) >= 0.9


def test_the_written_toml_round_trips_and_gives_the_python_result(sample, from_objects, tmp_path):
    pipeline, report = from_objects
    text = to_toml(pipeline)
    assert 'op = "classify"' in text and 'op = "reconstruct"' in text
    assert to_toml(from_toml(text)) == text
    path = tmp_path / "pipeline.toml"
    path.write_text(text)
    expected = pipeline(sample.image)
    result = florin.Pipeline.from_toml(path)(sample.image)
    np.testing.assert_array_equal(result.values, expected.values)
    assert result.attrs["classes"] == expected.attrs["classes"]
    # untiled, step by step: the same classes
    np.testing.assert_array_equal(build_pipeline(report.params, classes=report.classes)(sample.image).values,
                                  expected.values)


def _with(pipeline, make):
    """``pipeline`` with every (nested) pipeline run by ``make(*steps)``."""
    steps = [_with(s, make) if isinstance(s, florin.Pipeline) else s for s in pipeline.steps]
    return make(*steps)


def test_the_written_toml_with_classes_runs_equal_under_every_executor(sample, from_objects, tmp_path):
    pipeline, _ = from_objects
    path = tmp_path / "classes.toml"
    path.write_text(to_toml(pipeline))
    # Serial, Multithread, Multiprocess, every plugin executor (florin-dask) and real MPI jobs, each equal to Serial
    out = assert_executors_agree({"classes": (lambda make: _with(florin.Pipeline.from_toml(path), make), sample.image)},
                                 tmp_path, mpi=("spmd-2", "spawn"))["classes"]
    assert {"serial", "multithread", "multiprocess", "mpi-spmd-2", "mpi-spawn"} <= set(out)
    np.testing.assert_array_equal(out["serial"].values, pipeline(sample.image).values)


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ({}, "classes: empty mapping; e.g. {'cell': [1, 2, 3], 'vasculature': 4}"),
        ({"cell": [1, 2], "vasculature": 99}, "classes: label 99 (class 'vasculature') is not in labels; labels has 1, "
                                               "2, 17"),
        ({"cell": [1, 2], "vasculature": []}, "classes: class 'vasculature' has no annotated object (no labels)"),
        ({1: "cell", 2: "cell", 17: ""}, "classes: label 17 needs a class name (a non-empty string), got ''"),
        ({"cell": [1, 2], "vasculature": [2, 17]}, "classes: label 2 is given to both 'cell' and 'vasculature'"),
        ({"cell": 0}, "classes: class 'cell' has label 0; labels are >= 1 (0 is background)"),
        ({"cell": "1"}, "classes: class 'cell' needs integer labels, got '1'"),
        ({1: "cell", "vasculature": 17}, "classes: keys must be all class names or all labels"),
        ([1, 2], "classes: must be a dict, got list"),
    ],
    ids=["empty", "unknown-label", "no-object", "no-name", "twice", "zero", "not-int", "mixed", "not-dict"],
)
def test_bad_classes_give_one_line_naming_the_parameter(sample, classes, message):
    few = np.zeros(sample.labels.shape, np.uint8)  # cells 1 and 2, and the vessel along x as 17
    for i, value in ((1, 1), (2, 2), (vessel_along_x(sample), 17)):
        few[sample.labels == i] = value
    with pytest.raises(ParameterError) as info:
        tune(sample.image, labels=few, classes=classes, max_evaluations=1)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_classes_need_labels(sample):
    annotation = np.zeros(sample.image.shape, np.uint8)
    annotation[12] = np.where(sample.labels[12] > 0, 2, 1)
    with pytest.raises(ParameterError, match=r"^classes: needs labels= \(a label image of the annotated objects"):
        tune(sample.image, annotation, classes={"cell": 1})


def test_classes_mapping_forms():
    assert parse_classes({1: "a", 3: "b", 2: "a"}) == {"a": [1, 2], "b": [3]}
    assert list(parse_classes({"b": 3, "a": [2, 1]})) == ["b", "a"]  # the given order
    assert parse_classes_text(" cell = 1-3, 7 ; vessel=4 ") == {"cell": [1, 2, 3, 7], "vessel": [4]}
    for text, message in (("", "empty mapping"), ("cell", "'cell' is not NAME=LABELS"),
                          ("cell=a", "'a' in 'cell=a' is not a label"), ("cell=5-3", "the range '5-3'"),
                          ("c=1;c=2", "class 'c' is given twice")):
        with pytest.raises(ParameterError, match=f"^--classes: .*{message}"):
            parse_classes_text(text)


def test_learning_orders_the_classes_by_size_and_falls_back_to_intensity():
    # columns: area, depth, height, width, intensity_mean; rows: three small objects, two large ones
    X = np.array([[100, 5, 9, 9, 10], [140, 6, 10, 11, 11], [120, 5, 9, 10, 12],
                  [900, 6, 40, 12, 10], [1600, 12, 12, 60, 11]], float)
    learned, accuracy = learn_bounds(X, np.array([1, 1, 1, 0, 0]), 2, [0, 1, 2, 3], [4])
    assert accuracy == 1.0 and [c for c, _ in learned] == [1, 0] and learned[-1][1] == {}  # the large class last
    bounds = learned[0][1]
    # area separates them (the widest gap); depth too, across a clear gap (6 -> 12); height (10 -> 12) and width
    # (11 -> 12) are no clear gaps; no intensity bound where sizes separate
    assert sorted(bounds) == [0, 1]
    assert bounds[0][0] is None and 140 < bounds[0][1] < 900
    assert bounds[1][0] is None and 6 < bounds[1][1] < 12
    # same sizes, different brightness: only the mean intensity separates them
    Z = np.array([[100, 5, 9, 9, 10], [110, 5, 9, 9, 12], [105, 5, 9, 9, 50], [100, 5, 9, 9, 55]], float)
    learned, accuracy = learn_bounds(Z, np.array([0, 0, 1, 1]), 2, [0, 1, 2, 3], [4])
    assert accuracy == 1.0 and list(learned[0][1]) == [4]
    (lo, hi), = learned[0][1].values()
    assert (lo is None and 12 < hi < 50) or (hi is None and 12 < lo < 50)
