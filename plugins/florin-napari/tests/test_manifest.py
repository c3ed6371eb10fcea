"""The npe2 manifest: valid, every command importable, contributions as documented."""

from __future__ import annotations

import subprocess
import sys


def test_npe2_validate_with_imports_passes():
    proc = subprocess.run([sys.executable, "-m", "npe2", "validate", "--imports", "florin-napari"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout


def test_manifest_declares_reader_writers_and_sample():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("florin-napari")
    assert manifest.name == "florin-napari"
    contrib = manifest.contributions
    assert contrib.readers[0].accepts_directories
    assert {"*.tif", "*.h5", "*.nc", "*.zarr", "*.ome.zarr", "*.npy"} <= set(contrib.readers[0].filename_patterns)
    kinds = {tuple(str(t) for t in w.layer_types) for w in contrib.writers}
    assert ("image",) in kinds and ("labels",) in kinds and ("image?", "labels+") in kinds
    assert [s.key for s in contrib.sample_data] == ["phantom"]


def test_widgets_and_sample_through_napari_menus(make_napari_viewer):
    from florin_napari._widgets import NDNTWidget, SegmentWidget

    viewer = make_napari_viewer()
    viewer.open_sample("florin-napari", "phantom")
    assert [type(layer).__name__ for layer in viewer.layers] == ["Image", "Labels"]
    for layer in viewer.layers:  # placed as the reader places a volume: scale, units, units in the axis labels
        assert tuple(layer.scale) == (1.0, 0.5, 0.5)
        assert tuple(layer.axis_labels) == ("z (µm)", "y (µm)", "x (µm)")
        assert [str(u) for u in layer.units] == ["micrometer"] * 3
    assert viewer.dims.axis_labels[-3:] == ("z (µm)", "y (µm)", "x (µm)")  # the slider is labelled with its unit
    _, ndnt = viewer.window.add_plugin_dock_widget("florin-napari", "NDNT threshold")
    _, segment = viewer.window.add_plugin_dock_widget("florin-napari", "Segment")
    assert isinstance(ndnt, NDNTWidget) and isinstance(segment, SegmentWidget)
    assert ndnt.layer is viewer.layers["phantom"] and segment.layer is viewer.layers["phantom"]
