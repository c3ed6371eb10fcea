"""The dock widgets: NDNT with a live preview, and the classic segmentation (magicgui on Qt).

Both run their work off the GUI thread with napari's ``thread_worker``; the
computations themselves are in :mod:`florin_napari._core` (no Qt).
"""

from __future__ import annotations

import os

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
    Table,
)

from florin_napari._core import (
    NDNTSettings,
    SegmentSettings,
    apply_ndnt,
    default_shape,
    is_warm,
    isotropic_shape,
    preview_pieces,
    run_segment,
    settings_from_toml,
    warm_up,
)
from florin_napari._layers import layer_units

__all__ = ["NDNTWidget", "SegmentWidget"]

#: Volumes up to this many voxels are previewed whole in napari's 3-D view.
PREVIEW_3D_VOXELS = 2**22
PREVIEW_NAME = "NDNT preview"


def _executors():
    from florin.registry import get_registry

    return list(get_registry().executors)


def _data(layer):
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def _spacing(layer):
    return tuple(float(s) for s in layer.scale)


def _placement(layer) -> dict:
    """The layer's scale, translate, units and axis labels, for a result layer laid over it."""
    return {"scale": layer.scale, "translate": layer.translate, "units": layer.units,
            "axis_labels": layer.axis_labels}


def _units(layer):
    return layer_units(getattr(layer, "units", None), getattr(layer, "axis_labels", None))


class _ImageChoice(ComboBox):
    """A combo box of the viewer's Image layers, kept up to date."""

    def __init__(self, viewer, **kwargs):
        self._viewer = viewer
        super().__init__(choices=self._layers, label="image", **kwargs)
        viewer.layers.events.inserted.connect(self._refresh)
        viewer.layers.events.removed.connect(self._refresh)

    def _layers(self, _widget=None):
        import napari

        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, napari.layers.Image)]

    def _refresh(self, event=None):
        self.reset_choices()


class _NDNTControls(Container):
    """Shape per axis with an isotropic lock, threshold, polarity and the optional opening."""

    def __init__(self, *, opening=False):
        self.shape_box = Container(layout="horizontal", label="shape", labels=False)
        self.isotropic = CheckBox(value=True, text="isotropic (physical extent)")
        self.threshold = FloatSpinBox(value=0.25, min=0.0, max=1.0, step=0.01, label="threshold")
        self.polarity = ComboBox(choices=["dark", "bright"], value="dark", label="polarity")
        self.opening = CheckBox(value=opening, text="binary opening")
        super().__init__(widgets=[self.shape_box, self.isotropic, self.threshold, self.polarity, self.opening])
        self._spacing = (1.0, 1.0, 1.0)
        self._locking = False

    @property
    def spins(self) -> list:
        return list(self.shape_box)

    def set_volume(self, shape, spacing):
        """One spin box per axis, with NDNT's default window for a volume of ``shape``."""
        self._spacing = tuple(spacing)
        old = [s.value for s in self.spins]
        self.shape_box.clear()
        for axis, n in enumerate(default_shape(shape)):
            spin = SpinBox(value=n, min=1, max=max(4097, 2 * int(shape[axis]) + 1), label=f"axis {axis}")
            spin.changed.connect(lambda value, axis=axis: self._lock(axis, value))
            self.shape_box.append(spin)
        if len(old) == len(shape):
            self.set_shape(old)
        elif self.isotropic.value:
            self._lock(len(shape) - 1, self.spins[-1].value)

    def set_shape(self, shape):
        self._locking = True
        try:
            for spin, value in zip(self.spins, shape, strict=True):
                spin.value = int(value)
        finally:
            self._locking = False

    def _lock(self, axis, value):
        if self._locking or not self.isotropic.value:
            return
        self.set_shape(isotropic_shape(value, axis, self._spacing))

    def settings(self) -> NDNTSettings:
        return NDNTSettings(shape=tuple(int(s.value) for s in self.spins), threshold=float(self.threshold.value),
                            polarity=self.polarity.value, opening=bool(self.opening.value))

    def load(self, settings: NDNTSettings):
        self.isotropic.value = False  # the file's shape as it is
        self.set_shape(settings.shape)
        self.threshold.value = settings.threshold if settings.threshold <= 1 else settings.threshold / 100
        self.polarity.value = settings.polarity
        self.opening.value = settings.opening


