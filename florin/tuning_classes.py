"""Classifier bounds learned from annotated objects of named classes (``florin.tune(..., classes=...)``).

After :func:`florin.tune` has chosen the segmentation parameters, the objects
the tuned segmentation finds where annotated objects are ("matched" objects)
are measured as ``conncomp.regionprops`` measures them, and one
``florin.bounds_classifier`` per class is fitted to them, in the order of the
seed's weak classification: the classes with bounds first, the most general
class last and unbounded (it takes every other object).

An annotated object is a connected region of one value of the ``labels``
image; ``classes`` names the values. So a label image of object ids
(``{"cell": [1, 2, 3], "vasculature": [4]}``) and one painted with a value per
class (``{"cell": 1, "vasculature": 2}``) both work.

Each annotated object is measured on a crop around it, grown (with the halo
its NDNT and opening declare) until the matched object touches no crop face
inside the volume: its area and extents are then those of the whole-volume
run, without computing the whole volume.
"""

from __future__ import annotations

import itertools
import math
import numbers
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label as label_regions

from florin.errors import ParameterError
from florin.regions import extent_names
from florin.tuning_regions import _grow, _Region, declared_halo

__all__ = ["ClassBounds", "check_classes", "feature_names", "fit_classes", "learn_bounds", "measure", "parse_classes",
           "parse_classes_text"]

CLEAR_GAP = 1.5
"""A shape bound that no accuracy needs is added only across a clear gap: the nearest other object at least this
many times beyond the class's extreme (so the bound lies about 20% or more beyond it)."""

INTENSITY_FEATURES = ("intensity_mean",)
"""Intensity features a class may be bounded on, only where shape features cannot separate it (last resort)."""

_EXAMPLE = "e.g. {'cell': [1, 2, 3], 'vasculature': 4} (class name -> labels) or {1: 'cell', 4: 'vasculature'}"


