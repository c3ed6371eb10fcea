"""What the widgets compute, without Qt: settings, previews, the whole-volume runs and pipeline files.

Everything goes through florin's public API: the operators
(``thresholding.ndnt``, ``morphology.binary_opening``,
``morphology.remove_small_objects``, ``conncomp.label``,
``conncomp.regionprops``, ``florin.classify``, ``florin.reconstruct``),
``florin.tile``, the executors of the registry and :mod:`florin.pipeline_file`.
"""

from __future__ import annotations

import math
import sys
import threading
from dataclasses import dataclass, field, replace

import numpy as np

import florin
import florin.conncomp as conncomp
import florin.morphology as morphology
import florin.thresholding as thresholding
from florin.errors import ParameterError
from florin_napari._layers import source_of

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "NDNTSettings",
    "SegmentResult",
    "SegmentSettings",
    "apply_ndnt",
    "default_shape",
    "is_warm",
    "isotropic_shape",
    "ndnt_plane",
    "parse_rules",
    "preview_pieces",
    "preview_plane",
    "rules_text",
    "run_segment",
    "settings_from_toml",
    "warm_up",
]


def default_shape(shape) -> tuple[int, ...]:
    """NDNT's default neighbourhood for a volume of ``shape``: ``max(1, round(n / 8))`` per axis."""
    return tuple(max(1, round(int(n) / 8)) for n in shape)


def isotropic_shape(size: int, axis: int, spacing) -> tuple[int, ...]:
    """The window whose physical extent along every axis is that of ``size`` voxels along ``axis``.

    Examples
    --------
    >>> isotropic_shape(65, 2, (1.0, 1.0, 1.0))
    (65, 65, 65)
    >>> isotropic_shape(64, 2, (2.0, 0.5, 0.5))
    (16, 64, 64)
    """
    extent = int(size) * float(spacing[axis])
    return tuple(int(size) if a == axis else max(1, round(extent / float(s))) for a, s in enumerate(spacing))


@dataclass(frozen=True)
class NDNTSettings:
    """The NDNT widget's parameters (and the first steps of the segmentation).

    Parameters
    ----------
    shape : tuple of int
        Neighbourhood per axis (an entry of 1 disables that axis).
    threshold : float
        Fraction in [0, 1] or percentage in (1, 100].
    polarity : {'dark', 'bright'}
    opening : bool
        Follow NDNT by ``morphology.binary_opening()``.
    """

    shape: tuple
    threshold: float = 0.25
    polarity: str = "dark"
    opening: bool = False

    def steps(self) -> list:
        """The operators, bound (a misspelled or invalid parameter fails here)."""
        steps = [thresholding.ndnt(shape=tuple(int(s) for s in self.shape), threshold=float(self.threshold),
                                   polarity=self.polarity)]
        if self.opening:
            steps.append(morphology.binary_opening())
        return steps

    def context(self, full_shape) -> tuple[int, ...]:
        """Voxels of context per side each output voxel depends on (the steps' declared halos)."""
        return tuple(int(h) for h in florin.Serial(*self.steps()).halo(tuple(full_shape)))


def _leading(image, index):
    """``image`` with its leading axes (all but the last 3) fixed at ``index``."""
    lead = image.ndim - 3
    return image[tuple(int(i) for i in index[:lead])] if lead > 0 else image


def preview_plane(image, settings: NDNTSettings, index=()) -> np.ndarray:
    """The NDNT (+ opening) result of one z plane, from its z-context only (:func:`preview_pieces` run through)."""
    pieces = preview_pieces(image, settings, index)
    while True:
        try:
            next(pieces)
        except StopIteration as stop:
            return stop.value


