"""florin.tune: parameters from a sparse annotation (issue 19).

One small phantom (16, 64, 64) with a dozen cells; an annotation is one or a
few fully painted z slices (2 foreground, 1 background).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from executor_helpers import assert_executors_agree

import florin
from florin.data import phantom
from florin.errors import AnnotationError, ParameterError
from florin.pipeline_file import from_toml, to_toml
from florin.tuning import SearchSpace, build_pipeline, estimate_parameters, score_masks, tune

#: A space small enough for the exhaustive grid in a few seconds (1080 configurations).
SPACE = {"shape": [[1, 3, 5], [9, 17, 33], [9, 17, 33]], "threshold": [0.1, 0.15, 0.2, 0.3, 0.4],
         "opening": [0, 1], "min_size": [0, 40]}


@pytest.fixture(scope="module")
def sample():
    return phantom((16, 64, 64), seed=3, n_cells=12)


def painted(sample, slices):
    annotation = np.zeros(sample.image.shape, np.uint8)
    for z in slices:
        annotation[z] = np.where(sample.labels[z] > 0, 2, 1)
    return annotation


def whole_dice(pipeline, sample):
    return score_masks(pipeline(sample.image).values > 0, sample.labels > 0)


def test_florin_tune_is_the_top_level_name():
    import florin.tuning

    assert florin.tune is florin.tuning.tune and "tune" in florin.__all__


def test_tuning_from_one_slice_comes_within_001_of_the_exhaustive_grid(sample):
    annotation = painted(sample, [8])
    grid_pipe, grid = tune(sample.image, annotation, search=SPACE, strategy="grid", budget=None, tile=None)
    pipe, report = tune(sample.image, annotation, search=SPACE, budget=None, tile=None)
    assert grid.evaluations == grid.grid_size == SearchSpace.coerce(SPACE, sample.image.shape).size == 1080
    assert grid.stopped == "grid" and report.stopped == "converged"
    # A small fraction of the grid's evaluations, hence of its time (counted, not timed: tests assert no timings;
    # benchmarks/bench_tune.py reports the times).
    assert report.evaluations <= grid.evaluations // 4
    assert report.score >= grid.score - 1e-9  # here it even finds the grid's best annotated score
    assert whole_dice(pipe, sample) >= whole_dice(grid_pipe, sample) - 0.01
    assert whole_dice(pipe, sample) > 0.95


def test_a_small_annotated_crop_is_enough(sample):
    annotation = np.zeros(sample.image.shape, np.uint8)
    crop = (slice(4, 12), slice(16, 48), slice(16, 48))  # an eighth of the volume, painted in 3-D
    annotation[crop] = np.where(sample.labels[crop] > 0, 2, 1)
    pipe, report = tune(sample.image, annotation, search=SPACE, tile=None)
    assert report.searched_regions == [(4, 11)] and report.computed_fraction < 0.5
    assert report.score > 0.95 and whole_dice(pipe, sample) > 0.95


def test_scores_on_crops_equal_the_whole_volume_run_on_the_annotated_voxels(sample):
    # NDNT and the opening are exact on a crop with its halo: no min_size, so no approximation at all.
    annotation = painted(sample, [3, 8, 13])
    _, report = tune(sample.image, annotation, search={**SPACE, "min_size": [0]}, holdout=0, tile=None)
    assert 0 < report.computed_fraction < 1
    for trial in report.trials[:: max(1, len(report.trials) // 12)]:
        labels = build_pipeline(trial.params)(sample.image).values
        assert trial.score == score_masks(labels, annotation)


def test_heldout_scores_are_reported_next_to_searched_ones(sample):
    annotation = painted(sample, [2, 5, 8, 11, 14])
    pipe, report = tune(sample.image, annotation, search=SPACE, tile=None)
    assert len(report.searched_regions) == 3 and len(report.heldout_regions) == 2
    held = np.zeros_like(annotation)
    for first, last in report.heldout_regions:
        held[first:last + 1] = annotation[first:last + 1]
    labels = pipe(sample.image).values
    assert report.heldout_score == pytest.approx(score_masks(labels, held), abs=1e-3)
    assert all(t.heldout is not None for t in report.top)
    assert "held-out" in report.summary() and f"{report.heldout_score:.4f}" in report.summary()
    # one annotated region: nothing to hold out, and the report says so
    _, single = tune(sample.image, painted(sample, [8]), search=SPACE, tile=None)
    assert single.heldout_score is None and "annotate more slices" in single.summary()


def _with(pipeline, make):
    """``pipeline`` with every (nested) pipeline run by ``make(*steps)``."""
    steps = [_with(s, make) if isinstance(s, florin.Pipeline) else s for s in pipeline.steps]
    return make(*steps)


def test_written_toml_round_trips_and_runs_equal_under_every_executor(sample, tmp_path):
    pipe, report = tune(sample.image, painted(sample, [8]), search={**SPACE, "opening": [2], "min_size": [40]},
                        tile=(8, 32, 32))
    text = to_toml(pipe)
    assert to_toml(from_toml(text)) == text
    path = tmp_path / "pipeline.toml"
    path.write_text(text)
    expected = build_pipeline(report.params)(sample.image).values  # untiled
    np.testing.assert_array_equal(florin.Pipeline.from_toml(path)(sample.image).values, expected)
    # Serial, Multithread, Multiprocess and every plugin executor (florin-dask: CI installs it), each exactly equal
    # to Serial. Real MPI jobs (mpiexec -n 2, a spawned MPIPoolExecutor) run a tuned TOML of the same steps plus
    # classes in tests/test_tuning_classes.py (each launch costs ~30 s; once is enough).
    out = assert_executors_agree({"tuned": (lambda make: _with(florin.Pipeline.from_toml(path), make), sample.image)},
                                 tmp_path, mpi=())["tuned"]
    assert {"serial", "multithread", "multiprocess"} <= set(out)
    if importlib.util.find_spec("florin_dask") is not None:
        assert "dask" in out


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda a: a[:-1], "annotation: shape (15, 64, 64) differs from the volume's (16, 64, 64)"),
        (lambda a: np.where(a == 2, 1, a), "annotation: no foreground voxels (value 2)"),
        (lambda a: np.where(a == 1, 0, a), "annotation: no background voxels (value 1)"),
        (lambda a: np.where(a == 2, 3, a), "annotation: values must be 0 (unlabeled), 1 (background) or 2 "
                                           "(foreground), found 3"),
        (lambda a: a.astype(float) * 0.5, "values must be 0 (unlabeled), 1 (background) or 2 (foreground), found 0.5"),
    ],
    ids=["wrong-shape", "no-foreground", "no-background", "other-values", "fractions"],
)
def test_bad_annotations_give_one_clear_line(sample, edit, message):
    with pytest.raises(AnnotationError) as info:
        tune(sample.image, edit(painted(sample, [8])))
    assert message in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, ParameterError)  # the CLI exits 2 for it


def test_a_label_image_of_a_few_objects_is_accepted(sample):
    few = np.where(np.isin(sample.labels, [1, 2, 3]), sample.labels, 0)
    pipe, report = tune(sample.image, labels=few, search=SPACE, metric="object_f1", tile=None)
    assert report.metric == "object_f1" and report.score >= 0.99
    assert whole_dice(pipe, sample) > 0.9
    with pytest.raises(AnnotationError, match="labels: no objects"):
        tune(sample.image, labels=np.zeros_like(few))


def test_labels_next_to_an_annotation_give_the_objects_of_object_f1(sample):
    # object ids, or one value per class (all cells 1, the vessel 2): the same objects, connected regions of a value
    annotation = painted(sample, [4, 8, 12])
    by_id = tune(sample.image, annotation, labels=sample.labels, search=SPACE, metric="object_f1", tile=None,
                 max_evaluations=30)[1]
    by_class = tune(sample.image, annotation, labels=sample.classes, search=SPACE, metric="object_f1", tile=None,
                    max_evaluations=30)[1]
    assert [t.score for t in by_class.trials] == [t.score for t in by_id.trials]


@pytest.mark.parametrize("metric", ["dice", "jaccard", "object_f1"])
def test_metrics_are_scored_on_annotated_voxels_only(sample, metric):
    annotation = painted(sample, [8])
    _, report = tune(sample.image, annotation, search=SPACE, metric=metric, tile=None, max_evaluations=40)
    assert report.stopped == "max_evaluations" and report.evaluations == 40
    labels = build_pipeline(report.params)(sample.image).values
    truth = sample.labels if metric == "object_f1" else None
    expected = score_masks(labels, annotation == 2, where=annotation > 0, metric=metric, truth_labels=truth)
    assert report.score == pytest.approx(expected, abs=0.02 if metric == "object_f1" else 1e-3)


def test_bad_options_name_the_parameter(sample):
    annotation = painted(sample, [8])
    with pytest.raises(ParameterError, match="metric: must be one of 'dice', 'jaccard', 'object_f1'"):
        tune(sample.image, annotation, metric="f1")
    with pytest.raises(ParameterError, match="search: unknown key"):
        tune(sample.image, annotation, search={"shapes": [[1], [3], [3]]})
    with pytest.raises(ParameterError, match="search shape: needs one list of sizes per axis"):
        tune(sample.image, annotation, search={"shape": [3, 3]})
    with pytest.raises(ParameterError, match=r"holdout: must be a fraction in \[0, 1\), got 1.5"):
        tune(sample.image, annotation, holdout=1.5)
    with pytest.raises(ParameterError, match="budget: must be seconds >= 0 or None"):
        tune(sample.image, annotation, budget=-1)


def test_a_zero_budget_still_evaluates_one_configuration(sample):
    pipe, report = tune(sample.image, painted(sample, [8]), budget=0, tile=None)
    assert report.evaluations == 1 and report.stopped == "budget" and report.top[0].params == report.params
    assert pipe(sample.image).shape == sample.image.shape


def test_without_annotation_polarity_and_scale_are_estimated():
    # bright "nuclei" larger than the default window (volume / 8), as in a fluorescence volume
    big = phantom((24, 96, 96), seed=2, n_cells=10, n_vessels=1, cell_radius=((5, 7), (9, 12), (9, 12)))
    bright = (65535 - big.image).astype(np.uint16)
    estimate = estimate_parameters(bright)
    assert estimate["polarity"] == "bright" and estimate_parameters(big.image)["polarity"] == "dark"
    assert estimate["shape"][1] >= 2 * 9 and estimate["shape"][2] >= 2 * 9  # the window holds a whole nucleus
    pipe, report = tune(bright, tile=None)
    assert report.stopped == "estimated" and report.params["polarity"] == "bright"
    assert "polarity=bright" in report.summary()
    auto = score_masks(pipe(bright).values > 0, big.labels > 0)
    default = score_masks(build_pipeline({"shape": (3, 12, 12), "threshold": 0.25, "polarity": "bright",
                                          "opening": 1, "min_size": 64})(bright).values > 0, big.labels > 0)
    assert auto > 0.9 and auto > default + 0.05


def test_report_png_and_html_show_the_landscape_and_best_result(sample, tmp_path):
    from florin.errors import OutputExistsError
    from florin.tuning_report import save_report

    _, report = tune(sample.image, painted(sample, [4, 8, 12]), search={**SPACE, "min_size": [40]}, tile=None)
    png, page = tmp_path / "report.png", tmp_path / "report.html"
    save_report(png, report)
    save_report(page, report)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert "data:image/png;base64," in page.read_text() and "held-out" in page.read_text()
    with pytest.raises(OutputExistsError):
        save_report(png, report)
    with pytest.raises(ParameterError, match="report: must end in .png or .html"):
        save_report(tmp_path / "report.pdf", report)