class _ExecutorControls(Container):
    def __init__(self):
        self.executor = ComboBox(choices=_executors(), value="serial", label="executor")
        self.workers = SpinBox(value=2, min=1, max=max(2, os.cpu_count() or 2) * 4, label="workers")
        super().__init__(widgets=[self.executor, self.workers], labels=True)


class _Workers:
    """The widget's running workers (``busy`` until each has finished); quit when the widget goes away."""

    def _watch_close(self):
        self.native.destroyed.connect(self._closing)

    def _closing(self, *_):
        self.__dict__["_closed"] = True
        for worker in list(self.__dict__.get("_running", ())):
            worker.quit()

    @property
    def closed(self) -> bool:
        return bool(self.__dict__.get("_closed"))

    def _start(self, worker):
        running = self.__dict__.setdefault("_running", set())
        running.add(worker)
        worker.finished.connect(lambda: running.discard(worker))
        worker.start()
        return worker

    @property
    def busy(self) -> bool:
        return bool(self.__dict__.get("_running"))


class _OnImage:
    """A widget on the image chosen in its ``image`` box: its ``controls`` follow the image's shape and voxel size."""

    @property
    def layer(self):
        return self.image.value

    def _image_changed(self, *_):
        if self.layer is not None:
            self.controls.set_volume(_data(self.layer).shape, _spacing(self.layer))
            self._image_set()

    def _image_set(self):
        """Called once the controls follow a newly chosen image."""


class _PipelineFiles:
    """*Save pipeline...* / *Load pipeline...*: the widget's settings as a pipeline TOML for ``florin run``.

    The widget provides ``to_toml()`` and ``load_settings(SegmentSettings)``.
    """

    def _file_buttons(self, *extra):
        self.save_button = PushButton(text="Save pipeline...")
        self.load_button = PushButton(text="Load pipeline...")
        self.save_button.changed.connect(lambda *_: self._ask_path("Save the pipeline", "TOML (*.toml)",
                                                                    self.save_pipeline, save=True))
        self.load_button.changed.connect(lambda *_: self._ask_path("Load a pipeline", "TOML (*.toml)",
                                                                    self.load_pipeline, save=False))
        return Container(widgets=[*extra, self.save_button, self.load_button], layout="horizontal", labels=False)

    def save_pipeline(self, path):
        """Write the settings as a pipeline TOML (atomically) that ``florin run`` executes unchanged."""
        from florin.io.atomic import atomic_path

        text = self.to_toml()
        with atomic_path(path) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
        self.status.value = f"saved {os.path.basename(os.fspath(path))}"

    def load_pipeline(self, path):
        """Fill the widget from a pipeline TOML."""
        shape = _data(self.layer).shape if self.layer is not None else None
        self.load_settings(settings_from_toml(os.fspath(path), shape=shape))
        self.status.value = f"loaded {os.path.basename(os.fspath(path))}"

    def _ask_path(self, title, filter, action, *, save):
        from qtpy.QtWidgets import QFileDialog

        ask = QFileDialog.getSaveFileName if save else QFileDialog.getOpenFileName
        path, _ = ask(self.native, title, "", filter)
        if path:
            try:
                action(path)
            except Exception as exc:  # noqa: BLE001 - shown to the user
                self.status.value = f"{type(exc).__name__}: {exc}"


