"""classify on a whole Regions table is vectorised: one numpy pass per classifier, no Region objects (issue 13)."""

import numpy as np

import florin
from florin.classification import BoundsClassifier
from florin.regions import Region, Regions

N = 1_000_000


def _big_table():
    rng = np.random.default_rng(11)
    table = {
        "label": np.arange(1, N + 1, dtype=np.int64),
        "area": rng.integers(1, 500, N),
        "depth": rng.integers(1, 30, N),
        "height": rng.integers(1, 120, N),
        "width": rng.integers(1, 120, N),
        "intensity_mean": rng.normal(100.0, 30.0, N),
    }
    return Regions(table, None, dims=("z", "y", "x"), spacing=(1.0, 1.0, 1.0))


def test_million_row_table_is_classified_without_a_call_per_region(monkeypatch):
    regions = _big_table()
    classifiers = [
        florin.bounds_classifier("cell", area=(100, 300), depth=(10, 25), width=(50, 100), height=(50, 100)),
        florin.bounds_classifier("bright", intensity_mean=(150, None)),
        florin.bounds_classifier("cell", area=(400, None)),  # a second "cell" rule shares the id
        florin.bounds_classifier("vasculature", depth=5),
    ]
    step = florin.classify(*classifiers)

    def per_region(*args, **kwargs):
        raise AssertionError("classify called a classifier per region on a whole table")

    monkeypatch.setattr(BoundsClassifier, "__call__", per_region)
    monkeypatch.setattr(Regions, "items", per_region)
    monkeypatch.setattr(Regions, "__iter__", per_region)
    got = step(regions)
    monkeypatch.undo()

    t = regions.table
    rules = [
        (t["area"] >= 100)
        & (t["area"] <= 300)
        & (t["depth"] >= 10)
        & (t["depth"] <= 25)
        & (t["width"] >= 50)
        & (t["width"] <= 100)
        & (t["height"] >= 50)
        & (t["height"] <= 100),
        t["intensity_mean"] >= 150,
        t["area"] >= 400,
        t["depth"] <= 5,
    ]
    ids = np.select(rules, [1, 2, 1, 3], default=0)
    np.testing.assert_array_equal(got.table["class_id"], ids)
    assert got.classes == {1: "cell", 2: "bright", 3: "vasculature"}
    assert got.table["class_id"].dtype == np.int64
    names = np.array([None, "cell", "bright", "vasculature"], object)
    assert (got.table["class_name"] == names[ids]).all()
    assert set(np.unique(ids)) == {0, 1, 2, 3}
    # the same classes as classifying region by region (a pipeline mapping classify over the regions)
    for i in np.random.default_rng(0).choice(N, 200, replace=False):
        one = step(regions[int(i)])
        assert isinstance(one, Region)
        assert (one.class_id, one.class_name) == (got.table["class_id"][i], got.table["class_name"][i])
