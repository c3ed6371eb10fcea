"""Parameter tuning: find NDNT and clean-up parameters from a sparse annotation.

:func:`tune` searches the parameters of the classic FLoRIN pipeline (NDNT
neighbourhood shape per axis, threshold and polarity, a binary opening and the
minimum object size) for the best agreement with a few painted slices or a
small crop, and returns the best :class:`~florin.Pipeline` with a
:class:`TuneReport`.

Only the annotated region is computed, plus the context the operators' halos
declare (NDNT: half its neighbourhood; an opening of radius ``r``: ``2 r``).
NDNT and the opening are exact on such a crop, so every score is the score the
whole-volume run would get on the annotated voxels; only the minimum size is
approximated near the crop faces (an object cut by a crop face is kept: its
full size is unknown).

Without an annotation, :func:`estimate_parameters` estimates the polarity (the
tail of the intensity distribution that holds the sparse objects) and the
neighbourhood from the object scale (a scale-space Laplacian-of-Gaussian
blob-size estimate).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import blob_log
from skimage.filters import threshold_otsu
from skimage.measure import label as label_regions
from skimage.transform import rescale

import florin
import florin.conncomp as conncomp
import florin.morphology as morphology
from florin.errors import AnnotationError, ParameterError
from florin.tuning_classes import check_classes, fit_classes
from florin.tuning_regions import (
    BACKGROUND,
    FOREGROUND,
    _grow,
    _object_counts,
    _per_voxel_steps,
    _Region,
    declared_halo,
)
from florin.volume import as_volume

__all__ = [
    "SearchSpace",
    "Trial",
    "TuneReport",
    "TuneResult",
    "build_pipeline",
    "check_annotation",
    "check_labels",
    "estimate_parameters",
    "score_masks",
    "tune",
]

METRICS = ("dice", "jaccard", "object_f1")
_PARAMS = ("shape", "threshold", "polarity", "opening", "min_size")


# --------------------------------------------------------------------------------------------
# search space
# --------------------------------------------------------------------------------------------
MAX_DEFAULT_SIZE = 129
"""Largest neighbourhood size per axis of the default search space (wider ones: pass ``search=``)."""


def _default_axis_sizes(n: int, allow_one: bool) -> list[int]:
    sizes = [1] if allow_one else []
    size = 3
    while size <= min(n, MAX_DEFAULT_SIZE):
        sizes.append(size)
        size = 2 * size - 1  # 3, 5, 9, 17, 33, 65, 129 ...
    if len(sizes) < (2 if allow_one else 1):
        sizes.append(max(3, n | 1))
    return sizes


@dataclass
class SearchSpace:
    """The values :func:`tune` may choose from (a grid; the search visits part of it).

    Parameters
    ----------
    shape : sequence of sequence of int
        NDNT neighbourhood sizes per axis (one list per axis).
    threshold : sequence of float
        NDNT thresholds (fractions).
    polarity : sequence of str
        ``'dark'`` and/or ``'bright'``.
    opening : sequence of int
        Radius of the binary opening's footprint (the radius-``r`` cross
        iterated); 0 is no opening.
    min_size : sequence of int
        Minimum object size in voxels; 0 keeps every object.

    Examples
    --------
    >>> space = SearchSpace.default((16, 64, 64))
    >>> space.shape
    [[1, 3, 5, 9], [3, 5, 9, 17, 33], [3, 5, 9, 17, 33]]
    >>> space.size == 4 * 5 * 5 * len(space.threshold) * 2 * 3 * len(space.min_size)
    True
    """

    shape: list
    threshold: list = field(default_factory=lambda: [0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6])
    polarity: list = field(default_factory=lambda: ["dark", "bright"])
    opening: list = field(default_factory=lambda: [0, 1, 2])
    min_size: list = field(default_factory=lambda: [0, 10, 30, 100, 300, 1000])

    @classmethod
    def default(cls, volume_shape, **overrides) -> SearchSpace:
        """The default space for a volume of ``volume_shape``.

        Neighbourhood sizes 3, 5, 9, 17 ... up to the extent of each axis or
        :data:`MAX_DEFAULT_SIZE` (and 1, i.e. slice-by-slice NDNT, on the first
        axis of a 3-D volume).
        """
        ndim = len(volume_shape)
        shape = [_default_axis_sizes(int(n), allow_one=(a == 0 and ndim >= 3)) for a, n in enumerate(volume_shape)]
        return cls(shape=shape, **overrides).checked(ndim)

    @classmethod
    def coerce(cls, search, volume_shape) -> SearchSpace:
        """A :class:`SearchSpace` from None, a SearchSpace or a dict of its fields."""
        ndim = len(volume_shape)
        if search is None:
            return cls.default(volume_shape)
        if isinstance(search, SearchSpace):
            return search.checked(ndim)
        if isinstance(search, dict):
            unknown = sorted(set(search) - set(_PARAMS))
            if unknown:
                raise ParameterError(f"search: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(_PARAMS)}")
            base = cls.default(volume_shape)
            values = {k: search.get(k, getattr(base, k)) for k in _PARAMS}
            return cls(**values).checked(ndim)
        raise ParameterError(f"search: must be None, a florin.tuning.SearchSpace or a dict, got {search!r}")

    def checked(self, ndim: int) -> SearchSpace:
        """This space with validated, sorted, de-duplicated values (a ParameterError names a bad field)."""
        shape = self.shape
        if isinstance(shape, int) or not isinstance(shape, list | tuple) or len(shape) != ndim:
            raise ParameterError(f"search shape: needs one list of sizes per axis ({ndim} lists), got {shape!r}")
        axes = []
        for a, sizes in enumerate(shape):
            sizes = [sizes] if isinstance(sizes, int) else list(sizes)
            if not sizes or not all(isinstance(s, int | np.integer) and s >= 1 for s in sizes):
                raise ParameterError(f"search shape: axis {a} needs integer sizes >= 1, got {shape[a]!r}")
            axes.append(sorted({int(s) for s in sizes}))
        thresholds = sorted({float(t) for t in self.threshold})
        if not thresholds or any(not 0 <= t <= 1 for t in thresholds):
            raise ParameterError(f"search threshold: needs fractions in [0, 1], got {self.threshold!r}")
        polarity = [p for p in ("dark", "bright") if p in self.polarity]
        if not polarity or set(self.polarity) - {"dark", "bright"}:
            raise ParameterError(f"search polarity: needs 'dark' and/or 'bright', got {self.polarity!r}")
        opening = sorted({int(r) for r in self.opening})
        if not opening or any(r < 0 for r in opening):
            raise ParameterError(f"search opening: needs radii >= 0 (0 = no opening), got {self.opening!r}")
        min_size = sorted({int(m) for m in self.min_size})
        if not min_size or any(m < 0 for m in min_size):
            raise ParameterError(f"search min_size: needs sizes >= 0, got {self.min_size!r}")
        return SearchSpace(shape=axes, threshold=thresholds, polarity=polarity, opening=opening, min_size=min_size)

    @property
    def dims(self) -> list[list]:
        """Value lists in search order: one per shape axis, then threshold, polarity, opening, min_size."""
        return [*self.shape, self.threshold, self.polarity, self.opening, self.min_size]

    @property
    def size(self) -> int:
        """Number of configurations in the grid."""
        return math.prod(len(d) for d in self.dims)

    def params(self, index) -> dict:
        """The parameters of grid point ``index`` (one index per entry of :attr:`dims`)."""
        values = [d[i] for d, i in zip(self.dims, index, strict=True)]
        n = len(self.shape)
        return {"shape": tuple(values[:n]), "threshold": values[n], "polarity": values[n + 1],
                "opening": values[n + 2], "min_size": values[n + 3]}

    def halo(self, full_shape) -> tuple[int, ...]:
        """Context per axis that every configuration of the space needs around a region (the largest declared)."""
        return declared_halo(tuple(max(sizes) for sizes in self.shape), max(self.opening), tuple(full_shape))


# --------------------------------------------------------------------------------------------
# the pipeline a parameter set stands for
# --------------------------------------------------------------------------------------------
def auto_tile(params, volume_shape) -> tuple[int, ...]:
    """A tile shape for running ``params`` at scale: 4 neighbourhoods, 64 to 256 voxels per axis."""
    return tuple(int(min(n, max(64, min(256, 4 * s)))) for s, n in zip(params["shape"], volume_shape, strict=True))


def build_pipeline(params, *, tile=None, connectivity=1, classes=None):
    """The pipeline of a parameter set: load, NDNT, opening, small-object removal, labels (and classes).

    Parameters
    ----------
    params : dict
        ``shape``, ``threshold``, ``polarity``, ``opening`` (radius, 0 = none)
        and ``min_size`` (0 = keep every object), as in :attr:`TuneReport.params`.
    tile : tuple of int, optional
        Run NDNT and the opening tile by tile (exact: the halo is added
        automatically); None runs them on the whole volume.
    connectivity : int
        Connectivity of the objects (1 = faces).
    classes : sequence, optional
        ``(name, bounds)`` pairs or :class:`~florin.tuning_classes.ClassBounds`
        in classification order (``bounds``: property -> ``(lo, hi)``, empty
        for the last class): then regionprops, ``florin.classify`` and
        ``florin.reconstruct`` follow the labels (a class whose bounds are
        None is left out).

    Returns
    -------
    florin.Serial
        A pipeline whose result is the instance label volume (with
        ``classes``: the class-label volume); it writes to a pipeline file
        (:meth:`florin.Pipeline.to_toml`).

    Examples
    --------
    >>> import numpy as np
    >>> pipe = build_pipeline({"shape": (3, 3), "threshold": 0.3, "polarity": "dark", "opening": 0, "min_size": 0})
    >>> image = np.full((6, 6), 100, np.uint8); image[2, 2] = 10
    >>> int(pipe(image).values.max())
    1
    >>> pipe = build_pipeline({"shape": (3, 3), "threshold": 0.3, "polarity": "dark", "opening": 0, "min_size": 0},
    ...                       classes=[("dot", {"area": (None, 4)}), ("blob", {})])
    >>> pipe(image).attrs["classes"]
    {'1': 'dot', '2': 'blob'}
    """
    per_voxel = _per_voxel_steps(params)
    steps = [florin.load()]
    if tile is not None:
        steps += [florin.tile(shape=tuple(int(t) for t in tile)), florin.Serial(*per_voxel)]
    else:
        steps += per_voxel
    if params.get("min_size", 0):
        steps.append(morphology.remove_small_objects(max_size=int(params["min_size"]) - 1,
                                                       connectivity=connectivity))
    steps.append(conncomp.label(connectivity=connectivity))
    pairs = [(c.name, c.bounds) if hasattr(c, "bounds") else tuple(c) for c in (classes or ())]
    pairs = [(name, bounds) for name, bounds in pairs if bounds is not None]
    if pairs:
        intensity = any(prop.startswith("intensity") for _, bounds in pairs for prop in bounds)
        steps += [conncomp.regionprops(intensity="input") if intensity else conncomp.regionprops(),
                  florin.classify(*(florin.bounds_classifier(name, **bounds) for name, bounds in pairs)),
                  florin.reconstruct()]
    return florin.Serial(*steps)


# --------------------------------------------------------------------------------------------
# annotations
# --------------------------------------------------------------------------------------------
def _plain_array(data, name):
    values = getattr(data, "values", data)
    try:
        return np.asarray(values)
    except Exception:
        raise AnnotationError(f"{name}: must be an array, got {type(data).__name__}") from None


def check_annotation(annotation, volume_shape) -> np.ndarray:
    """Validate a 0/1/2 annotation (0 unlabeled, 1 background, 2 foreground) and return it as uint8.

    Raises
    ------
    AnnotationError
        One line naming the problem: wrong shape, values other than 0/1/2, no
        foreground or no background.

    Examples
    --------
    >>> import numpy as np
    >>> check_annotation(np.array([[0, 1], [2, 0]]), (2, 2)).dtype
    dtype('uint8')
    >>> check_annotation(np.array([[0, 1], [1, 0]]), (2, 2))
    Traceback (most recent call last):
    ...
    florin.errors.AnnotationError: annotation: no foreground voxels (value 2); paint at least one object
    """
    a = _plain_array(annotation, "annotation")
    volume_shape = tuple(volume_shape)
    if a.shape != volume_shape:
        raise AnnotationError(f"annotation: shape {a.shape} differs from the volume's {volume_shape}; "
                              "it must have the volume's shape (0 unlabeled, 1 background, 2 foreground)")
    if a.dtype.kind not in "biuf":
        raise AnnotationError(f"annotation: dtype {a.dtype} is not numeric; use 0 unlabeled, 1 background, 2 foreground")
    counts = np.bincount(a.ravel().astype(np.int64), minlength=3) if a.dtype.kind in "bu" else None
    if counts is None or len(counts) > 3:
        bad = np.setdiff1d(np.unique(a), [0, 1, 2])
        if bad.size:
            shown = ", ".join(f"{v:g}" for v in bad[:5].tolist()) + (" ..." if bad.size > 5 else "")
            raise AnnotationError(f"annotation: values must be 0 (unlabeled), 1 (background) or 2 (foreground), "
                                  f"found {shown}; give a label image of objects as labels= (--labels) instead")
        counts = np.bincount(a.ravel().astype(np.int64), minlength=3)
    if counts[FOREGROUND] == 0:
        raise AnnotationError("annotation: no foreground voxels (value 2); paint at least one object")
    if counts[BACKGROUND] == 0:
        raise AnnotationError("annotation: no background voxels (value 1); paint some background next to the objects")
    return a.astype(np.uint8, copy=False)


def check_labels(labels, volume_shape) -> np.ndarray:
    """Validate a label image of objects (0 background, 1..n objects, the volume's shape) and return it.

    Examples
    --------
    >>> import numpy as np
    >>> check_labels(np.array([[0, -1]]), (1, 2))
    Traceback (most recent call last):
    ...
    florin.errors.AnnotationError: labels: must be a label image of integers >= 0 (0 background, 1..n objects), got dtype int64
    """
    lab = _plain_array(labels, "labels")
    volume_shape = tuple(volume_shape)
    if lab.shape != volume_shape:
        raise AnnotationError(f"labels: shape {lab.shape} differs from the volume's {volume_shape}; "
                              "it must have the volume's shape (0 background, 1..n objects)")
    if lab.dtype.kind not in "biu" or (lab.size and lab.min() < 0):
        raise AnnotationError(f"labels: must be a label image of integers >= 0 (0 background, 1..n objects), "
                              f"got dtype {lab.dtype}")
    return lab


def annotation_from_labels(labels, volume_shape, *, margin=3):
    """A 0/1/2 annotation and instance ids from a label image of a few objects.

    Each object's voxels (label > 0) are foreground and a shell ``margin``
    voxels thick around it is background; the rest is unlabeled. (Another
    object closer than ``margin`` to a labelled one would be counted as
    background: label it too.)

    Returns
    -------
    annotation : numpy.ndarray
        uint8, 0/1/2.
    instances : numpy.ndarray
        The object ids on the annotated voxels (0 elsewhere).

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((1, 9), int); labels[0, 4] = 7
    >>> annotation_from_labels(labels, (1, 9), margin=2)[0].tolist()
    [[0, 0, 1, 1, 2, 1, 1, 0, 0]]
    """
    lab = check_labels(labels, volume_shape)
    volume_shape = tuple(volume_shape)
    annotation = np.zeros(volume_shape, np.uint8)
    ball = ndi.generate_binary_structure(lab.ndim, lab.ndim)
    found = False
    for box in ndi.find_objects(lab.astype(np.intp, copy=False)):
        if box is None:
            continue
        found = True
        grown = _grow(box, (margin,) * lab.ndim, volume_shape)
        objects = lab[grown] > 0
        shell = ndi.binary_dilation(objects, ball, iterations=margin) & ~objects
        annotation[grown][shell] = BACKGROUND
    if not found:
        raise AnnotationError("labels: no objects (all voxels are 0); label at least one object")
    annotation[lab > 0] = FOREGROUND
    if not np.any(annotation == BACKGROUND):
        raise AnnotationError("labels: no background around the objects (they fill the volume)")
    instances = np.where(annotation == FOREGROUND, lab, 0)
    return annotation, instances


# --------------------------------------------------------------------------------------------
# scores
# --------------------------------------------------------------------------------------------
def _from_counts(metric, counts) -> float:
    if metric == "object_f1":
        matched, n_pred, n_true = counts
        total = n_pred + n_true
        return 1.0 if total == 0 else 2.0 * matched / total
    tp, fp, fn = counts
    if metric == "dice":
        return 1.0 if tp + fp + fn == 0 else 2.0 * tp / (2.0 * tp + fp + fn)
    return 1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn)


def score_masks(prediction, truth, *, metric="dice", where=None, truth_labels=None, connectivity=1) -> float:
    """Dice, Jaccard or object-level F1 of a prediction against the truth, on ``where`` voxels only.

    Parameters
    ----------
    prediction : array_like
        Mask or label image (non-zero is foreground).
    truth : array_like
        Mask, or a 0/1/2 annotation (2 is foreground) when ``where`` is None:
        then only its non-zero voxels are scored.
    metric : {'dice', 'jaccard', 'object_f1'}
        Object F1 matches objects with an intersection over union above 0.5.
    where : array_like of bool, optional
        Voxels to score (default: all, or the annotated ones of an annotation).
    truth_labels : array_like, optional
        Instance ids of the true objects (object F1; default: connected
        components of the truth).
    connectivity : int
        Connectivity of the objects for object F1.

    Examples
    --------
    >>> import numpy as np
    >>> score_masks(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))
    0.6666666666666666
    >>> score_masks(np.array([1, 1, 0, 0]), np.array([2, 1, 0, 1]))
    0.6666666666666666
    """
    _check_metric(metric)
    pred = np.asarray(getattr(prediction, "values", prediction))
    truth = np.asarray(getattr(truth, "values", truth))
    if where is None:
        if truth.dtype.kind in "iu" and truth.size and truth.max() == FOREGROUND and np.any(truth == BACKGROUND):
            where = truth > 0
            truth = truth == FOREGROUND
        else:
            where = np.ones(truth.shape, bool)
    where = np.asarray(where, bool)
    if metric == "object_f1":
        structure = ndi.generate_binary_structure(pred.ndim, connectivity)
        p_ids = pred if pred.dtype.kind in "iu" and pred.max() > 1 else ndi.label(pred != 0, structure)[0]
        t_ids = truth_labels if truth_labels is not None else ndi.label(truth != 0, structure)[0]
        return _from_counts(metric, _object_counts(np.asarray(t_ids)[where], p_ids[where]))
    p, t = pred[where] != 0, truth[where] != 0
    return _from_counts(metric, (int(np.count_nonzero(p & t)), int(np.count_nonzero(p & ~t)),
                                 int(np.count_nonzero(~p & t))))


def _check_metric(metric):
    if metric not in METRICS:
        raise ParameterError(f"metric: must be one of {', '.join(map(repr, METRICS))}, got {metric!r}")


# --------------------------------------------------------------------------------------------
# evaluation on crops around the annotated regions
# --------------------------------------------------------------------------------------------
def _runs(annotation):
    """Bounding boxes of the annotated regions: runs of consecutive annotated slices along axis 0."""
    annotated = annotation > 0
    other = tuple(range(1, annotation.ndim))
    rows = np.flatnonzero(annotated.any(axis=other)) if other else np.flatnonzero(annotated)
    boxes = []
    for run in np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1):
        sl = slice(int(run[0]), int(run[-1]) + 1)
        sub = annotated[sl]
        box = [sl]
        for axis in other:
            present = np.flatnonzero(sub.any(axis=tuple(a for a in range(annotation.ndim) if a != axis)))
            box.append(slice(int(present[0]), int(present[-1]) + 1))
        boxes.append(tuple(box))
    return boxes


def _clusters(image, annotation, instances, boxes, halo, connectivity):
    """Regions to compute: runs whose crops overlap along axis 0 share one crop (computed once per configuration)."""
    groups = []
    for box in sorted(boxes, key=lambda b: b[0].start):
        if groups and box[0].start - halo[0] < groups[-1][-1][0].stop + halo[0]:
            groups[-1].append(box)
        else:
            groups.append([box])
    regions = []
    for members in groups:
        union = tuple(slice(min(b[a].start for b in members), max(b[a].stop for b in members))
                      for a in range(annotation.ndim))
        rows = [(b[0].start, b[0].stop) for b in members]
        regions.append(_Region(image, annotation, instances, union, halo, connectivity, rows=rows))
    return regions


def _split_holdout(regions, holdout):
    """Searched and held-out regions (runs): every k-th one is held out (none when there is only one)."""
    if holdout is not None and not 0 <= holdout < 1:
        raise ParameterError(f"holdout: must be a fraction in [0, 1), got {holdout!r}")
    if not holdout or len(regions) < 2:
        return regions, []
    n_out = min(len(regions) - 1, max(1, round(holdout * len(regions))))
    picks = set(np.linspace(1, len(regions) - 1, n_out).round().astype(int).tolist()) if n_out else set()
    # linspace can collide on few regions: fill up from the end
    for i in range(len(regions) - 1, 0, -1):
        if len(picks) >= n_out:
            break
        picks.add(i)
    searched = [r for i, r in enumerate(regions) if i not in picks]
    held = [r for i, r in enumerate(regions) if i in picks]
    return searched, held


def _total(regions, params, metric):
    if not regions:
        return None
    counts = np.sum([r.counts(params, metric) for r in regions], axis=0)
    return _from_counts(metric, tuple(int(c) for c in counts))


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
@dataclass
class Trial:
    """One evaluated configuration: its parameters and score on the searched regions."""

    params: dict
    score: float
    order: int
    heldout: float | None = None

    def describe(self) -> str:
        p = self.params
        shape = ",".join(str(s) for s in p["shape"])
        return (f"shape={shape} threshold={p['threshold']:g} polarity={p['polarity']} "
                f"opening={p['opening']} min_size={p['min_size']}")


@dataclass
class TuneReport:
    """What :func:`tune` found and how.

    Attributes
    ----------
    params : dict
        The best parameters (``shape``, ``threshold``, ``polarity``, ``opening``, ``min_size``).
    metric : str
        ``'dice'``, ``'jaccard'`` or ``'object_f1'``.
    score : float or None
        Best score on the searched annotated regions (None without annotation).
    heldout_score : float or None
        The best configuration's score on the held-out regions (None when
        there was a single annotated region).
    top : list of Trial
        The best configurations, best first, each with its held-out score.
    trials : list of Trial
        Every evaluated configuration, in evaluation order.
    evaluations : int
        Number of configurations evaluated.
    grid_size : int
        Number of configurations in the search space.
    searched_regions, heldout_regions : list of tuple
        ``(first, last)`` slice indices along axis 0 of each region.
    computed_fraction : float
        Voxels computed per evaluation (crops with their halos) over the volume's.
    elapsed : float
        Seconds spent.
    stopped : str
        ``'converged'``, ``'budget'`` (time), ``'max_evaluations'``, ``'grid'``
        (every configuration evaluated) or ``'estimated'`` (no annotation).
    estimate : dict or None
        The unsupervised estimate (:func:`estimate_parameters`) when there was no annotation.
    classes : list of ClassBounds
        With ``classes=``: the learned classes in classification order (the
        last has no bounds), each with its bounds and right / annotated objects
        (:class:`florin.tuning_classes.ClassBounds`); empty otherwise.
    class_accuracy, heldout_class_accuracy : float or None
        Fraction of the annotated objects on the searched (held-out) regions
        whose matched object gets their class (an object the segmentation
        misses is wrong); None without classes (without held-out objects).
    """

    params: dict
    metric: str
    score: float | None = None
    heldout_score: float | None = None
    top: list = field(default_factory=list)
    trials: list = field(default_factory=list)
    evaluations: int = 0
    grid_size: int = 0
    searched_regions: list = field(default_factory=list)
    heldout_regions: list = field(default_factory=list)
    computed_fraction: float = 0.0
    elapsed: float = 0.0
    stopped: str = "converged"
    estimate: dict | None = None
    space: SearchSpace | None = None
    classes: list = field(default_factory=list)
    class_accuracy: float | None = None
    heldout_class_accuracy: float | None = None

    def summary(self) -> str:
        """The report as text: chosen parameters, scores and the top configurations."""
        best = Trial(self.params, self.score if self.score is not None else float("nan"), 0)
        lines = [f"best: {best.describe()}"]
        if self.estimate is not None:
            lines.append("estimated without annotation: " + ", ".join(
                f"{k}={v}" for k, v in self.estimate.items() if k not in _PARAMS))
        if self.score is not None:
            held = "n/a (one annotated region: annotate more slices to see it)" if self.heldout_score is None \
                else f"{self.heldout_score:.4f} on {len(self.heldout_regions)} held-out region(s)"
            lines.append(f"{self.metric}: {self.score:.4f} on {len(self.searched_regions)} searched region(s), "
                         f"held-out: {held}")
            lines.append(f"evaluated {self.evaluations} of {self.grid_size} configurations in {self.elapsed:.1f} s "
                         f"({self.stopped}); each on {100 * self.computed_fraction:.1f}% of the volume")
        if self.top:
            lines.append(f"top configurations ({self.metric} searched / held-out):")
            for i, trial in enumerate(self.top, 1):
                held = "   -  " if trial.heldout is None else f"{trial.heldout:.4f}"
                lines.append(f"  {i:2d}. {trial.score:.4f} / {held}  {trial.describe()}")
        if self.classes:
            lines.extend(self._class_lines())
        return "\n".join(lines)

    def _class_lines(self) -> list[str]:
        def share(pairs, accuracy):
            right, total = (sum(p[i] for p in pairs) for i in (0, 1))
            return "n/a (no held-out objects)" if accuracy is None else f"{accuracy:.4f} ({right}/{total})"

        lines = [f"classes: per-object accuracy {share([c.searched for c in self.classes], self.class_accuracy)} "
                 f"on searched objects, held-out: {share([c.heldout for c in self.classes], self.heldout_class_accuracy)}"]
        width = max(len(c.name) for c in self.classes)
        for i, c in enumerate(self.classes, 1):
            held = f", held-out {c.heldout[0]}/{c.heldout[1]}" if c.heldout[1] else ""
            lines.append(f"  {i:2d}. {c.name:<{width}}  {c.describe()}   (right: searched {c.searched[0]}/"
                         f"{c.searched[1]}{held})")
        return lines

    def __str__(self):
        return self.summary()


class TuneResult(NamedTuple):
    """``(pipeline, report)``: the best pipeline and the :class:`TuneReport`."""

    pipeline: object
    report: TuneReport


# --------------------------------------------------------------------------------------------
# the search
# --------------------------------------------------------------------------------------------
class _Search:
    def __init__(self, space, regions, metric, budget, max_evaluations):
        self.space, self.regions, self.metric = space, regions, metric
        self.deadline = None if budget is None else time.perf_counter() + float(budget)
        self.max_evaluations = max_evaluations
        self.scores: dict = {}
        self.trials: list[Trial] = []
        self.stopped = None

    def exhausted(self) -> bool:
        if not self.trials:  # at least one configuration, whatever the budget
            return False
        if self.max_evaluations is not None and len(self.trials) >= self.max_evaluations:
            self.stopped = "max_evaluations"
        elif self.deadline is not None and time.perf_counter() > self.deadline:
            self.stopped = "budget"
        return self.stopped is not None

    def score(self, index) -> float:
        index = tuple(index)
        if index in self.scores:
            return self.scores[index]
        if self.exhausted():
            return -math.inf
        params = self.space.params(index)
        value = _total(self.regions, params, self.metric)
        self.scores[index] = value
        self.trials.append(Trial(params, value, len(self.trials)))
        return value

    def grid(self):
        for index in itertools.product(*(range(len(d)) for d in self.space.dims)):
            self.score(index)
            if self.stopped:
                return
        self.stopped = "grid"

    def coarse_to_fine(self, starts=3):
        dims = self.space.dims
        n_shape = len(self.space.shape)
        ip = n_shape + 1  # polarity
        # coarse: a few values per shape axis and threshold, every polarity, no clean-up
        coarse = []
        for d, values in enumerate(dims):
            n = len(values)
            if d < n_shape:
                k = min(n, 3)
            elif d == n_shape:
                k = min(n, 4)
            elif d == ip:
                k = n
            else:
                k = 1
            coarse.append(sorted({int(round(x)) for x in np.linspace(0, n - 1, k)}) if k > 1 else [0])
        for index in itertools.product(*coarse):
            self.score(index)
            if self.stopped:
                return
        ranked = sorted(self.scores.items(), key=lambda kv: -kv[1])
        # fine: best-improvement descent over the whole grid from the best coarse points
        seen_starts = []
        for index, _ in ranked:
            if len(seen_starts) >= starts:
                break
            seen_starts.append(index)
        for start in seen_starts:
            self._descend(start)
            if self.stopped:
                return
        self.stopped = "converged"

    def _descend(self, index):
        dims = self.space.dims
        current, best = tuple(index), self.scores[tuple(index)]
        while True:
            moves = []
            for d, values in enumerate(dims):
                for step in (-1, 1):
                    j = current[d] + step
                    if 0 <= j < len(values):
                        moves.append(current[:d] + (j,) + current[d + 1:])
            # a joint move of threshold and opening: an opening usually wants a lower threshold
            n_shape = len(self.space.shape)
            it, io = n_shape, n_shape + 2
            for dt, do in ((-1, 1), (1, -1)):
                t, o = current[it] + dt, current[io] + do
                if 0 <= t < len(dims[it]) and 0 <= o < len(dims[io]):
                    moves.append(tuple(t if d == it else o if d == io else v for d, v in enumerate(current)))
            scored = [(self.score(m), m) for m in moves]
            if self.stopped:
                return
            value, move = max(scored, key=lambda sm: sm[0])
            if value <= best + 1e-12:
                return
            current, best = move, value


def tune(volume, annotation=None, *, labels=None, classes=None, search=None, metric="dice", budget=60.0,
         max_evaluations=None, strategy="coarse-to-fine", holdout=0.34, top=5, tile="auto", connectivity=1):
    """Find the parameters of the classic pipeline from a sparse annotation.

    Parameters
    ----------
    volume : array_like or xarray.DataArray
        The image (2-D or 3-D; it may be lazy: only the crops around the
        annotation are read).
    annotation : array_like, optional
        Same shape as ``volume``: 0 unlabeled, 1 background, 2 foreground; a
        few painted slices or a small crop are enough. Without ``annotation``
        and ``labels`` the parameters are estimated
        (:func:`estimate_parameters`).
    labels : array_like, optional
        Instead of ``annotation``: a label image of a few objects (0 elsewhere).
        Each object is foreground and a shell of 3 voxels around it background
        (:func:`annotation_from_labels`). With ``annotation``: the labels of the
        annotated objects (the objects of object F1 and the ones ``classes``
        names); the annotation alone says what is scored. An object is a
        connected region of one label value, so object ids and one value per
        class both work.
    classes : dict, optional
        Also learn a weak classification of the objects: class name -> label
        value(s) of ``labels`` (``{'cell': [1, 2, 3], 'vasculature': 4}``), or
        label -> class name (``{1: 'cell', 4: 'vasculature'}``). An annotated
        object is a connected region of one named value (a label image of
        object ids and one painted with one value per class both work; values
        not named only serve the segmentation's tuning). After
        the segmentation is tuned, the objects it finds on the annotated ones
        are measured (area and extents, as ``conncomp.regionprops``; the mean
        intensity where sizes cannot separate the classes) and one
        ``florin.bounds_classifier`` per class is chosen for the most right
        objects, bounds in the middle of the gaps to the other classes; the
        classes are ordered by size, the most general one last and unbounded,
        as in the seed pipeline (:mod:`florin.tuning_classes`). The pipeline
        then ends with regionprops, ``florin.classify`` and
        ``florin.reconstruct`` (its result is the class-label volume) and the
        report gives the bounds and the per-object accuracy, held out too.
    search : SearchSpace or dict, optional
        The values to choose from (default :meth:`SearchSpace.default`); a dict
        overrides some fields, e.g. ``{"polarity": ["bright"]}``.
    metric : {'dice', 'jaccard', 'object_f1'}
        Scored on the annotated voxels only.
    budget : float or None
        Seconds the search may take (None: no limit); the first configuration
        is always evaluated.
    max_evaluations : int, optional
        Stop after this many configurations.
    strategy : {'coarse-to-fine', 'grid'}
        A coarse grid then a best-improvement descent over the whole grid from
        its best points (default), or every configuration.
    holdout : float
        Fraction of the annotated regions (runs of slices along the first axis)
        held out of the search and only scored, when there are two or more.
    top : int
        How many of the best configurations the report lists.
    tile : 'auto', tuple of int or None
        Tile shape of the returned pipeline (NDNT and opening run tile by tile,
        exactly): ``'auto'`` (:func:`auto_tile`), a shape, or None (whole volume).
    connectivity : int
        Connectivity of the objects.

    Returns
    -------
    TuneResult
        ``(pipeline, report)``: the best :class:`florin.Serial` pipeline (its
        result is the instance label volume) and a :class:`TuneReport`.

    Raises
    ------
    AnnotationError
        A bad annotation (wrong shape, values other than 0/1/2, no foreground,
        no background).
    ParameterError
        A bad option, e.g. ``classes`` that is empty, names a label not in
        ``labels`` or gives a class no label.

    Examples
    --------
    >>> import numpy as np
    >>> from florin.data import phantom
    >>> p = phantom((8, 48, 48), seed=1)
    >>> annotation = np.zeros(p.image.shape, np.uint8); annotation[4] = np.where(p.labels[4] > 0, 2, 1)
    >>> pipeline, report = tune(p.image, annotation, search={"shape": [[1, 3], [9, 17], [9, 17]]}, tile=None)
    >>> report.params["polarity"], report.score > 0.9
    ('dark', True)

    Classes from a label image of a few annotated objects (three cells, one vessel):

    >>> p = phantom((16, 64, 64), seed=3, n_cells=12)
    >>> few = np.where(np.isin(p.labels, [1, 2, 3, 9]), p.labels, 0)
    >>> pipeline, report = tune(p.image, labels=few, classes={"cell": [1, 2, 3], "vasculature": 9},
    ...                         search={"shape": [[1, 3], [9, 17], [9, 17]]}, tile=None)
    >>> [c.name for c in report.classes], report.class_accuracy
    (['cell', 'vasculature'], 1.0)
    >>> pipeline(p.image).attrs["classes"]
    {'1': 'cell', '2': 'vasculature'}
    """
    _check_metric(metric)
    if strategy not in ("coarse-to-fine", "grid"):
        raise ParameterError(f"strategy: must be 'coarse-to-fine' or 'grid', got {strategy!r}")
    if budget is not None and not (isinstance(budget, int | float) and budget >= 0):
        raise ParameterError(f"budget: must be seconds >= 0 or None, got {budget!r}")
    if max_evaluations is not None and not (isinstance(max_evaluations, int) and max_evaluations >= 1):
        raise ParameterError(f"max_evaluations: must be an integer >= 1 or None, got {max_evaluations!r}")
    start = time.perf_counter()
    vol = as_volume(volume)
    image = vol.data  # numpy, memmap or lazy: regions read only their crops
    if vol.ndim not in (2, 3):
        raise ParameterError(f"volume: tune needs a 2-D or 3-D volume, got {vol.ndim}-D (shape {vol.shape})")
    space = SearchSpace.coerce(search, vol.shape)
    if classes is not None and labels is None:
        raise ParameterError("classes: needs labels= (a label image of the annotated objects, whose values classes "
                             "names), alone or with annotation=")
    if annotation is None and labels is None:
        estimate = estimate_parameters(vol)
        params = {k: estimate[k] for k in _PARAMS}
        report = TuneReport(params=params, metric=metric, stopped="estimated", estimate=estimate,
                            elapsed=time.perf_counter() - start, space=space)
        return TuneResult(build_pipeline(params, tile=_tile(tile, params, vol.shape), connectivity=connectivity), report)
    if annotation is None:
        annotation, instances = annotation_from_labels(labels, vol.shape)
    else:
        annotation = check_annotation(annotation, vol.shape)
        instances = None if labels is None else np.where(annotation == FOREGROUND, check_labels(labels, vol.shape), 0)
    if instances is not None and metric == "object_f1":  # an object: a connected region of one label value

        instances = label_regions(instances, background=0, connectivity=connectivity)
    objects = None
    if classes is not None:  # checked before the search

        classes, objects = check_classes(classes, check_labels(labels, vol.shape), connectivity)
    halo = space.halo(vol.shape)
    runs = _runs(annotation)
    searched_runs, held_runs = _split_holdout(runs, holdout)
    searched = _clusters(image, annotation, instances, searched_runs, halo, connectivity)
    held = _clusters(image, annotation, instances, held_runs, halo, connectivity)
    search_run = _Search(space, searched, metric, budget, max_evaluations)
    if strategy == "grid":
        search_run.grid()
    else:
        search_run.coarse_to_fine()
    ranked = sorted(search_run.trials, key=lambda t: (-t.score, t.order))
    best = ranked[0]
    for trial in ranked[:top]:
        trial.heldout = _total(held, trial.params, metric)
    report = TuneReport(
        params=dict(best.params), metric=metric, score=best.score, heldout_score=best.heldout,
        top=ranked[:top], trials=search_run.trials, evaluations=len(search_run.trials), grid_size=space.size,
        searched_regions=[(b[0].start, b[0].stop - 1) for b in searched_runs],
        heldout_regions=[(b[0].start, b[0].stop - 1) for b in held_runs],
        computed_fraction=sum(r.computed for r in searched) / max(1, len(search_run.trials) * int(np.prod(vol.shape))),
        elapsed=time.perf_counter() - start, stopped=search_run.stopped, space=space,
    )
    # for the report figure: each run on its own
    report._runs = sorted([("searched", b) for b in searched_runs] + [("held-out", b) for b in held_runs],
                          key=lambda kb: kb[1][0].start)
    report._context = (image, annotation, instances, halo, connectivity)
    if objects is not None:

        held = [b[0] for b in held_runs]
        for obj in objects:
            obj.heldout = any(rows.start <= obj.box[0].start < rows.stop for rows in held)
        report.classes, (report.class_accuracy, report.heldout_class_accuracy), _ = fit_classes(
            objects, classes, image, best.params, connectivity)
        report.elapsed = time.perf_counter() - start
    pipeline = build_pipeline(best.params, tile=_tile(tile, best.params, vol.shape), connectivity=connectivity,
                              classes=report.classes)
    return TuneResult(pipeline, report)


def _tile(tile, params, volume_shape):
    if tile is None:
        return None
    if isinstance(tile, str):
        if tile != "auto":
            raise ParameterError(f"tile: must be 'auto', a tuple of ints or None, got {tile!r}")
        return auto_tile(params, volume_shape)
    tile = (tile,) * len(volume_shape) if isinstance(tile, int) else tuple(tile)
    if len(tile) != len(volume_shape) or any(int(t) < 1 for t in tile):
        raise ParameterError(f"tile: needs {len(volume_shape)} sizes >= 1, got {tile!r}")
    return tuple(int(t) for t in tile)


# --------------------------------------------------------------------------------------------
# no annotation: polarity and scale from the data
# --------------------------------------------------------------------------------------------
def _odd(x) -> int:
    x = max(1, int(round(x)))
    return x if x % 2 else x + 1


def _sample_slices(vol, n=3):
    """Up to ``n`` 2-D slices (along the first axis of a 3-D volume), as float64."""
    data = vol.data
    if vol.ndim == 2:
        return [np.asarray(data, np.float64)]
    picks = np.unique(np.linspace(0, vol.shape[0] - 1, n + 2)[1:-1].round().astype(int))
    return [np.asarray(data[int(i)], np.float64) for i in picks]


def estimate_parameters(volume, *, max_pixels=256 * 256) -> dict:
    """Estimate the polarity, neighbourhood, threshold and minimum size from the data alone.

    * polarity: the sign of the skewness of the high-passed intensities (the
      tail that holds the sparse objects: negative skew means dark objects);
    * scale: the median radius of the blobs found by a scale-space
      Laplacian-of-Gaussian (:func:`skimage.feature.blob_log`) on a few slices;
      along the first axis of a 3-D volume the radius is scaled by the ratio of
      the objects' mean extents along it and across it;
    * neighbourhood: about four object radii per axis (twice the diameter,
      so that a window around an object holds background);
    * threshold: Otsu's threshold of the ratio of each voxel to its
      neighbourhood mean;
    * minimum size: a tenth of the volume of a typical object.

    Returns
    -------
    dict
        ``shape``, ``threshold``, ``polarity``, ``opening``, ``min_size``, and the
        estimates ``radius`` (voxels per axis) and ``skewness``.
    """

    vol = as_volume(volume)
    slices = _sample_slices(vol)
    # polarity: skewness of the high-passed slices
    residuals = []
    for s in slices:
        background = ndi.uniform_filter(s, max(3, min(s.shape) // 4), mode="reflect")
        residuals.append((s - background).ravel())
    r = np.concatenate(residuals)
    r = r - r.mean()
    sd = r.std()
    skew = float((r**3).mean() / sd**3) if sd > 0 else 0.0
    polarity = "dark" if skew < 0 else "bright"
    # scale: LoG blobs on the slices, objects made bright; one absolute threshold for all slices
    # (a quarter of the strongest scale-normalised response), so a slice with few objects adds no noise blobs
    prepared = []
    for s in slices:
        f = math.sqrt(max_pixels / s.size) if s.size > max_pixels else 1.0
        small = rescale(s, f, anti_aliasing=True, preserve_range=True) if f < 1 else s
        prepared.append((small, f))
    lo, hi = np.percentile(np.concatenate([p.ravel() for p, _ in prepared]), [1, 99])
    max_sigma = max(2.0, min(prepared[0][0].shape) / 8)
    sigmas = np.geomspace(1.0, max_sigma, 6)
    strongest = 0.0
    normed = []
    for small, f in prepared:
        norm = np.clip((small - lo) / max(hi - lo, 1e-12), 0, 1)
        if polarity == "dark":
            norm = 1.0 - norm
        normed.append((norm, f))
        for sigma in sigmas:
            strongest = max(strongest, float((-sigma**2 * ndi.gaussian_laplace(norm, sigma)).max()))
    radii = []
    for norm, f in normed:
        blobs = blob_log(norm, min_sigma=1.0, max_sigma=max_sigma, num_sigma=12, threshold=0.25 * strongest)
        if len(blobs):
            radii.extend((blobs[:, 2] * math.sqrt(2) / f).tolist())
    radius_yx = float(np.median(radii)) if radii else max(2.0, min(slices[0].shape) / 32)
    radius = [radius_yx] * vol.ndim
    if vol.ndim == 3:
        radius[0] = radius_yx * _extent_ratio(vol, polarity, radius_yx)
    shape = tuple(min(_odd(4 * rad), _odd(n)) if n > 1 else 1 for rad, n in zip(radius, vol.shape, strict=True))
    # threshold: Otsu on the voxel / neighbourhood-mean ratio of the sampled slices' neighbourhood
    ratios = _ndnt_ratios(vol, shape)
    split = float(threshold_otsu(ratios)) if ratios.size and np.ptp(ratios) > 0 else 0.75
    threshold = 1.0 - split if polarity == "dark" else split - 1.0
    threshold = float(np.clip(round(threshold, 3), 0.02, 0.6))
    object_volume = math.prod(max(1.0, r) for r in radius) * (4 / 3 * math.pi if vol.ndim == 3 else math.pi)
    min_size = int(max(0, round(object_volume / 10)))
    return {"shape": shape, "threshold": threshold, "polarity": polarity, "opening": 1, "min_size": min_size,
            "radius": tuple(round(r, 1) for r in radius), "skewness": round(skew, 3)}


def _extent_ratio(vol, polarity, radius_yx):
    """Mean object extent along the first axis over that across it, from a rough mask of a central slab."""
    n0 = vol.shape[0]
    half = max(2, int(3 * radius_yx))
    lo, hi = max(0, n0 // 2 - half), min(n0, n0 // 2 + half + 1)
    slab = np.asarray(vol.data[lo:hi], np.float64)
    size = [min(n, _odd(4 * radius_yx)) for n in slab.shape]
    high = slab - ndi.uniform_filter(slab, size, mode="reflect")
    if polarity == "dark":
        high = -high

    if np.ptp(high) == 0:
        return 1.0
    mask = high > threshold_otsu(high)
    mask = ndi.binary_opening(mask)

    def mean_run(axis):
        m = np.moveaxis(mask, axis, -1).reshape(-1, mask.shape[axis]).astype(np.int8)
        edges = np.diff(np.pad(m, ((0, 0), (1, 1))), axis=1)
        starts, stops = np.nonzero(edges == 1), np.nonzero(edges == -1)
        lengths = stops[1] - starts[1]
        return float(np.median(lengths)) if lengths.size else 0.0

    along, across = mean_run(0), 0.5 * (mean_run(1) + mean_run(2))
    if along <= 0 or across <= 0:
        return 1.0
    return float(np.clip(along / across, 0.1, 1.0 if hi - lo >= n0 else 10.0))


def _ndnt_ratios(vol, shape):
    """Voxel / neighbourhood-mean ratios on a central crop (at most ~2 million voxels)."""
    budget = 2_000_000
    crop = []
    for s, n in zip(shape, vol.shape, strict=True):
        crop.append(min(n, max(3 * s, 1)))
    while math.prod(crop) > budget:
        crop = [max(1, c // 2) if c == max(crop) else c for c in crop]
    sl = tuple(slice((n - c) // 2, (n - c) // 2 + c) for c, n in zip(crop, vol.shape, strict=True))
    data = np.asarray(vol.data[sl], np.float64)
    window = [2 * (s // 2) + 1 for s in shape]
    mean = ndi.uniform_filter(data, window, mode="constant") / ndi.uniform_filter(np.ones_like(data), window,
                                                                                   mode="constant")
    ok = mean > 0
    return (data[ok] / mean[ok]).ravel()
