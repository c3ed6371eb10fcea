"""conncomp.regionprops: values match scikit-image; the Regions collection."""

import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from objects_helpers import executors
from skimage.measure import regionprops as sk_regionprops

import florin
import florin.conncomp as conncomp
from florin.errors import ParameterError
from florin.regions import Region, Regions

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def label_images(draw):
    ndim = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.lists(st.integers(1, 12 if ndim == 3 else 40), min_size=ndim, max_size=ndim)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["components", "random"]))
    if kind == "components":
        labels = conncomp.label(rng.random(shape) < 0.5).values
    else:  # arbitrary labels: disconnected regions, gaps in the numbering
        labels = rng.integers(0, draw(st.integers(1, 30)), size=shape).astype(np.int32)
    spacing = tuple(draw(st.sampled_from([0.5, 1.0, 2.5])) for _ in range(ndim))
    return labels, rng.normal(size=shape).astype(np.float32), spacing


@SETTINGS
@given(label_images())
def test_values_match_scikit_image(case):
    labels, intensity, spacing = case
    vol = florin.as_volume(labels, spacing=spacing)
    regions = conncomp.regionprops(vol, intensity=intensity)
    want = sk_regionprops(labels, intensity_image=intensity.astype(np.float64))
    want_phys = sk_regionprops(labels, spacing=spacing)
    assert len(regions) == len(want)
    df = regions.to_dataframe()
    np.testing.assert_array_equal(df["label"], [r.label for r in want])
    np.testing.assert_array_equal(df["area"], [r.area for r in want])
    for got, ref, phys in zip(regions, want, want_phys, strict=True):
        assert got.label == ref.label and got.area == ref.area
        assert got.bbox == tuple(ref.bbox)
        np.testing.assert_allclose(got.centroid, ref.centroid, rtol=1e-12)
        np.testing.assert_allclose(got.intensity_mean, ref.intensity_mean, rtol=1e-5)
        assert got.intensity_min == pytest.approx(ref.intensity_min)
        assert got.intensity_max == pytest.approx(ref.intensity_max)
        np.testing.assert_allclose(got.physical_volume, phys.area, rtol=1e-12)
        np.testing.assert_allclose(got.physical_centroid, phys.centroid, rtol=1e-12)
        extents = [ref.bbox[i + labels.ndim] - ref.bbox[i] for i in range(labels.ndim)]
        names = ["depth", "height", "width"][-labels.ndim :]
        assert [getattr(got, n) for n in names] == extents
        assert got.extent == tuple(extents)


def test_three_d_properties_and_names():
    labels = np.zeros((4, 5, 6), np.uint32)
    labels[1:3, 1:4, 2:6] = 7
    vol = florin.as_volume(labels, spacing=(2.0, 0.5, 0.5), units="um")
    (r,) = conncomp.regionprops(vol)
    assert (r.label, r.area, r.depth, r.height, r.width) == (7, 24, 2, 3, 4)
    assert r.bbox == (1, 1, 2, 3, 4, 6)
    assert r.slice == (slice(1, 3), slice(1, 4), slice(2, 6))
    assert r.centroid == (1.5, 2.0, 3.5)
    assert r.physical_volume == 24 * 2.0 * 0.5 * 0.5
    assert r.physical_centroid == (3.0, 1.0, 1.75)
    assert "intensity_mean" not in r
    with pytest.raises(AttributeError, match="did you mean 'centroid_z'"):
        r.centroid_q  # noqa: B018


def test_two_d_has_height_and_width_only():
    (r,) = conncomp.regionprops(np.ones((2, 3), np.uint8))
    assert (r.height, r.width) == (2, 3)
    assert "depth" not in r


def test_physical_centroid_uses_the_volume_coordinates():
    vol = florin.as_volume(np.array([[0, 1, 1]]), dims=("y", "x"))
    vol = vol.assign_coords(x=[10.0, 10.5, 11.0], y=[-3.0])
    vol.attrs["spacing"] = (1.0, 0.5)
    (r,) = conncomp.regionprops(vol)
    assert r.physical_centroid == (-3.0, 10.75)


def test_slabs_aggregate_to_the_whole(rng):
    labels = conncomp.label(rng.random((13, 20, 17)) < 0.5).values
    intensity = rng.normal(size=labels.shape)
    whole = conncomp.regionprops(labels, intensity=intensity).to_dataframe()
    for slab in (1, 3, 5):
        parts = conncomp.regionprops(labels, intensity=intensity, slab=slab).to_dataframe()
        pd.testing.assert_frame_equal(parts, whole, check_exact=False, rtol=1e-12)


def test_memory_mapped_volume_is_measured_in_slabs(tmp_path, rng, monkeypatch):
    import florin.conncomp as cc

    labels = conncomp.label(rng.random((9, 16, 16)) < 0.5).values
    np.save(tmp_path / "labels.npy", labels)
    lazy = florin.io.read(tmp_path / "labels.npy")
    monkeypatch.setattr(cc, "_SLAB_VOXELS", 256)  # one slice per slab
    got = conncomp.regionprops(lazy).to_dataframe()
    pd.testing.assert_frame_equal(got, conncomp.regionprops(labels).to_dataframe())