def preview_pieces(image, settings: NDNTSettings, index=()):
    """:func:`preview_plane` in pieces: a generator that yields after each piece.

    A caller that stops iterating stops the computation there (napari's
    ``thread_worker`` quits a generator at its next yield); the plane is the
    generator's return value (``StopIteration.value``).

    For a 3-D (or N-D) ``image`` only the planes within the steps' halos of
    plane ``index[-3]`` are read (NDNT's half window plus the opening's
    reach), and each step computes only the planes the next one needs: NDNT
    the ``2r + 1`` mask planes the opening of reach ``r`` needs (one without
    the opening), the opening its one plane. The plane equals the same plane of
    the whole-volume result exactly. A 2-D image is computed whole.

    The pieces are small, so a superseded preview stops soon: the z-context is
    read a few megabytes at a time, and NDNT computes one mask plane per piece
    (:func:`ndnt_plane`: for a bool or integer image from the sum of its
    window's planes, two planes of work, not the ``2h + 1`` planes of its
    window). A float image's NDNT planes are one piece, NDNT on the z-context
    (a float window sum is not exact, so it is left to NDNT), and so are those
    of a one-plane z window (the context is then the planes needed).

    Parameters
    ----------
    image : array_like
        The image (numpy, dask, lazy florin volume...): only the context is read.
    settings : NDNTSettings
    index : sequence of int
        The viewer's current position (``viewer.dims.current_step``) in data
        coordinates; only the entries before the last two are used.

    Returns
    -------
    numpy.ndarray
        Boolean mask of the plane (the last two axes).
    """
    image = source_of(image)
    if image.ndim < 3:
        data = np.asarray(image)
        yield "read"
        for step in settings.steps():
            data = np.asarray(step(data))
            yield getattr(step, "name", "step")
        return data
    index = tuple(index) if len(index) >= image.ndim else (0,) * image.ndim
    volume = _leading(image, index)
    n = volume.shape[0]
    z = min(max(int(index[image.ndim - 3]), 0), n - 1)
    steps = settings.steps()
    # Backwards from the one output plane: the planes each step must produce, widened by the halo of the next.
    halos = [int(florin.Serial(step).halo(tuple(volume.shape))[0]) for step in steps]
    ranges, lo, hi = [], z, z + 1
    for halo in reversed(halos):
        ranges.insert(0, (lo, hi))
        lo, hi = max(0, lo - halo), min(n, hi + halo)
    context = yield from _read_planes(volume, lo, hi)  # the z-context: all that is read
    (a, b), later = ranges[0], ranges[1:]
    if int(settings.shape[0]) // 2 == 0 or not _summable(context.dtype, n, settings.shape, volume.shape):
        # NDNT on the context, one piece: a one-plane z window (the context is the planes needed), or a float image
        data = np.asarray(steps[0](context))[a - lo : b - lo]
        yield "ndnt"
    else:
        data = np.empty((b - a, *volume.shape[1:]), bool)
        window = None
        for k, plane in enumerate(range(a, b)):
            data[k], window = ndnt_plane(context, plane - lo, settings, n_planes=n, offset=lo, window=window)
            yield "ndnt"
    offset = a
    for step, (a, b) in zip(steps[1:], later, strict=True):
        data, offset = np.asarray(step(data))[a - offset : b - offset], a
        yield getattr(step, "name", "step")
    return data[0]


#: The preview reads its z-context about this many bytes at a time (a superseded preview stops between reads).
_READ_BYTES = 8 * 2**20


