"""florin.reconstruct and florin.reconstruction.render."""

import numpy as np
import pytest

import florin
import florin.conncomp as conncomp
from florin.errors import ClassificationError, ParameterError
from florin.reconstruction import class_table, render


@pytest.fixture
def classified():
    labels = np.zeros((3, 8, 8), np.uint32)
    labels[0, 0:2, 0:2] = 1  # 4 voxels: small
    labels[1:3, 3:8, 3:8] = 2  # 50 voxels: big
    labels[2, 0, 7] = 5  # 1 voxel: small
    vol = florin.as_volume(labels, spacing=(2.0, 1.0, 1.0), units="um")
    step = florin.classify(florin.bounds_classifier("small", area=10), florin.bounds_classifier("big", area=(20, 60)))
    return labels, step(conncomp.regionprops(vol))


def test_class_volume(classified):
    labels, regions = classified
    out = florin.reconstruct()(regions)
    assert out.dtype == np.uint8 and out.dims == ("z", "y", "x")
    expected = np.select([labels == 1, labels == 2, labels == 5], [1, 2, 1], 0)
    np.testing.assert_array_equal(out.values, expected)
    assert out.attrs["classes"] == {"1": "small", "2": "big"}
    assert out.attrs["spacing"] == (2.0, 1.0, 1.0) and out.attrs["units"] == "um"
    np.testing.assert_array_equal(out.coords["z"], [0.0, 2.0, 4.0])
    assert class_table(out) == {1: "small", 2: "big"}


def test_unmatched_and_dropped_regions_are_background(classified):
    labels, regions = classified
    step = florin.classify(florin.bounds_classifier("big", area=(20, 60)))
    out = florin.reconstruct(step(conncomp.regionprops(labels)))
    np.testing.assert_array_equal(out.values, (labels == 2).astype(np.uint8))
    # a mapped step dropping regions
    keep_big = florin.florinate(lambda r: r if r.area > 10 else None, name="keep_big")
    fewer = florin.Serial(florin.Serial(keep_big()))(regions)
    np.testing.assert_array_equal(florin.reconstruct(fewer).values, np.where(labels == 2, 2, 0))


def test_uint16_beyond_255_classes():
    labels = np.arange(1, 301, dtype=np.uint32).reshape(10, 30)
    classifiers = [florin.bounds_classifier(f"c{i}", label=(i, i)) for i in range(1, 301)]
    out = florin.reconstruct(florin.classify(*classifiers)(conncomp.regionprops(labels)))
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out.values, labels)
    assert len(out.attrs["classes"]) == 300 and out.attrs["classes"]["300"] == "c300"


def test_tiff_round_trip_keeps_the_class_table(tmp_path, classified):
    _, regions = classified
    out = florin.reconstruct(regions)
    florin.Serial(florin.save(tmp_path / "labeled.tiff"))(out)
    back = florin.io.read(tmp_path / "labeled.tiff")
    np.testing.assert_array_equal(back.values, out.values)
    assert back.dtype == np.uint8
    assert back.attrs["classes"] == {"1": "small", "2": "big"}
    assert class_table(back) == {1: "small", 2: "big"}
    assert tuple(back.attrs["spacing"]) == (2.0, 1.0, 1.0)


def test_reconstruct_errors(classified):
    labels, regions = classified
    with pytest.raises(ClassificationError, match="classify"):
        florin.reconstruct(conncomp.regionprops(labels))
    with pytest.raises(ParameterError, match="regions"):
        florin.reconstruct()(np.zeros((2, 2)))
    with pytest.raises(ParameterError, match="dtype"):
        florin.reconstruct(dtype=np.float32)


def test_reconstruct_memory_mapped_labels(tmp_path, classified, monkeypatch):
    import florin.reconstruction as rec

    labels, _ = classified
    np.save(tmp_path / "labels.npy", labels)
    lazy = florin.io.read(tmp_path / "labels.npy")
    step = florin.classify(florin.bounds_classifier("small", area=10), florin.bounds_classifier("big"))
    monkeypatch.setattr(rec, "_SLAB_VOXELS", 64)
    out = florin.reconstruct(step(conncomp.regionprops(lazy)))
    np.testing.assert_array_equal(out.values, np.select([labels == 2, labels > 0], [2, 1], 0))


def test_render_colours(classified):
    _, regions = classified
    classes = florin.reconstruct(regions)
    rgb = render(classes, colors={"big": (1, 2, 3)})
    assert rgb.dtype == np.uint8 and rgb.shape == (*classes.shape, 3) and rgb.dims[-1] == "rgb"
    np.testing.assert_array_equal(rgb.values[classes.values == 2], [[1, 2, 3]] * 50)
    np.testing.assert_array_equal(rgb.values[classes.values == 0][0], [0, 0, 0])
    np.testing.assert_array_equal(rgb.values[classes.values == 1][0], [230, 25, 75])
    with pytest.raises(ParameterError, match="triple"):
        render(classes, colors=[(300, 0, 0)])


def test_an_empty_volume_gives_all_zero_classes_and_a_header_only_table(tmp_path):
    from florin.cli import main

    pipe = florin.Serial(conncomp.label(), conncomp.regionprops(),
                         florin.classify(florin.bounds_classifier("cell", area=(1, 5))), florin.reconstruct())
    out = pipe(np.zeros((3, 4, 5), bool))
    assert out.shape == (3, 4, 5) and not out.values.any() and out.values.dtype == np.uint8
    volume, labels, table = tmp_path / "zeros.npy", tmp_path / "classes.npy", tmp_path / "objects.csv"
    np.save(volume, np.zeros((4, 16, 16), np.float32))  # --min-size removes every object below
    assert main(["segment", str(volume), "-o", str(labels), "--class", "cell:area=1..5", "--objects", str(table),
                 "--min-size", "100000"]) == 0
    assert not np.load(labels).any()
    lines = table.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("label,area")