def test_intensity_input_is_the_pipeline_input(rng, tmp_path):
    image = rng.random((6, 20, 20)).astype(np.float32)
    pipeline = florin.Serial(lambda v: v > 0.6, conncomp.label(), conncomp.regionprops(intensity="input"))
    regions = pipeline(image)
    labels = conncomp.label(image > 0.6).values
    expected = conncomp.regionprops(labels, intensity=image).to_dataframe()
    pd.testing.assert_frame_equal(regions.to_dataframe(), expected)
    # also when the pipeline loads a file
    np.save(tmp_path / "in.npy", image)
    loaded = florin.Serial(florin.load(tmp_path / "in.npy"), *pipeline.steps)()
    pd.testing.assert_frame_equal(loaded.to_dataframe(), expected)


def test_intensity_errors():
    labels = np.ones((3, 3), np.uint8)
    with pytest.raises(ParameterError, match="no pipeline run"):
        conncomp.regionprops(labels, intensity="input")
    with pytest.raises(ParameterError, match="shape"):
        conncomp.regionprops(labels, intensity=np.ones((3, 4)))
    with pytest.raises(ParameterError, match="intensity must be"):
        conncomp.regionprops(intensity=3)  # when the pipeline is built
    with pytest.raises(ParameterError, match="label it first"):
        conncomp.regionprops(np.ones((3, 3), bool))
    with pytest.raises(ParameterError, match="integer label volume"):
        conncomp.regionprops(np.ones((3, 3), np.float32))


def test_regions_are_light_and_picklable(rng):
    labels = conncomp.label(rng.random((40, 60, 60)) < 0.4).values
    regions = conncomp.regionprops(labels, intensity=rng.random(labels.shape))
    region = regions[0]
    assert isinstance(region, Region)
    assert len(pickle.dumps(region)) < 2000  # plain numbers, not the volume
    again = pickle.loads(pickle.dumps(region))
    assert again == region and again.bbox == region.bbox
    assert regions.items()[5] == regions[5]
    assert regions[-1].label == regions.table["label"][-1]
    with pytest.raises(IndexError):
        regions[len(regions)]


@pytest.mark.parametrize("executor", executors(), ids=lambda e: e.__name__)
def test_pipelines_map_steps_over_regions(executor, rng):
    labels = conncomp.label(rng.random((8, 30, 30)) < 0.4).values
    big = florin.florinate(lambda region, *, min_area=5: region if region.area >= min_area else None, name="big")
    area = florin.florinate(lambda region: region.area, name="area")
    regions = conncomp.regionprops(labels)
    kept = florin.Serial(executor(big(min_area=5)))(regions)
    assert isinstance(kept, Regions)
    expected = regions.table["label"][regions.table["area"] >= 5]
    np.testing.assert_array_equal(kept.table["label"], expected)
    assert kept.labels is regions.labels
    areas = florin.Serial(executor(area()))(regions)
    assert areas == regions.table["area"].tolist()


def test_to_dataframe_and_csv(tmp_path):
    labels = np.array([[1, 1, 0], [0, 0, 2]])
    regions = conncomp.regionprops(florin.as_volume(labels, spacing=(2.0, 1.0)), intensity=np.arange(6.0).reshape(2, 3))
    df = regions.to_dataframe()
    assert list(df.columns[:4]) == ["label", "area", "height", "width"]
    assert {
        "bbox_min_y",
        "bbox_max_x",
        "centroid_x",
        "physical_volume",
        "physical_centroid_y",
        "intensity_mean",
        "intensity_min",
        "intensity_max",
    } <= set(df.columns)
    path = tmp_path / "out" / "regions.csv"
    regions.to_csv(path)
    back = pd.read_csv(path)
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert [p.name for p in path.parent.iterdir()] == ["regions.csv"]  # no temporary left behind


def test_to_csv_failure_leaves_no_file(tmp_path):
    regions = conncomp.regionprops(np.array([[1, 2]]))
    with pytest.raises(TypeError):
        regions.to_csv(tmp_path / "r.csv", not_an_option=1)
    assert list(tmp_path.iterdir()) == []


def test_empty_volume_gives_no_regions():
    regions = conncomp.regionprops(np.zeros((3, 4), np.uint16))
    assert len(regions) == 0 and list(regions) == []
    assert len(regions.to_dataframe()) == 0


def test_regionprops_is_not_mapped_over_tiles():
    # regionprops needs whole objects: after a tiled labeling it gets the joined volume
    mask = np.zeros((10, 10), bool)
    mask[2:8, 2:8] = True
    regions = florin.Serial(florin.tile(shape=4), conncomp.label(), conncomp.regionprops())(mask)
    assert len(regions) == 1 and regions[0].area == 36