class NDNTWidget(_OnImage, _PipelineFiles, _Workers, Container):
    """NDNT with a live preview of the current slice, and Apply on the whole volume.

    The preview recomputes, off the GUI thread, whenever a parameter or the
    current slice changes: only the slice's z-context (NDNT's half window plus
    the opening's footprint) is read, so it equals that slice of the
    whole-volume result. A newer request supersedes (quits) a running one,
    which stops after its current piece
    (:func:`~florin_napari._core.preview_pieces`). After the first preview of an
    image, the kernels of its other previews are loaded off the GUI thread
    (:func:`~florin_napari._core.warm_up`), so later previews do not pay numba's
    first-call load. In the 3-D view, volumes up to :data:`PREVIEW_3D_VOXELS`
    voxels are previewed whole. *Apply* runs the
    whole volume under the chosen executor, chunk by chunk, with a progress bar.
    """

    def __init__(self, napari_viewer):
        self._viewer = napari_viewer
        self.image = _ImageChoice(napari_viewer)
        self.controls = _NDNTControls(opening=False)
        self.preview = CheckBox(value=True, text="live preview")
        self.exec_controls = _ExecutorControls()
        self.apply_button = PushButton(text="Apply to the whole volume")
        self.progress = ProgressBar(value=0, min=0, max=1, label="progress")
        self.status = Label(value="")
        files = self._file_buttons()
        super().__init__(widgets=[self.image, self.controls, self.preview, self.exec_controls, self.apply_button,
                                  self.progress, files, self.status])
        self._generation = 0
        self._worker = None
        self._apply_worker = None
        self._warm_worker = None
        self._warming = set()  # dtypes whose warm-up this widget started
        self.applied = []  # generations whose preview was shown (the newest request wins)
        self.image.changed.connect(self._image_changed)
        for widget in (self.controls.threshold, self.controls.polarity, self.controls.opening, self.preview):
            widget.changed.connect(self.request_preview)
        self.controls.shape_box.changed.connect(self.request_preview)
        napari_viewer.dims.events.current_step.connect(self.request_preview)
        napari_viewer.dims.events.ndisplay.connect(self.request_preview)
        self.apply_button.changed.connect(self.apply)
        self._watch_close()
        self._image_changed()

    # -- parameters ----------------------------------------------------------------------------
    def _image_set(self):
        if self.request_preview() is None:
            self._warm_up()

    def _warm_up(self, *_):
        """Load the kernels of the image's previews off the GUI thread (:func:`~florin_napari._core.warm_up`).

        Called when a preview has been shown (the kernels it needed loaded as
        it ran), or at once without a preview; once per dtype.
        """
        layer = self.layer
        if self.closed or layer is None:
            return None
        dtype = np.dtype(_data(layer).dtype)
        if dtype in self._warming or is_warm(dtype):
            return None
        self._warming.add(dtype)
        from napari.qt.threading import thread_worker

        worker = thread_worker(warm_up, start_thread=False)(dtype)
        worker.errored.connect(self._show_error)
        self._warm_worker = worker
        return self._start(worker)

    def settings(self) -> NDNTSettings:
        return self.controls.settings()

    def _index(self, layer):
        """The viewer's current position in the layer's data coordinates (rounded, clipped)."""
        point = layer.world_to_data(self._viewer.dims.point)
        shape = _data(layer).shape
        return tuple(int(min(max(round(float(p)), 0), n - 1)) for p, n in zip(point, shape, strict=True))

    # -- preview -------------------------------------------------------------------------------
    def request_preview(self, *_):
        """Start a preview of the current slice; a running one is superseded."""
        if self.closed:
            return None
        layer = self.layer
        if layer is None or not self.preview.value or not self.controls.spins:
            return None
        from napari.qt.threading import thread_worker

        try:
            settings = self.settings()
            settings.steps()  # invalid parameters: say so, start nothing
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.status.value = f"{type(exc).__name__}: {exc}"
            return None
        self._generation += 1
        generation = self._generation
        if self._worker is not None:
            self._worker.quit()
        data = _data(layer)
        whole = self._viewer.dims.ndisplay == 3 and int(np.prod(data.shape)) <= PREVIEW_3D_VOXELS
        index = self._index(layer)

        def job():
            yield  # a superseded request stops here, before computing
            # Each yield is a point where a superseded preview stops (the worker's quit() takes effect there).
            if whole:
                return generation, layer, None, (yield from apply_ndnt(data, settings, chunks=1))
            return generation, layer, index, (yield from preview_pieces(data, settings, index))

        worker = thread_worker(job, start_thread=False)()
        worker.returned.connect(self._show_preview)
        worker.errored.connect(self._show_error)
        self._worker = worker
        return self._start(worker)

    def _show_error(self, exc):
        self.status.value = f"{type(exc).__name__}: {exc}"

    def _show_preview(self, result):
        generation, layer, index, mask = result
        if generation != self._generation or self.closed or layer not in self._viewer.layers:
            return  # superseded, or the widget or the image is gone
        ndim = layer.ndim
        scale = np.asarray(layer.scale, float)
        translate = np.asarray(layer.translate, float).copy()
        if index is None or mask.ndim == ndim:
            data = mask.astype(np.uint8)
        else:  # one plane, placed at its position along the leading axes
            lead = ndim - 2
            data = mask.astype(np.uint8).reshape((1,) * lead + mask.shape)
            translate[:lead] = translate[:lead] + np.asarray(index[:lead], float) * scale[:lead]
        if PREVIEW_NAME in self._viewer.layers:
            preview = self._viewer.layers[PREVIEW_NAME]
            preview.data = data
            preview.scale, preview.translate = scale, translate
        else:
            preview = self._viewer.add_labels(data, name=PREVIEW_NAME, scale=scale, translate=translate,
                                              units=layer.units, axis_labels=layer.axis_labels, opacity=0.6)
            self._viewer.layers.selection.active = layer
        self.applied.append(generation)
        self.status.value = f"preview: {int(mask.sum())} foreground voxels"
        self._warm_up()  # the other previews' kernels, now that this one is shown

    # -- apply ---------------------------------------------------------------------------------
    def apply(self, *_):
        """Run NDNT on the whole volume (progress bar); the result is a Labels layer."""
        layer = self.layer
        if layer is None:
            return None
        from napari.qt.threading import thread_worker

        settings = self.settings()
        executor, workers = self.exec_controls.executor.value, int(self.exec_controls.workers.value)
        data = _data(layer)
        worker = thread_worker(apply_ndnt, start_thread=False)(data, settings, executor=executor, workers=workers)
        self.progress.value = 0

        def advance(value):
            done, total = value
            self.progress.max = total
            self.progress.value = done

        def finished(mask):
            if self.closed or layer not in self._viewer.layers:
                return
            name = f"{layer.name} NDNT"
            if name in self._viewer.layers:
                self._viewer.layers[name].data = mask.astype(np.uint8)
            else:
                self._viewer.add_labels(mask.astype(np.uint8), name=name, **_placement(layer))
            self.status.value = f"NDNT ({executor}): {int(mask.sum())} foreground voxels"

        worker.yielded.connect(advance)
        worker.returned.connect(finished)
        worker.errored.connect(self._show_error)
        self._apply_worker = worker
        return self._start(worker)

    # -- pipeline files ------------------------------------------------------------------------
    def pipeline(self):
        """``load -> [tile -> executor(] NDNT [-> opening )]`` as a florin pipeline."""
        seg = SegmentSettings(ndnt=self.settings(), executor=self.exec_controls.executor.value,
                              workers=int(self.exec_controls.workers.value))
        import florin

        return florin.Serial(*seg.pipeline(_data(self.layer).shape).steps[: -2])

    def to_toml(self) -> str:
        return self.pipeline().to_toml()

    def load_settings(self, settings: SegmentSettings):
        self.controls.load(settings.ndnt)
        self.exec_controls.executor.value = settings.executor
        if settings.workers:
            self.exec_controls.workers.value = settings.workers


