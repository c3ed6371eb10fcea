"""Reader and writer round trips through a real (headless) napari viewer."""

from __future__ import annotations

import h5py
import napari
import numpy as np
import pytest
from florin_napari import _reader
from florin_napari._reader import get_reader

import florin
import florin.io

SPACING = (2.0, 0.5, 0.5)


def _open(viewer, path):
    return viewer.open(str(path), plugin="florin-napari")


FORMATS = ["v.tif", "v.ome.tif", "v.npy", "v.h5", "v.nc", "v.zarr", "v.ome.zarr"]


def test_every_format_opens_lazily_with_its_voxel_size(make_napari_viewer, phantom, tmp_path):
    viewer = make_napari_viewer()
    for name in FORMATS:
        path = tmp_path / name
        florin.io.write(path, phantom)
        [layer] = _open(viewer, path)
        _check_layer(layer, phantom)


def _check_layer(layer, phantom):
    import dask.array as da

    assert layer.__class__.__name__ == "Image"
    data = layer.data[0] if layer.multiscale else layer.data
    assert isinstance(data, da.Array)  # lazy: napari computes only the planes it shows
    assert data.chunks[0] == (1,) * phantom.shape[0]
    np.testing.assert_array_equal(np.asarray(data), phantom.values)
    assert tuple(layer.scale) == SPACING
    assert tuple(layer.axis_labels) == ("z (µm)", "y (µm)", "x (µm)")  # the units go to the axis labels
    assert [str(u) for u in layer.units] == ["micrometer"] * 3  # and to napari's layer units


def test_reads_only_the_planes_napari_shows(make_napari_viewer, phantom, tmp_path, monkeypatch):
    from florin_napari import _layers

    path = tmp_path / "v.npy"
    florin.io.write(path, phantom)
    read = []
    original = _layers._Planes.__getitem__

    def spy(self, index):
        read.append(index)
        return original(self, index)

    monkeypatch.setattr(_layers._Planes, "__getitem__", spy)
    viewer = make_napari_viewer()
    [layer] = _open(viewer, path)
    viewer.dims.set_point(0, 5 * SPACING[0])
    planes = {ix[0].start for ix in read if isinstance(ix, tuple) and isinstance(ix[0], slice)}
    assert planes and len(planes) < phantom.shape[0] // 2, planes  # not the whole volume


def test_label_volumes_open_as_labels(make_napari_viewer, labels_volume, tmp_path):
    florin.io.write(tmp_path / "objects.tif", labels_volume)
    classes = labels_volume.copy()
    classes.attrs["classes"] = {"1": "cell"}
    florin.io.write(tmp_path / "result.npy", classes)
    florin.io.write(tmp_path / "volume.tif", labels_volume)
    viewer = make_napari_viewer()
    assert type(_open(viewer, tmp_path / "objects.tif")[0]).__name__ == "Labels"
    assert type(_open(viewer, tmp_path / "result.npy")[0]).__name__ == "Labels"
    assert type(_open(viewer, tmp_path / "volume.tif")[0]).__name__ == "Image"  # nothing says labels


def test_hdf5_dataset_chooser(make_napari_viewer, phantom, tmp_path, monkeypatch):
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f["raw"] = phantom.values
        f["grp/smooth"] = phantom.values // 2
    viewer = make_napari_viewer()
    layers = _open(viewer, path)  # no interactive window: every dataset
    assert [layer.name for layer in layers] == ["two.h5/grp/smooth", "two.h5/raw"]
    monkeypatch.setattr(_reader, "choose_datasets", lambda path, names: ["/raw"])
    [layer] = _open(viewer, path)
    np.testing.assert_array_equal(np.asarray(layer.data), phantom.values)