@pytest.mark.parametrize("executor", executors(), ids=lambda e: e.__name__)
@pytest.mark.parametrize("connectivity", [1, 3])
def test_tiled_regionprops_aggregates_tile_statistics(executor, connectivity, rng):
    from scipy import ndimage as ndi

    image = ndi.gaussian_filter(rng.random((14, 40, 36)), 1.2).astype(np.float32)
    mask_step = florin.florinate(lambda im, *, level=0.5: im > level, name="above")
    intensity = rng.normal(size=image.shape)
    pipeline = florin.Serial(
        florin.tile(shape=(5, 12, 16), stride=(4, 10, 13)),
        executor(
            mask_step(level=0.54),
            conncomp.label(connectivity=connectivity),
            conncomp.regionprops(intensity=intensity),
        ),
    )
    regions = pipeline(image)
    assert isinstance(regions, Regions) and len(regions) > 20
    labels = conncomp.label(image > 0.54, connectivity=connectivity)
    np.testing.assert_array_equal(regions.labels.values, labels.values)
    whole = conncomp.regionprops(labels, intensity=intensity).to_dataframe()
    pd.testing.assert_frame_equal(regions.to_dataframe(), whole, check_exact=False, rtol=1e-10)
    classified = florin.classify(florin.bounds_classifier("small", area=20), florin.bounds_classifier("big"))(regions)
    assert florin.reconstruct(classified).shape == image.shape


def test_tiled_regionprops_of_the_input(rng):
    image = rng.random((6, 20, 24)).astype(np.float32)
    above = florin.florinate(lambda im: im > 0.55, name="above")
    runner = getattr(florin, "Multithread", florin.Serial)  # threads see the run's input
    regions = florin.Serial(
        florin.tile(shape=(3, 8, 8)), runner(above(), conncomp.label(), conncomp.regionprops(intensity="input"))
    )(image)
    expected = conncomp.regionprops(conncomp.label(image > 0.55), intensity=image).to_dataframe()
    pd.testing.assert_frame_equal(regions.to_dataframe(), expected, check_exact=False, rtol=1e-10)


def test_regionprops_on_unlabelled_tiles_is_explained(rng):
    labels = conncomp.label(rng.random((8, 8)) < 0.5)
    with pytest.raises(ParameterError, match="needs conncomp.label"):
        florin.Serial(florin.tile(shape=4), florin.Serial(conncomp.regionprops()))(labels)


def test_scikit_image_names_label_image_and_intensity_image(tmp_path):
    # Issue 16 item 5: regionprops takes scikit-image's names: the label image first (label_image), and
    # intensity_image= as the same thing as florin's intensity= (which also takes a path or 'input').
    import inspect

    labels = np.array([[1, 1, 0, 2], [0, 1, 0, 2]])
    image = np.array([[1.0, 3.0, 9.0, 4.0], [9.0, 5.0, 9.0, 6.0]])
    assert next(iter(inspect.signature(conncomp.regionprops.func).parameters)) == "label_image"
    by_florin = conncomp.regionprops(labels, intensity=image).to_dataframe()
    by_skimage = conncomp.regionprops(labels, intensity_image=image).to_dataframe()
    pd.testing.assert_frame_equal(by_florin, by_skimage)
    assert by_skimage["intensity_mean"].tolist() == [3.0, 5.0]
    # In a pipeline, 'input' is what the pipeline was called with, under either name.
    got = florin.Serial(conncomp.label(), conncomp.regionprops(intensity_image="input"))(image)
    want = florin.Serial(conncomp.label(), conncomp.regionprops(intensity="input"))(image)
    pd.testing.assert_frame_equal(got.to_dataframe(), want.to_dataframe())
    assert got.to_dataframe()["intensity_mean"].tolist() == [image.mean()]  # one object: every voxel is nonzero
    with pytest.raises(ParameterError, match=r"regionprops\(\): pass intensity= or intensity_image=.*not both"):
        conncomp.regionprops(intensity=image, intensity_image=image)


def test_a_lazily_read_volume_is_read_once_by_ndnt_label_and_regionprops(tmp_path, rng, monkeypatch):
    """`.data` of a lazily read file reads it again each time: `florin segment` read its input 4 times, not 2."""
    import tifffile

    import florin.io.lazy as lazy
    import florin.io.tiff as tiff
    import florin.thresholding as thresholding

    image = rng.integers(0, 1000, (7, 32, 32)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in.tif", image)
    tifffile.imwrite(tmp_path / "mask.tif", (image > 500).astype(np.uint8))
    reads = []
    read_raw = lazy.read_raw
    counting = lambda *a, **k: reads.append(1) or read_raw(*a, **k)  # noqa: E731
    # florin.io.tiff binds read_raw when first imported: patch it there too, whatever ran first
    monkeypatch.setattr(lazy, "read_raw", counting)
    monkeypatch.setattr(tiff, "read_raw", counting)
    vol = florin.io.read(tmp_path / "in.tif")
    mask = thresholding.ndnt(vol, shape=(3, 9, 9))
    assert len(reads) == 1
    labels = conncomp.label(florin.io.read(tmp_path / "mask.tif"))
    assert len(reads) == 2
    regions = conncomp.regionprops(labels, intensity=florin.io.read(tmp_path / "in.tif"))
    assert len(reads) == 3
    assert mask.values.any()
    want = conncomp.regionprops(conncomp.label(image > 500).values, intensity=image)
    np.testing.assert_array_equal(regions.table["intensity_sum"], want.table["intensity_sum"])