class SegmentWidget(_OnImage, _PipelineFiles, _Workers, Container):
    """The classic FLoRIN pipeline: NDNT, opening, size filter, label, classes, under an executor.

    *Run* gives a Labels layer of the objects whose ``features`` are the
    regionprops table (one row per object, ``index`` = its label, with its
    class when classes are given), and with classes a Labels layer of the
    classes. *Export CSV* writes the table; *Save pipeline* writes the
    settings as a pipeline TOML that ``florin run FILE VOLUME -o OUT`` runs
    unchanged; *Load pipeline* fills the widget from such a file.
    """

    def __init__(self, napari_viewer):
        self._viewer = napari_viewer
        self.image = _ImageChoice(napari_viewer)
        self.controls = _NDNTControls(opening=True)
        self.min_size = SpinBox(value=64, min=1, max=10**9, label="min size (voxels)")
        self.connectivity = SpinBox(value=1, min=1, max=3, label="connectivity")
        self.classes = Table(value={"name": [], "bounds": []}, label="classes")
        header = self.classes.native.horizontalHeader()
        header.setStretchLastSection(True)
        self.classes.native.setMinimumHeight(110)
        self.add_class = PushButton(text="+ class")
        self.remove_class = PushButton(text="- class")
        self.exec_controls = _ExecutorControls()
        self.run_button = PushButton(text="Run")
        self.progress = ProgressBar(value=0, min=0, max=4, label="progress")
        self.export_button = PushButton(text="Export CSV...")
        self.status = Label(value="")
        buttons = Container(widgets=[self.add_class, self.remove_class], layout="horizontal", labels=False)
        files = self._file_buttons(self.export_button)
        super().__init__(widgets=[self.image, self.controls, self.min_size, self.connectivity, self.classes,
                                  buttons, self.exec_controls, self.run_button, self.progress, files,
                                  self.status])
        self.result = None
        self._worker = None
        self.image.changed.connect(self._image_changed)
        self.add_class.changed.connect(lambda *_: self.set_classes([*self.class_rows(), ("class", "")]))
        self.remove_class.changed.connect(lambda *_: self.set_classes(self.class_rows()[:-1]))
        self.run_button.changed.connect(self.run)
        self.export_button.changed.connect(lambda *_: self._ask_path("Export the objects table", "CSV (*.csv)",
                                                                      self.export_csv, save=True))
        self._watch_close()
        self._image_changed()


    # -- classes table -------------------------------------------------------------------------
    def class_rows(self) -> list:
        rows = self.classes.data.to_list() if self.classes.shape[0] else []
        return [(str(name or "").strip(), str(bounds or "").strip()) for name, bounds in rows
                if str(name or "").strip()]

    def set_classes(self, rows):
        rows = list(rows)
        self.classes.value = {"name": [r[0] for r in rows], "bounds": [r[1] for r in rows]}

    # -- settings and pipeline files -----------------------------------------------------------
    def settings(self) -> SegmentSettings:
        return SegmentSettings(ndnt=self.controls.settings(), min_size=int(self.min_size.value),
                               connectivity=int(self.connectivity.value), classes=tuple(self.class_rows()),
                               executor=self.exec_controls.executor.value,
                               workers=int(self.exec_controls.workers.value))

    def load_settings(self, settings: SegmentSettings):
        self.controls.load(settings.ndnt)
        self.min_size.value = settings.min_size
        self.connectivity.value = settings.connectivity
        self.set_classes(settings.classes)
        self.exec_controls.executor.value = settings.executor
        if settings.workers:
            self.exec_controls.workers.value = settings.workers

    def to_toml(self) -> str:
        return self.settings().to_toml(_data(self.layer).shape)

    # -- run -----------------------------------------------------------------------------------
    def run(self, *_):
        """Run the segmentation off the GUI thread; the result becomes Labels layers with features."""
        layer = self.layer
        if layer is None:
            return None
        from napari.qt.threading import thread_worker

        try:
            settings = self.settings()
            settings.classifiers()
            settings.ndnt.steps()
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.status.value = f"{type(exc).__name__}: {exc}"
            return None
        worker = thread_worker(run_segment, start_thread=False)(
            _data(layer), settings, spacing=_spacing(layer), units=_units(layer))
        self.progress.value = 0

        def advance(value):
            done, total, stage = value
            self.progress.max = total
            self.progress.value = done
            self.status.value = f"{stage} done"

        worker.yielded.connect(advance)
        worker.returned.connect(lambda result: self._show_result(result, layer))
        worker.errored.connect(lambda exc: setattr(self.status, "value", f"{type(exc).__name__}: {exc}"))
        self._worker = worker
        return self._start(worker)

    def _show_result(self, result, layer=None):
        layer = layer if layer is not None else self.layer
        if self.closed or layer not in self._viewer.layers:
            return None
        self.result = result
        kwargs = _placement(layer)
        name = f"{layer.name} objects"
        if name in self._viewer.layers:
            objects = self._viewer.layers[name]
            objects.data = result.objects
            objects.features = result.table
        else:
            objects = self._viewer.add_labels(result.objects, name=name, features=result.table, **kwargs)
        if result.classes is not None:
            import pandas as pd

            ids = sorted(result.class_names)
            counts = result.table["class_id"].value_counts() if "class_id" in result.table else {}
            features = pd.DataFrame({"index": ids, "class_name": [result.class_names[i] for i in ids],
                                     "objects": [int(counts.get(i, 0)) for i in ids]})
            cname = f"{layer.name} classes"
            if cname in self._viewer.layers:
                self._viewer.layers[cname].data = result.classes
                self._viewer.layers[cname].features = features
            else:
                self._viewer.add_labels(result.classes, name=cname, features=features, **kwargs)
        self.status.value = f"{len(result.table)} objects"
        return objects

    def export_csv(self, path):
        """Write the regionprops table of the last run to CSV (atomically)."""
        from florin.errors import ParameterError
        from florin.io.atomic import atomic_path

        if self.result is None:
            raise ParameterError("export: run the segmentation first (there is no objects table yet)")
        with atomic_path(path) as tmp:
            self.result.table.drop(columns=["index"]).to_csv(tmp, index=False)
        self.status.value = f"wrote {os.path.basename(os.fspath(path))}"