def test_the_dataset_chooser_asks_in_an_interactive_session(make_napari_viewer, phantom, tmp_path, monkeypatch):
    """With a visible window a dialog lists the datasets (HDF5) or variables (NetCDF) and an 'all' entry."""
    import xarray as xr
    from qtpy.QtWidgets import QApplication, QInputDialog

    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["raw"] = phantom.values
        f["grp/smooth"] = phantom.values // 2
    dims = ("z", "y", "x")
    xr.Dataset({"raw": (dims, phantom.values), "smooth": (dims, phantom.values // 2)}).to_netcdf(tmp_path / "two.nc")

    class Window:  # the session's visible main window
        def isVisible(self):
            return True

    asked, answers = [], []

    def get_item(parent, title, label, items, current, editable):
        asked.append((label, list(items)))
        return answers.pop(0)

    monkeypatch.setattr(QApplication, "activeWindow", staticmethod(lambda: Window()))
    monkeypatch.setattr(QInputDialog, "getItem", staticmethod(get_item))
    viewer = make_napari_viewer()
    for name, keys, raw in (("two.h5", ["/grp/smooth", "/raw"], "/raw"), ("two.nc", ["raw", "smooth"], "raw")):
        path = tmp_path / name
        answers[:] = [(raw, True), ("all 2 datasets", True), ("", False)]
        [layer] = _open(viewer, path)
        assert asked[-1] == (name, ["all 2 datasets", *keys])
        np.testing.assert_array_equal(np.asarray(layer.data), phantom.values)
        assert len(_open(viewer, path)) == 2
        assert _reader.read_layers(str(path)) == []  # cancelled: nothing opens
    monkeypatch.setenv("FLORIN_NAPARI_NO_DIALOG", "1")  # scripts can turn the dialog off
    assert len(_open(viewer, tmp_path / "two.h5")) == 2 and len(asked) == 6


def test_slice_folder(make_napari_viewer, phantom, tmp_path):
    import tifffile

    folder = tmp_path / "slices"
    folder.mkdir()
    for i, plane in enumerate(phantom.values):
        tifffile.imwrite(folder / f"slice_{i}.tif", plane)
    [layer] = _open(make_napari_viewer(), folder)
    np.testing.assert_array_equal(np.asarray(layer.data), phantom.values)


def test_ome_zarr_pyramid_is_one_multiscale_layer(make_napari_viewer, phantom, tmp_path):
    path = tmp_path / "pyr.ome.zarr"
    florin.io.write(path, phantom, levels=3)
    [layer] = _open(make_napari_viewer(), path)
    assert layer.multiscale and len(layer.data) == 3
    assert [tuple(level.shape) for level in layer.data] == [(16, 64, 80), (16, 32, 40), (16, 16, 20)]
    np.testing.assert_array_equal(np.asarray(layer.data[2]), phantom.values[:, ::4, ::4])
    assert tuple(layer.scale) == SPACING


def test_get_reader_declines_what_florin_cannot_read(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "missing.tif")) is None


def test_image_and_labels_round_trip_keeping_the_scale(make_napari_viewer, phantom, labels_volume, tmp_path):
    viewer = make_napari_viewer()
    image = viewer.add_image(phantom.values, scale=SPACING, name="img", units=("um",) * 3,
                             axis_labels=("z", "y", "x"))
    labels = viewer.add_labels(labels_volume.values, scale=SPACING, name="cells", units=("um",) * 3)
    for name in ["out.tif", "out.ome.tif", "out.npy", "out.h5", "out.nc", "out.zarr", "out.ome.zarr"]:
        _round_trip(viewer, image, labels, phantom, labels_volume, tmp_path, name)


def _round_trip(viewer, image, labels, phantom, labels_volume, tmp_path, name):
    assert napari.save_layers(str(tmp_path / f"img-{name}"), [image], plugin="florin-napari")
    assert napari.save_layers(str(tmp_path / f"lab-{name}"), [labels], plugin="florin-napari")
    back = florin.io.read(tmp_path / f"img-{name}")
    np.testing.assert_array_equal(back.values, phantom.values)
    assert florin.get_spacing(back) == SPACING and back.attrs["units"] == "um"
    [img2] = _open(viewer, tmp_path / f"img-{name}")
    [lab2] = _open(viewer, tmp_path / f"lab-{name}")
    assert type(img2).__name__ == "Image" and type(lab2).__name__ == "Labels"
    np.testing.assert_array_equal(np.asarray(lab2.data[0] if lab2.multiscale else lab2.data), labels_volume.values)
    assert tuple(lab2.scale) == SPACING


def test_units_in_axis_labels_survive_a_save_and_reopen(make_napari_viewer, phantom, tmp_path):
    """A layer opened by the reader, saved and reopened: dims without the unit, the unit kept, no 'z (µm) (µm)'."""
    from florin_napari._layers import to_volume

    florin.io.write(tmp_path / "v.tif", phantom)
    viewer = make_napari_viewer()
    [layer] = _open(viewer, tmp_path / "v.tif")
    for name in ["again.tif", "again.h5", "again.ome.zarr"]:
        assert napari.save_layers(str(tmp_path / name), [layer], plugin="florin-napari")
        back = florin.io.read(tmp_path / name)
        assert tuple(back.dims) == ("z", "y", "x") and back.attrs["units"] == "um", name
        assert florin.get_spacing(back) == SPACING
        [layer] = _open(viewer, tmp_path / name)
        assert tuple(layer.axis_labels) == ("z (µm)", "y (µm)", "x (µm)"), name
    # only the axis labels name the unit (a layer made without napari units): the unit is still kept
    volume = to_volume(phantom.values, {"scale": SPACING, "axis_labels": ("z (µm)", "y (µm)", "x (µm)")})
    assert tuple(volume.dims) == ("z", "y", "x") and volume.attrs["units"] == "um"
    assert to_volume(phantom.values, {"axis_labels": ("z (nm)", "y", "x")}).attrs["units"] == "nm"
    assert "units" not in to_volume(phantom.values, {"axis_labels": ("z", "y", "x")}).attrs


def test_labels_go_to_ome_zarr_as_image_label_groups(make_napari_viewer, phantom, labels_volume, tmp_path):
    import json

    viewer = make_napari_viewer()
    image = viewer.add_image(phantom.values, scale=SPACING, name="img")
    labels = viewer.add_labels(labels_volume.values, scale=SPACING, name="cells")
    path = tmp_path / "both.ome.zarr"
    assert napari.save_layers(str(path), [image, labels], plugin="florin-napari")
    root = json.loads((path / "zarr.json").read_text())["attributes"]["ome"]
    assert root["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == list(SPACING)
    assert json.loads((path / "labels" / "zarr.json").read_text())["attributes"]["ome"]["labels"] == ["cells"]
    group = json.loads((path / "labels" / "cells" / "zarr.json").read_text())["attributes"]["ome"]
    assert group["image-label"] == {"source": {"image": "../../"}} and group["multiscales"]
    np.testing.assert_array_equal(florin.io.read(path).values, phantom.values)
    layers = _open(viewer, path)
    assert [type(la).__name__ for la in layers] == ["Image", "Labels"]
    assert layers[0].name == "both.ome.zarr" and layers[1].name.startswith("cells")
    np.testing.assert_array_equal(np.asarray(layers[1].data), labels_volume.values)
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temporary directory


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    from florin_napari._writer import write_image, write_layers

    from florin.errors import FlorinError

    with pytest.raises(FlorinError, match="OME-Zarr"):
        write_image(str(tmp_path / "line.ome.zarr"), np.zeros(7, np.uint8), {"scale": (1.0,)})
    with pytest.raises(FlorinError, match="one image"):
        write_layers(str(tmp_path / "two.ome.zarr"), [(np.zeros((4, 4)), {}, "image")] * 2)
    with pytest.raises(FlorinError, match=r"\.ome\.zarr"):
        write_layers(str(tmp_path / "two.tif"), [(np.zeros((4, 4)), {}, "image")])
    assert list(tmp_path.iterdir()) == []
