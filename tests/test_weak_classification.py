"""The seed's "Weak Classification" pipeline on a phantom with ground truth."""

import numpy as np
import pytest
from objects_helpers import ThreadMap, executors

import florin
import florin.conncomp as conncomp
import florin.morphology as morphology
import florin.thresholding as thresholding
from florin.data import PHANTOM_CLASSES, phantom
from florin.errors import OperatorBindError

SHAPE = (64, 256, 256)  # the default phantom: 139 cells and 5 vessels
SMALL = (32, 128, 128)  # for comparing executors


def classifiers():
    return florin.classify(*(florin.bounds_classifier(name, **bounds) for name, bounds in PHANTOM_CLASSES))


class Spy:
    """A whole-datum step that records what passes through it."""

    per_item = False
    name = "spy"

    def __init__(self):
        self.seen = None

    def __call__(self, data):
        self.seen = data
        return data


def seed_pipeline(out_dir, executor=None, *, spy=None):
    """The seed's Weak Classification example (``thresshold`` corrected) with the phantom's bounds.

    With an ``executor`` it is the seed's parallel version: tiles and regions mapped by it.
    A ``spy`` after the classification sees the classified regions.
    """
    tiled = [thresholding.ndnt(shape=(10, 64, 64), threshold=0.3), morphology.binary_opening()]
    classify = classifiers()
    steps = [
        florin.load(),
        florin.tile(shape=(10, 64, 64), stride=(10, 32, 32)),
        *(tiled if executor is None else [executor(*tiled)]),
        florin.save(out_dir / "segmented.tiff", overwrite=True),
        conncomp.label(),
        morphology.remove_small_holes(max_size=19),
        conncomp.regionprops(),
        classify if executor is None else executor(classify),
    ]
    steps += [spy] if spy is not None else []
    steps += [florin.reconstruct(), florin.save(out_dir / "labeled.tiff", overwrite=True)]
    return florin.Serial(*steps)


def _write_phantom(shape, directory):
    p = phantom(shape, seed=0)
    path = directory / "volume.tif"
    florin.io.write(path, florin.as_volume(p.image, spacing=(1.0, 0.5, 0.5), units="um"))
    return p, path


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return _write_phantom(SHAPE, tmp_path_factory.mktemp("phantom"))


@pytest.fixture(scope="module")
def serial_result(sample, tmp_path_factory):
    _, path = sample
    out_dir = tmp_path_factory.mktemp("serial")
    spy = Spy()
    return seed_pipeline(out_dir, spy=spy)(path), spy.seen, out_dir


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    directory = tmp_path_factory.mktemp("small")
    _, path = _write_phantom(SMALL, directory)
    return path, seed_pipeline(directory)(path)


def test_seed_typo_is_reported():
    with pytest.raises(OperatorBindError, match="did you mean `threshold`"):
        thresholding.ndnt(shape=(10, 64, 64), thresshold=0.3)


def test_foreground_dice(sample, serial_result):
    p, _ = sample
    classes, _, _ = serial_result
    found, truth = classes.values > 0, p.labels > 0
    dice = 2 * np.logical_and(found, truth).sum() / (found.sum() + truth.sum())
    assert dice >= 0.9, dice


def test_objects_get_their_true_class(sample, serial_result):
    p, _ = sample
    _, regions, _ = serial_result
    detected = regions.labels.values
    class_of = np.zeros(int(detected.max()) + 1, np.int64)
    class_of[regions.table["label"]] = regions.table["class_id"]
    assert regions.classes == {1: "cell", 2: "vasculature"}
    # match each ground-truth object to the detected object that overlaps it most
    n_true = int(p.labels.max())
    fg = (p.labels > 0) & (detected > 0)
    overlap = np.zeros((n_true + 1, int(detected.max()) + 1), np.int64)
    np.add.at(overlap, (p.labels[fg].astype(np.int64), detected[fg].astype(np.int64)), 1)
    best = overlap[1:].argmax(axis=1)
    matched = overlap[1:].max(axis=1) > 0
    correct = matched & (class_of[best] == p.object_classes)
    assert p.n_cells >= 100 and p.n_vessels >= 3
    assert correct.mean() >= 0.95, (correct.sum(), n_true)


def test_outputs_on_disk(serial_result):
    classes, _, out_dir = serial_result
    saved = florin.io.read(out_dir / "labeled.tiff")
    np.testing.assert_array_equal(saved.values, classes.values)
    assert saved.dtype == np.uint8
    assert saved.attrs["classes"] == {"1": "cell", "2": "vasculature"}
    assert tuple(saved.attrs["spacing"]) == (1.0, 0.5, 0.5)
    assert florin.io.read(out_dir / "segmented.tiff").dtype == bool


@pytest.mark.parametrize("executor", [e for e in executors() if e is not florin.Serial], ids=lambda e: e.__name__)
def test_parallel_versions_give_the_identical_class_volume(executor, small, tmp_path):
    path, classes = small
    got = seed_pipeline(tmp_path, executor)(path)
    assert got.dtype == classes.dtype and got.attrs["classes"] == classes.attrs["classes"]
    np.testing.assert_array_equal(got.values, classes.values)


def test_labeling_inside_the_tiled_pipeline_gives_the_same_classes(small):
    # label per tile (merged at the join) instead of after it: identical labels, identical classes
    path, classes = small
    pipeline = florin.Serial(
        florin.load(),
        florin.tile(shape=(10, 64, 64), stride=(10, 32, 32)),
        ThreadMap(thresholding.ndnt(shape=(10, 64, 64), threshold=0.3), morphology.binary_opening(), conncomp.label()),
        morphology.remove_small_holes(max_size=19),
        conncomp.regionprops(intensity="input"),
        ThreadMap(classifiers()),
        florin.reconstruct(),
    )
    np.testing.assert_array_equal(pipeline(path).values, classes.values)