# --------------------------------------------------------------------------------------------
# the classes mapping
# --------------------------------------------------------------------------------------------
def _is_label(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _label_list(name, value) -> list[int]:
    values = [value] if _is_label(value) else value
    try:
        values = list(values)
    except TypeError:
        values = None
    if values is None or not all(_is_label(v) for v in values):
        raise ParameterError(f"classes: class {name!r} needs integer labels, got {value!r}; {_EXAMPLE}")
    if not values:
        raise ParameterError(f"classes: class {name!r} has no annotated object (no labels); give it at least one label")
    bad = [int(v) for v in values if v < 1]
    if bad:
        raise ParameterError(f"classes: class {name!r} has label {bad[0]}; labels are >= 1 (0 is background)")
    return [int(v) for v in values]


def parse_classes(classes) -> dict[str, list[int]]:
    """``classes`` as ``{class name: [labels]}`` in the given order (a ParameterError names a bad entry).

    Parameters
    ----------
    classes : dict
        Class name -> label or labels (``{'cell': [1, 2], 'vessel': 3}``), or
        label -> class name (``{1: 'cell', 2: 'cell', 3: 'vessel'}``).

    Examples
    --------
    >>> parse_classes({1: "cell", 2: "cell", 5: "vessel"})
    {'cell': [1, 2], 'vessel': [5]}
    >>> parse_classes({"cell": 1, "vessel": [2, 3]})
    {'cell': [1], 'vessel': [2, 3]}
    >>> parse_classes({})
    Traceback (most recent call last):
    ...
    florin.errors.ParameterError: classes: empty mapping; e.g. {'cell': [1, 2, 3], 'vasculature': 4} (class name -> labels) or {1: 'cell', 4: 'vasculature'}
    """
    if not isinstance(classes, dict):
        raise ParameterError(f"classes: must be a dict, got {type(classes).__name__}; {_EXAMPLE}")
    if not classes:
        raise ParameterError(f"classes: empty mapping; {_EXAMPLE}")
    out: dict[str, list[int]] = {}
    if all(_is_label(k) for k in classes):  # label -> name
        for label, name in classes.items():
            if not isinstance(name, str) or not name:
                raise ParameterError(f"classes: label {label} needs a class name (a non-empty string), got {name!r}")
            out.setdefault(name, []).extend(_label_list(name, label))
    elif all(isinstance(k, str) for k in classes):  # name -> labels
        for name, labels in classes.items():
            if not name:
                raise ParameterError("classes: a class name must be a non-empty string")
            out[name] = _label_list(name, labels)
    else:
        raise ParameterError(f"classes: keys must be all class names or all labels, got {list(classes)!r}; {_EXAMPLE}")
    owner: dict[int, str] = {}
    for name, labels in out.items():
        for label in labels:
            if owner.setdefault(label, name) != name:
                raise ParameterError(f"classes: label {label} is given to both {owner[label]!r} and {name!r}")
    return {name: sorted(set(labels)) for name, labels in out.items()}


def parse_classes_text(text: str, *, option="--classes") -> dict[str, list[int]]:
    """The CLI's inline form: ``NAME=LABELS`` items separated by ``;``, LABELS as ``1,2,5-9``.

    Examples
    --------
    >>> parse_classes_text("cell=1-3,7;vasculature=4")
    {'cell': [1, 2, 3, 7], 'vasculature': [4]}
    """
    out: dict[str, list[int]] = {}
    items = [item.strip() for item in text.split(";") if item.strip()]
    if not items:
        raise ParameterError(f"{option}: empty mapping; give NAME=LABELS items, e.g. 'cell=1-12;vasculature=13,14'")
    for item in items:
        name, sep, spec = (part.strip() for part in item.partition("="))
        if not sep or not name:
            raise ParameterError(f"{option}: {item!r} is not NAME=LABELS, e.g. 'cell=1-12;vasculature=13,14'")
        labels: list[int] = []
        for part in filter(None, (p.strip() for p in spec.split(","))):
            lo, dash, hi = part.partition("-")
            try:
                first, last = int(lo), int(hi) if dash else int(lo)
            except ValueError:
                raise ParameterError(f"{option}: {part!r} in {item!r} is not a label or a range like 5-9") from None
            if last < first:
                raise ParameterError(f"{option}: the range {part!r} in {item!r} is empty")
            labels.extend(range(first, last + 1))
        if name in out:
            raise ParameterError(f"{option}: class {name!r} is given twice")
        out[name] = labels
    return out


def check_classes(classes, labels, connectivity=1):
    """Validate ``classes`` against the ``labels`` image and list the annotated objects.

    Returns
    -------
    dict
        ``{class name: [labels]}`` (:func:`parse_classes`).
    list of _Object
        Every connected region of one named label value, with its class.
    """
    classes = parse_classes(classes)
    named = np.array(sorted(v for values in classes.values() for v in values), np.int64)
    lab = np.asarray(labels)
    present = np.unique(lab)
    missing = np.setdiff1d(named, present)
    if missing.size:
        owner = next(n for n, v in classes.items() if int(missing[0]) in v)
        shown = ", ".join(str(v) for v in present[present > 0][:10].tolist()) + (" ..." if present.size > 11 else "")
        raise ParameterError(f"classes: label {int(missing[0])} (class {owner!r}) is not in labels; "
                             f"labels has {shown or 'no objects'}")
    kept = np.where(np.isin(lab, named), lab, 0)
    regions = label_regions(kept, background=0, connectivity=connectivity)
    class_of = {v: n for n, values in classes.items() for v in values}
    objects = []
    for i, box in enumerate(ndi.find_objects(regions), 1):
        if box is None:
            continue
        voxels = regions[box] == i
        value = int(kept[box][voxels].flat[0])
        objects.append(_Object(class_of[value], value, box, voxels))
    return classes, objects


@dataclass
class _Object:
    name: str  # class
    label: int  # value in the labels image
    box: tuple  # bounding box (slices)
    voxels: np.ndarray  # its voxels within the box
    features: dict | None = None  # of the matched predicted object (None: no match)
    heldout: bool = False


# --------------------------------------------------------------------------------------------
# the predicted object matched to each annotated object, measured on a growing crop
# --------------------------------------------------------------------------------------------
def feature_names(ndim) -> list[str]:
    """The properties a class may be bounded on: area, the extents (depth, height, width), the mean intensity.

    Examples
    --------
    >>> feature_names(2)
    ['area', 'height', 'width', 'intensity_mean']
    """
    return ["area", *extent_names(("z", "y", "x")[-ndim:]), *INTENSITY_FEATURES]  # tune takes 2-D and 3-D volumes


def measure(objects, image, params, connectivity, *, cache_bytes=256 << 20):
    """Set ``features`` of every object: those of its matched predicted object (None when there is none).

    The features are :func:`feature_names`, with the values
    ``conncomp.regionprops`` gives the object in a whole-volume run.

    The matched object is the predicted object (after opening and minimum size,
    as the tuned pipeline finds it) holding most of the annotated object's
    voxels, at least half of them. A crop computed for one annotated object
    serves every later one inside it (the cross-sections of one vessel on
    many painted slices are measured once); returns the voxels computed.
    """
    full = tuple(image.shape)
    halo = declared_halo(tuple(params["shape"]), int(params["opening"]), full)
    structure = ndi.generate_binary_structure(len(full), connectivity)
    names = feature_names(len(full))
    min_size = int(params.get("min_size", 0) or 0)
    done: list[_Crop] = []  # most recent first
    computed = 0
    for obj in objects:
        obj.features = None
        crop = next((c for c in done if c.holds(obj.box)), None)
        if crop is None:
            crop = _Crop(image, _grow(obj.box, tuple(max(4, (s.stop - s.start) // 2) for s in obj.box), full),
                         halo, params, structure, names)
            computed += crop.computed
            done.insert(0, crop)
        while True:
            best = crop.match(obj)
            if best == 0:
                break
            grown = crop.grown(best)
            if grown is None:  # the whole object is inside the crop
                if crop.sizes[best] >= min_size:  # else the tuned pipeline removes it
                    obj.features = crop.features(best)
                break
            crop = _Crop(image, grown, halo, params, structure, names)
            computed += crop.computed
            done.insert(0, crop)
        while len(done) > 1 and sum(c.comps.nbytes for c in done) > cache_bytes:
            done.pop()
    return computed


class _Crop:
    """The predicted objects on one crop of the volume (exact: NDNT and opening computed with their halo)."""

    def __init__(self, image, box, halo, params, structure, feature_names):
        full = tuple(image.shape)
        self.box, self.full = box, full
        outer = _grow(box, halo, full)
        mask = _Region.mask(np.asarray(image[outer]), params["shape"], params["threshold"], params["polarity"],
                            params["opening"])
        self.computed = mask.size
        inner = tuple(slice(b.start - o.start, b.stop - o.start) for b, o in zip(box, outer, strict=True))
        self.comps, n = ndi.label(mask[inner], structure)
        self.sizes = np.bincount(self.comps.ravel(), minlength=n + 1)
        self.sums = np.bincount(self.comps.ravel(), weights=np.asarray(image[box], np.float64).ravel(),
                                minlength=n + 1)
        self.boxes = ndi.find_objects(self.comps)
        self.feature_names = feature_names
        # the objects on each crop face inside the volume: cut, their full extent is unknown here
        self.cut_low, self.cut_high = [], []
        for axis, (b, size) in enumerate(zip(box, full, strict=True)):
            self.cut_low.append(np.unique(np.take(self.comps, 0, axis=axis)) if b.start > 0 else np.zeros(0, int))
            self.cut_high.append(np.unique(np.take(self.comps, -1, axis=axis)) if b.stop < size else np.zeros(0, int))

    def features(self, label) -> dict:
        """Area, extents and mean intensity of object ``label``, as ``conncomp.regionprops`` gives them."""
        extents = [float(s.stop - s.start) for s in self.boxes[label - 1]]
        area = float(self.sizes[label])
        return dict(zip(self.feature_names, [area, *extents, float(self.sums[label] / area)], strict=True))

    def holds(self, box) -> bool:
        return all(c.start <= b.start and b.stop <= c.stop for b, c in zip(box, self.box, strict=True))

    def match(self, obj) -> int:
        """The predicted object holding most (at least half) of ``obj``'s voxels; 0 for none."""
        local = tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(obj.box, self.box, strict=True))
        overlap = np.bincount(self.comps[local][obj.voxels], minlength=1)
        overlap[0] = 0
        best = int(overlap.argmax())
        return best if best and 2 * overlap[best] >= obj.voxels.sum() else 0

    def grown(self, label):
        """A larger box when object ``label`` is cut by a face of this crop (grown on those sides), else None."""
        grown, cut = [], False
        for b, low, high in zip(self.box, self.cut_low, self.cut_high, strict=True):
            lo, hi = label in low, label in high
            step = max(8, b.stop - b.start)
            grown.append(slice(b.start - step if lo else b.start, b.stop + step if hi else b.stop))
            cut = cut or lo or hi
        return _grow(tuple(grown), (0,) * len(self.full), self.full) if cut else None


# --------------------------------------------------------------------------------------------
# bounds
# --------------------------------------------------------------------------------------------
def _in_gap(a, b):
    """A round bound strictly between ``a`` (the class's extreme) and ``b`` (the nearest other object).

    The middle of the gap (geometric for positive values: sizes scale), rounded
    to the fewest significant digits that keep it strictly inside.
    """
    mid = math.sqrt(a * b) if a > 0 and b > 0 else (a + b) / 2
    lo, hi = min(a, b), max(a, b)
    for digits in range(1, 7):
        rounded = float(f"{mid:.{digits}g}")
        if lo < rounded < hi:
            return int(rounded) if rounded.is_integer() else rounded
    return mid


def _fit_box(X, positive, negative, shape_features, intensity_features):
    """Bounds ``{feature index: [lo, hi]}`` of one class: greedy on accuracy, then every shape side that separates.

    A bound is added where it excludes more other objects than objects of the
    class, best gain first (ties: shape before intensity, then the widest
    relative gap). Then each shape feature gets a bound on every side beyond
    which other objects lie, across a clear gap (:data:`CLEAR_GAP`), in the
    middle of that gap (as the seed's classifiers bound every size of a cell):
    an object unlike the annotated ones in any size then falls through to the
    general class.
    """
    n = X.shape[0]
    inbox = np.ones(n, bool)
    bounds: dict[int, list] = {}
    order = list(shape_features) + list(intensity_features)
    while True:
        best = None
        for rank, j in enumerate(order):
            group = 0 if j in shape_features else 1
            values = np.unique(X[inbox, j])
            for k in range(len(values) - 1):
                a, b = values[k], values[k + 1]
                for side in ("hi", "lo"):
                    removed = inbox & ((X[:, j] > a) if side == "hi" else (X[:, j] < b))
                    gain = int(np.count_nonzero(removed & negative)) - int(np.count_nonzero(removed & positive))
                    if gain <= 0:
                        continue
                    ratio = abs(math.log(b / a)) if a > 0 and b > 0 else (b - a)
                    key = (gain, -group, ratio, -rank)
                    if best is None or key > best[0]:
                        best = (key, j, side, a, b)
        if best is None:
            break
        _, j, side, a, b = best
        lo, hi = bounds.get(j, [None, None])
        if side == "hi":
            hi = _in_gap(a, b)
            inbox &= X[:, j] <= hi
        else:
            lo = _in_gap(b, a)
            inbox &= X[:, j] >= lo
        bounds[j] = [lo, hi]
    kept = inbox & positive
    if kept.any():
        for j in shape_features:
            lo, hi = bounds.get(j, [None, None])
            top, bottom = X[kept, j].max(), X[kept, j].min()
            above = X[negative & (X[:, j] > top), j]
            below = X[negative & (X[:, j] < bottom), j]
            if hi is None and above.size and top > 0 and above.min() >= CLEAR_GAP * top:
                hi = _in_gap(top, above.min())
            if lo is None and below.size and below.max() > 0 and bottom >= CLEAR_GAP * below.max():
                lo = _in_gap(bottom, below.max())
            if (lo, hi) != (None, None):
                bounds[j] = [lo, hi]
    return bounds


def _predict(X, classifiers):
    """Class index per row (first match; the last classifier has no bounds)."""
    out = np.full(X.shape[0], -1, np.int64)
    for c, bounds in classifiers:
        hit = out < 0
        for j, (lo, hi) in bounds.items():
            if lo is not None:
                hit &= X[:, j] >= lo
            if hi is not None:
                hit &= X[:, j] <= hi
        out[hit] = c
    return out


def learn_bounds(X, y, n_classes, shape_features, intensity_features, *, max_orders=720):
    """Ordered ``[(class index, {feature index: [lo, hi]}), ...]``, the last unbounded; and the training accuracy.

    Every order of the classes is tried (up to ``max_orders``), starting from
    the order of increasing median area (so the largest, most general class
    comes last, as in the seed pipeline); an order replaces it only when it
    classifies strictly more objects right.
    """
    present = [c for c in range(n_classes) if np.any(y == c)]
    if not present:
        return [], 0.0
    area = shape_features[0]
    by_size = sorted(present, key=lambda c: (float(np.median(X[y == c, area])), c))
    orders = itertools.islice(itertools.chain([tuple(by_size)], itertools.permutations(by_size)), max_orders)
    best = None
    for order in orders:
        classifiers = []
        claimed = np.zeros(len(y), bool)
        for c in order[:-1]:
            bounds = _fit_box(X, ~claimed & (y == c), ~claimed & (y != c), shape_features, intensity_features)
            classifiers.append((c, bounds))
            claimed |= _predict(X, classifiers) >= 0
        classifiers.append((order[-1], {}))
        correct = int(np.count_nonzero(_predict(X, classifiers) == y))
        if best is None or correct > best[0]:
            best = (correct, classifiers)
    return best[1], best[0] / len(y)


@dataclass
class ClassBounds:
    """One learned class: its bounds and how many annotated objects it got right.

    Attributes
    ----------
    name : str
        Class name.
    bounds : dict of str to (lo, hi) or None
        Inclusive bounds on region properties; None is an open end; empty for
        the last class (every other object); None when the tuned segmentation
        found none of the class's annotated objects (the class is left out of
        the pipeline).
    searched, heldout : tuple of int
        ``(right, annotated)`` objects of this class on the searched and the
        held-out regions.
    """

    name: str
    bounds: dict = field(default_factory=dict)
    searched: tuple = (0, 0)
    heldout: tuple = (0, 0)

    def describe(self) -> str:
        if self.bounds is None:
            return "(not learned: the tuned segmentation finds none of its annotated objects)"
        if not self.bounds:
            return "(no bounds: every other object)"
        parts = []
        for prop, (lo, hi) in self.bounds.items():
            if lo is None:
                parts.append(f"{prop} <= {hi:g}")
            elif hi is None:
                parts.append(f"{prop} >= {lo:g}")
            else:
                parts.append(f"{lo:g} <= {prop} <= {hi:g}")
        return ", ".join(parts)


def fit_classes(objects, classes, image, params, connectivity):
    """Learn the classifiers from ``objects`` (:func:`check_classes`) for the tuned ``params``.

    Returns
    -------
    list of ClassBounds
        In classification order (the last has no bounds).
    tuple
        ``(accuracy on searched objects, accuracy on held-out objects or None)``,
        per annotated object: right when its matched object gets its class (an
        object without a match is wrong).
    int
        Voxels computed.
    """
    names = feature_names(image.ndim)
    shape_names = names[:-len(INTENSITY_FEATURES)]
    computed = measure(objects, image, params, connectivity)
    class_names = list(classes)
    train = [o for o in objects if not o.heldout]
    for name in class_names:  # a class only held out: learn from its objects anyway
        if not any(o.name == name for o in train):
            for o in objects:
                if o.name == name:
                    o.heldout = False
            train = [o for o in objects if not o.heldout]
    matched = [o for o in train if o.features is not None]
    X = np.array([[o.features[f] for f in names] for o in matched], np.float64).reshape(len(matched), len(names))
    y = np.array([class_names.index(o.name) for o in matched], np.int64)
    shape_idx = list(range(len(shape_names)))
    intensity_idx = list(range(len(shape_names), len(names)))
    learned, _ = learn_bounds(X, y, len(class_names), shape_idx, intensity_idx)
    result = []
    for c, bounds in learned:
        pretty = {names[j]: (lo, hi) for j, (lo, hi) in sorted(bounds.items())}
        result.append(ClassBounds(class_names[c], pretty))
    order = [c for c, _ in learned]

    def right(objs):
        ok = np.zeros(len(objs), bool)
        have = [i for i, o in enumerate(objs) if o.features is not None]
        if have and learned:
            Xo = np.array([[objs[i].features[f] for f in names] for i in have], np.float64)
            pred = _predict(Xo, learned)
            for i, p in zip(have, pred, strict=True):
                ok[i] = p >= 0 and class_names[p] == objs[i].name
        return ok

    held = [o for o in objects if o.heldout]
    ok_train, ok_held = right(train), right(held)
    for cb in result:
        cb.searched = (int(sum(ok for ok, o in zip(ok_train, train, strict=True) if o.name == cb.name)),
                       sum(o.name == cb.name for o in train))
        cb.heldout = (int(sum(ok for ok, o in zip(ok_held, held, strict=True) if o.name == cb.name)),
                      sum(o.name == cb.name for o in held))
    for name in class_names:  # classes none of whose objects the segmentation found
        if all(class_names.index(name) != c for c in order):
            result.append(ClassBounds(name, None, (0, sum(o.name == name for o in train)),
                                      (0, sum(o.name == name for o in held))))
    accuracy = float(ok_train.mean()) if len(train) else None
    heldout = float(ok_held.mean()) if len(held) else None
    return result, (accuracy, heldout), computed
