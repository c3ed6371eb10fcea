"""Previews: physical proportions, axis names, scale bar, colour key, legible overlays."""

from __future__ import annotations

import numpy as np
import pytest

import florin

pytest.importorskip("matplotlib", reason="previews need matplotlib: pip install 'florin[preview]'")

import matplotlib.pyplot as plt  # noqa: E402

from florin.preview import _nice_length, _overlay, preview_figure  # noqa: E402


@pytest.fixture
def volume():
    rng = np.random.default_rng(1)
    return florin.as_volume(rng.random((12, 40, 60)), spacing=(2.0, 0.5, 0.25), units="um")


def _texts(fig):
    return {t.get_text() for ax in fig.axes for t in ax.findobj(plt.Text)} | {
        t.get_text() for legend in fig.legends for t in legend.get_texts()}


def test_panels_are_drawn_in_physical_proportions(volume):
    fig = preview_figure(volume)
    try:
        (z, y, x) = fig.axes
        # extent (left, right, bottom, top) of each image is its physical size: z 24 um, y 20 um, x 15 um
        assert z.images[0].get_extent() == [0, 15.0, 20.0, 0]
        assert y.images[0].get_extent() == [0, 15.0, 24.0, 0]
        assert x.images[0].get_extent() == [0, 20.0, 24.0, 0]
        assert [(a.get_xlabel(), a.get_ylabel()) for a in fig.axes] == [
            ("x (um)", "y (um)"), ("x (um)", "z (um)"), ("y (um)", "z (um)")]
        assert [a.get_title() for a in fig.axes] == ["z=6", "y=20", "x=30"]
    finally:
        plt.close(fig)


def test_scale_bar_in_physical_units(volume):
    fig = preview_figure(volume)
    try:
        texts = _texts(fig)
        # a fifth of 15 um rounds down to 2 um; of 20 um to 2 um as well (1, 2, 5 steps)
        assert "2 um" in texts
    finally:
        plt.close(fig)
    assert [_nice_length(v) for v in (0.37, 3.0, 7.5, 12, 60)] == [0.2, 2.0, 5.0, 10.0, 50.0]


def test_key_names_classes_from_the_class_volume(volume):
    classes = xr_classes(volume)
    fig = preview_figure(volume, classes)
    try:
        assert [t.get_text() for t in fig.legends[0].get_texts()] == ["cell", "vasculature"]
    finally:
        plt.close(fig)


def xr_classes(volume):
    data = np.zeros(volume.shape, np.uint8)
    data[2:5, 5:15, 5:15] = 1
    data[6:9, 20:30, 30:50] = 2
    return florin.as_volume(data, attrs={"classes": {"1": "cell", "2": "vasculature"}})


def test_key_counts_objects_of_a_label_volume(volume):
    labels = np.zeros(volume.shape, np.int32)
    labels[1:3, 1:4, 1:4], labels[5:8, 10:20, 10:20], labels[9:11, 30:35, 40:50] = 3, 7, 9
    fig = preview_figure(volume, labels)
    try:
        assert [t.get_text() for t in fig.legends[0].get_texts()] == ["objects (3)"]
    finally:
        plt.close(fig)


def test_overlay_has_an_opaque_outline_and_a_translucent_fill():
    lab = np.zeros((9, 9), np.uint8)
    lab[2:7, 2:7] = 1
    colors = np.array([(0, 0, 0, 0), (1.0, 0.0, 0.0, 1.0)])
    rgba = _overlay(lab, colors)
    assert rgba[0, 0, 3] == 0  # background stays transparent
    assert rgba[2, 4, 3] == 1.0 and rgba[4, 2, 3] == 1.0  # the object's outline is opaque on any background
    assert 0 < rgba[4, 4, 3] < 1  # its inside shows the voxels through the fill
    assert tuple(rgba[4, 4, :3]) == (1.0, 0.0, 0.0)


def test_bad_labels_shape_names_the_parameter(volume):
    with pytest.raises(florin.errors.ParameterError, match="labels"):
        preview_figure(volume, np.zeros((2, 2), np.uint8))
