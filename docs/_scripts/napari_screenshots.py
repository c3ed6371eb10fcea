"""Screenshots of the florin-napari widgets on the demo volume (``docs/_static/napari-*.png``).

Opens the demo phantom (the volume of ``florin demo``, 48 x 192 x 192 voxels of 1 x 0.5 x 0.5 um) in a real napari
window, placed as the reader places a volume: the axis labels name the unit (``z (µm)``, shown on the z slider and,
with napari 0.9 or newer, in the current-slice overlay) and the scale bar is in µm. Docks the plugin's widgets
through napari's plugin menu entries, sets the demo pipeline's parameters, waits for the live preview and the
segmentation, and saves napari's screenshots of the whole window. Needs a display:

    pip install -e './plugins/florin-napari[pyqt]'
    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/_scripts/napari_screenshots.py [OUTPUT_DIR]
"""

from __future__ import annotations

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT = os.path.join(ROOT, "docs", "_static")
SIZE = (1500, 900)


def _settle(viewer, widget=None, timeout=300):
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.processEvents()
        if widget is None or not widget.busy:
            break
        time.sleep(0.02)
    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)


def _save(viewer, path):
    from skimage.io import imsave

    _settle(viewer)
    viewer.reset_view()  # fit the volume into the canvas the docked widgets leave
    _settle(viewer)
    image = viewer.screenshot(canvas_only=False, flash=False)
    imsave(path, image, check_contrast=False)
    print(f"wrote {path} {image.shape[1]}x{image.shape[0]}")


def _show_units(viewer):
    """Where napari shows the units besides the z slider's label: the current slice and a scale bar in µm."""
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)
    if overlays is not None and "current_slice" in overlays:  # napari >= 0.9: canvas overlays
        overlays["current_slice"].position = "top_right"
        overlays["current_slice"].visible = True  # 'z (µm) = 24'
        overlays["scale_bar"].visible = True
    else:
        viewer.scale_bar.visible = True


def main(out=DEFAULT):
    import napari
    from florin_napari._core import rules_text
    from florin_napari._sample import phantom

    from florin.data import PHANTOM_CLASSES

    os.makedirs(out, exist_ok=True)
    viewer = napari.Viewer(title="florin in napari")
    viewer.window._qt_window.resize(*SIZE)
    (data, kwargs, _), _truth = phantom()
    viewer.add_image(data, **kwargs)
    _show_units(viewer)
    _settle(viewer)
    viewer.reset_view()
    viewer.dims.set_point(0, 24.0)

    # 1. NDNT with its live preview of slice 24
    _, ndnt = viewer.window.add_plugin_dock_widget("florin-napari", "NDNT threshold")
    ndnt.controls.isotropic.value = False
    ndnt.controls.set_shape((10, 64, 64))
    ndnt.controls.threshold.value = 0.3
    ndnt.controls.opening.value = True
    ndnt.request_preview()
    _settle(viewer, ndnt)
    _save(viewer, os.path.join(out, "napari-ndnt.png"))

    # 2. the segmentation with the phantom's classes, objects coloured, the features of one object in the status bar
    viewer.window.remove_dock_widget("all")
    viewer.layers.remove("NDNT preview")
    _, segment = viewer.window.add_plugin_dock_widget("florin-napari", "Segment")
    segment.controls.isotropic.value = False
    segment.controls.set_shape((10, 64, 64))
    segment.controls.threshold.value = 0.3
    segment.min_size.value = 20
    import florin

    segment.set_classes([(name, rules_text(florin.bounds_classifier(name, **bounds)))
                         for name, bounds in PHANTOM_CLASSES])
    segment.exec_controls.executor.value = "multithread"
    segment.run()
    _settle(viewer, segment)
    viewer.layers["phantom objects"].visible = False
    _save(viewer, os.path.join(out, "napari-segment.png"))

    # 3. the objects with their regionprops table in napari's own features table
    viewer.window.remove_dock_widget("all")
    viewer.layers["phantom classes"].visible = False
    objects = viewer.layers["phantom objects"]
    objects.visible = True
    viewer.layers.selection.active = objects
    viewer.window.add_plugin_dock_widget("napari", "Features table widget")
    _settle(viewer)
    _save(viewer, os.path.join(out, "napari-features.png"))
    viewer.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