def _read_planes(volume, lo, hi):
    """``volume[lo:hi]`` as one numpy array, read a few planes at a time: a generator yielding after each read.

    A numpy ``volume`` is not read: its planes are a view.
    """
    if isinstance(volume, np.ndarray):
        yield "read"
        return volume[lo:hi]
    plane_bytes = int(np.prod(volume.shape[1:], dtype=np.int64)) * np.dtype(volume.dtype).itemsize
    step = max(1, _READ_BYTES // max(1, plane_bytes))
    out = None
    for start in range(lo, hi, step):
        part = np.asarray(volume[start : min(hi, start + step)])
        if out is None:
            out = np.empty((hi - lo, *part.shape[1:]), part.dtype)
        out[start - lo : start - lo + len(part)] = part
        yield "read"
    return out


def _summable(dtype, n, shape, volume_shape) -> bool:
    """Whether :func:`ndnt_plane` decides NDNT on ``dtype`` exactly (bool or integer sums within NDNT's bounds)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biu":
        return False
    if dtype.kind == "b":
        vmax = 1
    else:
        info = np.iinfo(dtype)
        vmax = max(abs(int(info.min)), int(info.max))
    m = min(n, 2 * (int(shape[0]) // 2) + 1)
    area = 1
    for s, size in zip(shape[1:], volume_shape[1:], strict=True):
        area *= min(2 * (int(s) // 2) + 2, int(size))
    # NDNT decides integers exactly while (largest value) x (window + 1 per axis) < 2**61
    return 2 * m * vmax * 2 * area < 2**61


def ndnt_plane(context, k, settings: NDNTSettings, *, n_planes=None, offset=0, window=None):
    """NDNT of plane ``k`` of a bool or integer ``context`` (its z window inside it), from the sum of its window.

    With a z window of one plane (``h = 0``) it is NDNT on that plane, for any
    dtype. Otherwise, with ``h`` the z half window, the window of plane ``z`` is the ``m`` planes
    ``max(0, z - h) .. min(n - 1, z + h)`` of the volume (``n`` planes), its box
    sum the 2-D box sum of ``S``, the sum of those planes, and its count ``m``
    times the 2-D count. Plane 0 of ``ndnt`` on the two planes
    ``(m I, 2 S - m I)``, with window ``(3, sy, sx)``, compares ``2 m I`` times
    its 2-D count with the 2-D box sum of ``2 S``: NDNT's decision on plane
    ``z`` scaled by 2, which leaves it unchanged. Integer images are decided
    exactly (:func:`_summable` keeps the sums within NDNT's exact range), so the
    plane is exactly the whole-volume NDNT's.

    Parameters
    ----------
    context : numpy.ndarray
        Planes ``offset .. offset + len(context) - 1`` of the volume, holding
        plane ``offset + k``'s z window.
    k : int
        The plane, in ``context``.
    settings : NDNTSettings
    n_planes : int, optional
        Planes of the whole volume (where windows are clipped); default the context's.
    offset : int
        The volume plane of ``context[0]``.
    window : tuple, optional
        What the call for the plane before returned: its sum ``S`` is rolled
        to this plane (a plane added and one taken away) instead of summed
        again, and its buffers are reused.

    Returns
    -------
    (numpy.ndarray, tuple)
        The plane's boolean mask, and its ``window`` for the next call.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.random.default_rng(0).integers(0, 1000, (9, 16, 16), np.uint16)
    >>> settings = NDNTSettings(shape=(5, 7, 7), threshold=0.2)
    >>> mask, _ = ndnt_plane(image, 4, settings)
    >>> bool((mask == np.asarray(thresholding.ndnt(image, shape=(5, 7, 7), threshold=0.2))[4]).all())
    True
    """
    n = len(context) + offset if n_planes is None else int(n_planes)
    shape = tuple(int(s) for s in settings.shape)
    h, z = shape[0] // 2, offset + int(k)
    if h == 0:  # the window is the plane itself (any dtype)
        mask = thresholding.ndnt(context[z - offset : z - offset + 1], shape=shape, threshold=settings.threshold,
                                 polarity=settings.polarity)
        return np.asarray(mask)[0], None
    lo, hi = max(0, z - h), min(n, z + h + 1)
    wide = np.int32 if np.dtype(context.dtype).itemsize <= 2 and 2 * min(n, 2 * h + 1) * 2**16 < 2**31 else np.int64
    if window is not None and window[0] == z - 1 and window[3].dtype == wide:
        _, old_lo, old_hi, total, pair = window
        if old_lo < lo:
            total -= context[old_lo - offset]
        if hi > old_hi:
            total += context[hi - 1 - offset]
    else:
        total = context[lo - offset : hi - offset].sum(axis=0, dtype=wide)
        pair = np.empty((2, *total.shape), wide)
    np.multiply(context[z - offset], hi - lo, out=pair[0], dtype=wide)  # m I
    np.multiply(total, 2, out=pair[1])
    pair[1] -= pair[0]  # 2 S - m I
    mask = thresholding.ndnt(pair, shape=(3, *shape[1:]), threshold=settings.threshold, polarity=settings.polarity)
    return np.asarray(mask)[0], (z, lo, hi, total, pair)


def _tiled(steps, shape, executor, workers):
    """The steps as a (nested) pipeline run by ``executor`` over slabs along the first axis."""
    if executor in (None, "serial"):
        return florin.Serial(*steps), None
    import inspect

    from florin.registry import get_registry

    cls = get_registry().executor(executor)
    workers = int(workers or 2)
    options = {}
    params = inspect.signature(cls.__init__).parameters
    for key in ("workers", "threads", "processes", "max_workers"):  # workers= on florin's executors
        if key in params:
            options[key] = workers
            break
    tile = (max(1, math.ceil(shape[0] / (2 * workers))), *shape[1:])
    return florin.Serial(florin.tile(shape=tile), cls(*steps, **options)), tile


def apply_ndnt(image, settings: NDNTSettings, *, executor="serial", workers=None, chunks=8):
    """NDNT (+ opening) of the whole volume, chunk by chunk: a generator of progress, then the mask.

    The volume is cut into ``chunks`` slabs along its first axis; each slab is
    read with the steps' halo of context and run under ``executor`` (tiled in
    slabs, two per worker), and its core is written into the result, so the
    result equals the whole-volume result exactly while a progress bar moves.

    Yields ``(done, total)`` after each chunk; returns the boolean mask
    (``StopIteration.value``, as napari's ``thread_worker`` reports it).
    """
    image = source_of(image)
    image_shape = tuple(image.shape)
    if len(image_shape) < 3:
        pipeline, _ = _tiled(settings.steps(), image_shape, executor, workers)
        yield 1, 1
        return np.asarray(pipeline(np.asarray(image)))
    reach = settings.context(image_shape)[0]
    n = image_shape[0]
    chunks = max(1, min(int(chunks), n))
    edges = np.linspace(0, n, chunks + 1).round().astype(int)
    out = np.zeros(image_shape, bool)
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        lo, hi = max(0, a - reach), min(n, b + reach)
        block = np.asarray(image[lo:hi])
        pipeline, _ = _tiled(settings.steps(), block.shape, executor, workers)
        out[a:b] = np.asarray(pipeline(block))[a - lo : b - lo]
        yield i + 1, chunks
    return out


# -- warm-up -----------------------------------------------------------------------------------
#: Settings whose previews load every kernel a preview runs: z windows of one plane (NDNT on the plane), of a few
#: planes and of many (a float image's NDNT in its direct and rolling-plane modes, on one thread and on several),
#: and the opening.
_WARM_SETTINGS = tuple(NDNTSettings(shape=shape, threshold=0.25, opening=opening)
                       for shape, opening in (((1, 5, 5), True), ((3, 5, 5), False), ((9, 9, 9), False),
                                              ((33, 9, 9), False)))
_warm: set = set()
_warm_lock = threading.Lock()


def warm_up(dtype):
    """Load (or compile) the kernels the previews of a ``dtype`` image run, once per process: a generator.

    numba loads a kernel from its on-disk cache (or compiles it) the first
    time it runs in a process, which made the first preview take ~0.3 s
    instead of ~0.05 s. This previews a small volume of ``dtype`` with
    :data:`_WARM_SETTINGS`, so that every later preview finds its kernels
    loaded; it yields after each piece (a widget closing stops it) and
    returns at once for a dtype already warm.

    Examples
    --------
    >>> for _ in warm_up("uint16"):
    ...     pass
    >>> is_warm("uint16")
    True
    """
    key = np.dtype(dtype).str
    if is_warm(key):
        return
    image = (np.arange(24 * 48 * 48).reshape(24, 48, 48) * 7919 % 251).astype(dtype)
    for settings in _WARM_SETTINGS:
        yield from preview_pieces(image, settings, (12, 0, 0))
    yield from preview_pieces(image[12], replace(_WARM_SETTINGS[0], shape=(5, 5)))  # a 2-D image
    with _warm_lock:
        _warm.add(key)


def is_warm(dtype) -> bool:
    """Whether :func:`warm_up` has run for ``dtype`` in this process."""
    with _warm_lock:
        return np.dtype(dtype).str in _warm


# -- segmentation ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SegmentSettings:
    """The segment widget's parameters: the classic FLoRIN pipeline.

    ``min_size``: objects smaller than it are removed (1: none); the pipeline
    says so as ``remove_small_objects(max_size=min_size - 1)``, scikit-image
    0.26's name. ``classes`` are ``(name, rules)`` rows: ``rules`` as the CLI's
    ``--class`` bounds (``'area=100..4000, depth=..16'``; empty for the default class).
    """

    ndnt: NDNTSettings
    min_size: int = 64
    connectivity: int = 1
    classes: tuple = ()
    executor: str = "serial"
    workers: int | None = None

    def classifiers(self) -> list:
        return [parse_rules(name, rules) for name, rules in self.classes]

    def pipeline(self, shape) -> florin.Pipeline:
        """The whole pipeline as ``florin run`` executes it (first step ``florin.load()``)."""
        per_voxel, _ = _tiled(self.ndnt.steps(), tuple(shape), self.executor, self.workers)
        steps = [florin.load()]
        steps += list(per_voxel.steps)
        steps += self._object_steps()
        classes = self.classifiers()
        if classes:
            steps += [conncomp.regionprops(intensity="input"), florin.classify(*classes), florin.reconstruct()]
        return florin.Serial(*steps)

    def _object_steps(self):
        return [morphology.remove_small_objects(max_size=max(int(self.min_size) - 1, 0),
                                                connectivity=int(self.connectivity)),
                conncomp.label(connectivity=int(self.connectivity))]

    def to_toml(self, shape) -> str:
        """The pipeline file (TOML) that ``florin run FILE VOLUME -o OUT`` executes unchanged."""
        return self.pipeline(shape).to_toml()


def parse_rules(name: str, rules: str):
    """A bounds classifier from a table row: ``('cell', 'area=100..4000, depth=..16')``.

    ``lo..hi`` is inclusive, ``lo..``/``..hi`` leave an end open, a plain number
    is an upper bound, empty rules match everything (the default class).

    Examples
    --------
    >>> parse_rules("cell", "area=100..4000, depth=..16").bounds
    {'area': (100, 4000), 'depth': (None, 16)}
    """
    from florin.cli.segment import parse_class

    name = str(name).strip()
    if not name or ":" in name:
        raise ParameterError(f"class name: give a name without ':' (e.g. cell), got {name!r}")
    return parse_class(f"{name}:{rules or ''}")


def rules_text(classifier) -> str:
    """The table text of a bounds classifier (inverse of :func:`parse_rules`)."""
    parts = []
    for prop, (lo, hi) in classifier.bounds.items():
        hi = None if hi is not None and math.isinf(hi) else hi
        parts.append(f"{prop}=..{_num(hi)}" if lo is None else f"{prop}={_num(lo)}..{_num(hi)}")
    return ", ".join(parts)


def _num(value):
    if value is None:
        return ""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


@dataclass
class SegmentResult:
    """What the segment widget shows: objects, classes and the regionprops table."""

    objects: np.ndarray
    table: object  # pandas.DataFrame, one row per object, 'index' = its label
    classes: np.ndarray | None = None
    class_names: dict = field(default_factory=dict)
    regions: object = None


def run_segment(image, settings: SegmentSettings, *, spacing=None, units=None):
    """Run the segmentation step by step: a generator of ``(done, total, stage)``, returning a SegmentResult.

    The steps are those of :meth:`SegmentSettings.pipeline` (the pipeline file
    runs the same operators in one go); regionprops measures the intensities of
    ``image``.
    """
    total = 4
    volume = florin.as_volume(np.asarray(image), spacing=spacing, units=units)
    per_voxel, _ = _tiled(settings.ndnt.steps(), volume.shape, settings.executor, settings.workers)
    mask = per_voxel(volume)
    yield 1, total, "NDNT"
    labels = florin.Serial(*settings._object_steps())(mask)
    yield 2, total, "objects"
    regions = conncomp.regionprops(intensity=volume)(labels)
    yield 3, total, "regionprops"
    classes, names = None, {}
    classifiers = settings.classifiers()
    if classifiers:
        regions = florin.classify(*classifiers)(regions)
        class_volume = florin.reconstruct()(regions)
        classes = np.asarray(class_volume)
        names = {int(k): str(v) for k, v in class_volume.attrs.get("classes", {}).items()}
    table = regions.to_dataframe()
    table.insert(0, "index", table["label"].to_numpy())
    yield 4, total, "classes"
    return SegmentResult(objects=np.asarray(labels), table=table, classes=classes, class_names=names, regions=regions)


def settings_from_toml(source, *, shape=None) -> SegmentSettings:
    """Widget settings from a pipeline file made by :meth:`SegmentSettings.to_toml` (or like it).

    The file is first built with :func:`florin.pipeline_file.from_toml` (so an
    invalid file fails with florin's message), then its NDNT, opening, size
    filter, label, classify and executor steps fill the settings.
    """
    from florin.pipeline_file import from_toml

    text = source
    if not (isinstance(source, str) and "\n" in source):
        with open(source, "rb") as f:
            text = f.read().decode("utf-8")
    from_toml(text)  # validates: operators, parameters, executors
    data = tomllib.loads(text)
    found: dict = {"executor": "serial", "workers": None}

    def walk(steps, executor, options):
        for step in steps:
            if "executor" in step:
                opts = {k: v for k, v in step.items() if k not in ("executor", "steps")}
                walk(step.get("steps", []), step["executor"], opts)
                continue
            op = step.get("op")
            params = {k: v for k, v in step.items() if k != "op"}
            if op == "thresholding.ndnt":
                found["ndnt"] = params
                if executor != "serial":
                    found["executor"] = executor
                    workers = [v for k, v in options.items() if k in ("threads", "processes", "max_workers",
                                                                       "workers")]
                    found["workers"] = int(workers[0]) if workers else None
            elif op == "morphology.binary_opening":
                found["opening"] = True
            elif op == "morphology.remove_small_objects":
                # max_size (sizes at or below it go); min_size in files written before it (sizes below it go)
                found["min_size"] = int(params["max_size"]) + 1 if "max_size" in params else int(
                    params.get("min_size", 64))
                found["connectivity"] = int(params.get("connectivity", 1))
            elif op == "conncomp.label":
                found.setdefault("connectivity", int(params.get("connectivity", 1)))
            elif op == "classify":
                found["classes"] = tuple(
                    (c["name"], rules_text(parse_rules(c["name"], _rules_of(c)))) for c in params.get("classes", [])
                )

    walk(data.get("steps", []), data.get("executor", "serial"), {})
    if "ndnt" not in found:
        raise ParameterError("pipeline file: it has no thresholding.ndnt step, so it cannot fill the NDNT settings")
    nd = found["ndnt"]
    ndnt_shape = nd.get("shape")
    if ndnt_shape is None:
        ndnt_shape = default_shape(shape) if shape is not None else None
    elif isinstance(ndnt_shape, int):
        ndnt_shape = (ndnt_shape,) * (len(shape) if shape is not None else 3)
    ndnt = NDNTSettings(shape=tuple(ndnt_shape), threshold=float(nd.get("threshold", 0.25)),
                        polarity=nd.get("polarity", "dark"), opening=bool(found.get("opening", False)))
    base = SegmentSettings(ndnt=ndnt)
    return replace(base, min_size=found.get("min_size", base.min_size),
                   connectivity=found.get("connectivity", base.connectivity),
                   classes=found.get("classes", ()), executor=found["executor"], workers=found["workers"])


def _rules_of(entry) -> str:
    parts = []
    for prop, bound in entry.items():
        if prop == "name":
            continue
        if isinstance(bound, list):
            lo, hi = bound
            parts.append(f"{prop}={_num(lo)}..{'' if math.isinf(float(hi)) else _num(hi)}")
        else:
            parts.append(f"{prop}={_num(bound)}")
    return ", ".join(parts)
