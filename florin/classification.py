"""Weak classification of segmented objects by bounds on their properties.

``florin.bounds_classifier(name, **bounds)`` describes a class by inclusive
bounds on region properties (from :func:`florin.conncomp.regionprops`);
``florin.classify(*classifiers)`` gives every region the class of the first
classifier that matches it. ``classify`` is a per-item step that declares
``whole_collection``: applied to a whole :class:`~florin.regions.Regions`
collection it classifies all regions at once, vectorized, with the result
mapping it region by region gives, so a pipeline calls it once on the table
whatever its executor (``florin.Multiprocess(florin.classify(...))`` ships no
region to a worker); on one :class:`~florin.regions.Region` it classifies that
region.
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
import warnings

import numpy as np

from florin._checked import checked
from florin.errors import ClassificationError, ClassificationWarning
from florin.regions import Region, Regions

__all__ = ["BoundsClassifier", "bounds_classifier", "classify"]

SCALAR_PROPERTIES = (
    "label",
    "area",
    "depth",
    "height",
    "width",
    "physical_volume",
    "intensity_mean",
    "intensity_min",
    "intensity_max",
    "intensity_sum",
)
"""Scalar region properties a classifier can bound (intensity ones need an intensity image)."""

PER_DIM_PROPERTIES = ("bbox_min", "bbox_max", "centroid", "physical_centroid", "extent")
"""Per-dim properties, named ``<prefix>_<dim>`` (``centroid_z``, ``bbox_min_x``...)."""

_PER_DIM = re.compile(r"^(" + "|".join(sorted(PER_DIM_PROPERTIES, key=len, reverse=True)) + r")_\w+$")


def _valid_text():
    per_dim = ", ".join(f"{p}_<dim>" for p in PER_DIM_PROPERTIES)
    return f"{', '.join(SCALAR_PROPERTIES)}, {per_dim} (<dim> is a dim name: z, y, x)"


def _suggestion(prop, choices) -> str:
    """'; did you mean ...?' for the closest choice (by spelling, else by containing ``prop``)."""
    close = difflib.get_close_matches(prop, list(choices), n=1)
    if not close:
        close = [c for c in choices if prop and prop in c][:1]
    return f"; did you mean {close[0]!r}?" if close else ""


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)


class BoundsClassifier:
    """A class defined by inclusive bounds on region properties.

    Use :func:`bounds_classifier` to make one. Calling it on a
    :class:`~florin.regions.Region` tells whether the region matches;
    :meth:`matches` does the same for a whole table at once.

    Attributes
    ----------
    name : str
        Class name.
    bounds : dict of str to (lo, hi)
        Inclusive bounds; None is an open end.
    """

    def __init__(self, name, bounds):
        self.name = name
        self.bounds = bounds

    def _missing(self, names, where):
        for prop in self.bounds:
            if prop not in names:
                hint = _suggestion(prop, names)
                raise ClassificationError(
                    f"bounds_classifier({self.name!r}): {where} have no property {prop!r}{hint} "
                    f"(valid properties: {', '.join(names)})"
                )

    def __call__(self, region) -> bool:
        props = region._props if isinstance(region, Region) else region
        for prop, (lo, hi) in self.bounds.items():
            try:
                value = props[prop]
            except KeyError:
                names = region.keys() if isinstance(region, Region) else list(props)
                self._missing([n for n in names if n not in ("class_id", "class_name")], "regions")
                raise
            if value is None or (lo is not None and not value >= lo) or (hi is not None and not value <= hi):
                return False
        return True

    def matches(self, table: dict) -> np.ndarray:
        """Boolean array: which rows of a region table (``Regions.table``) match."""
        n = len(next(iter(table.values()))) if table else 0
        names = [k for k, v in table.items() if k not in ("class_id", "class_name") and v.dtype.kind in "biuf"]
        self._missing(names, "regions")
        out = np.ones(n, bool)
        for prop, (lo, hi) in self.bounds.items():
            col = table[prop]
            if lo is not None:
                out &= col >= lo
            if hi is not None:
                out &= col <= hi
        return out

    def __eq__(self, other):
        return isinstance(other, BoundsClassifier) and (self.name, self.bounds) == (other.name, other.bounds)

    __hash__ = None

    def __repr__(self):
        parts = [repr(self.name)] + [f"{k}={_bound_repr(v)}" for k, v in self.bounds.items()]
        return f"bounds_classifier({', '.join(parts)})"


def _bound_repr(bound):
    lo, hi = bound
    return repr(hi) if lo is None and hi is not None else repr((lo, hi))


def _check_property(name, prop):
    if prop in SCALAR_PROPERTIES or _PER_DIM.match(prop):
        return
    choices = list(SCALAR_PROPERTIES) + [f"{p}_z" for p in PER_DIM_PROPERTIES]
    hint = _suggestion(prop, choices)
    raise ClassificationError(
        f"bounds_classifier({name!r}): unknown property {prop!r}{hint} (valid properties: {_valid_text()})"
    )


def _normalize_bound(name, prop, bound):
    if _is_number(bound):
        return (None, bound)  # a scalar is an upper bound
    if isinstance(bound, tuple | list) and len(bound) == 2:
        lo, hi = bound
        for v in (lo, hi):
            if v is not None and not _is_number(v):
                break
        else:
            if lo is not None and hi is not None and lo > hi:
                raise ClassificationError(
                    f"bounds_classifier({name!r}): {prop}=({lo!r}, {hi!r}) is empty: the lower bound exceeds the upper"
                )
            return (lo, hi)
    raise ClassificationError(
        f"bounds_classifier({name!r}): {prop}={bound!r} must be a number (an upper bound) or a "
        "(lo, hi) pair of numbers, inclusive, with None for an open end"
    )


def bounds_classifier(name, **bounds) -> BoundsClassifier:
    """A classifier that matches regions whose properties lie within bounds.

    Parameters
    ----------
    name : str
        Class name given to matching regions.
    **bounds
        ``property=(lo, hi)``: ``lo <= value <= hi`` (inclusive; None leaves an
        end open); ``property=hi``: a scalar is an upper bound,
        ``value <= hi``. Properties are those of
        :func:`florin.conncomp.regionprops`: ``area`` (voxels), ``depth``,
        ``height``, ``width`` (bounding-box extents in voxels),
        ``physical_volume``, ``intensity_mean``/``_min``/``_max``/``_sum``,
        ``label`` and per-dim ``centroid_<dim>``, ``physical_centroid_<dim>``,
        ``bbox_min_<dim>``, ``bbox_max_<dim>``, ``extent_<dim>``. No bounds
        matches every region: the default class, put it last.

    Returns
    -------
    BoundsClassifier

    Raises
    ------
    florin.errors.ClassificationError
        For an unknown property name (listing the valid ones) or invalid bounds,
        when the classifier is made (so when the pipeline is built).

    Examples
    --------
    >>> from florin.regions import Region
    >>> cell = bounds_classifier("cell", area=(100, 300), depth=(10, 25))
    >>> cell(Region({"area": 150, "depth": 12}, ("z", "y", "x")))
    True
    >>> bounds_classifier("small", area=50)(Region({"area": 60}, ("y", "x")))
    False
    >>> bounds_classifier("cell", volume=(1, 2))
    Traceback (most recent call last):
    ...
    florin.errors.ClassificationError: bounds_classifier('cell'): unknown property 'volume'; did you mean 'physical_volume'? (valid properties: ...)
    """
    if not isinstance(name, str) or not name:
        raise ClassificationError(f"bounds_classifier(): the class name must be a non-empty string, got {name!r}")
    normalized = {}
    for prop, bound in bounds.items():
        _check_property(name, prop)
        normalized[prop] = _normalize_bound(name, prop, bound)
    return BoundsClassifier(name, normalized)


def _class_names(classifiers) -> tuple:
    names = []
    for c in classifiers:
        if c.name not in names:
            names.append(c.name)
    return tuple(names)


def _classify_params(params):
    classifiers = _flatten(params["classifiers"])
    if not classifiers:
        raise ClassificationError(
            "classify() needs at least one classifier, e.g. florin.bounds_classifier('cell', area=(100, 300))"
        )
    for c in classifiers:
        if not (callable(c) and isinstance(getattr(c, "name", None), str)):
            raise ClassificationError(
                f"classify() takes classifiers made by florin.bounds_classifier(name, **bounds), got {c!r}"
            )


def _classify_spec(op) -> dict:
    """``classify(...)`` as a pipeline-file table: ``{'op': 'classify', 'classes': [{'name': ..., bounds...}]}``."""
    classes = []
    for c in _flatten(op.args):
        if not isinstance(c, BoundsClassifier):
            raise ClassificationError(
                f"classify(): {c!r} cannot be written to a pipeline file (only bounds classifiers)"
            )
        entry = {"name": c.name}
        for prop, (lo, hi) in c.bounds.items():
            # TOML has no null: an open upper end is inf, an open lower end a scalar (upper bound)
            entry[prop] = hi if lo is None else [lo, math.inf if hi is None else hi]
        classes.append(entry)
    return {"op": "classify", "classes": classes}


def _classify_from_spec(entry) -> object:
    """Build ``classify(...)`` from a pipeline-file table made by :func:`_classify_spec`.

    Examples
    --------
    >>> step = classify.from_spec({"classes": [{"name": "cell", "area": [100, 300]}, {"name": "other"}]})
    >>> step.to_spec()
    {'op': 'classify', 'classes': [{'name': 'cell', 'area': [100, 300]}, {'name': 'other'}]}
    """
    entry = dict(entry)
    classes = entry.pop("classes", None)
    if entry:
        raise ClassificationError(f"classify: unknown keys {sorted(entry)} (a classify step has only `classes`)")
    if not isinstance(classes, list) or not all(isinstance(c, dict) and "name" in c for c in classes):
        raise ClassificationError(
            "classify: `classes` must be a list of tables with a `name` and bounds, "
            "e.g. classes = [{name = 'cell', area = [100, 300]}, {name = 'vasculature'}]"
        )
    classifiers = []
    for c in classes:
        c = dict(c)
        name = c.pop("name")
        classifiers.append(bounds_classifier(name, **{k: tuple(v) if isinstance(v, list) else v for k, v in c.items()}))
    return classify(*classifiers)


def _warn_after_map(op, regions) -> None:
    """After a pipeline mapped ``classify`` over the regions: the same warning as the vectorized path."""
    if isinstance(regions, Regions):
        warn_if_unmatched(regions, op.args)


@checked(
    check=_classify_params, data_types=(Region, Regions), spec=_classify_spec, from_spec=_classify_from_spec,
    after_map=_warn_after_map, whole_collection=True,
)
def classify(regions, *classifiers):
    """Give each region the class of the first classifier that matches it.

    Parameters
    ----------
    regions : Region or Regions
        One region (when a pipeline maps this step over a collection) or a
        whole collection (classified at once, vectorized; same result).
    *classifiers : BoundsClassifier
        Tried in order; the first match wins. Class ids are ``1, 2, ...`` in
        the order the class names first appear (classifiers sharing a name
        share the id). A region no classifier matches gets class id 0 and
        class name None (it is background in ``florin.reconstruct``).

    Returns
    -------
    Region or Regions
        With ``class_id`` and ``class_name`` set.

    Examples
    --------
    >>> import numpy as np
    >>> import florin
    >>> from florin.conncomp import regionprops
    >>> labels = np.zeros((6, 6), int); labels[0, :2] = 1; labels[2:6, 2:6] = 2
    >>> step = florin.classify(florin.bounds_classifier("small", area=4),
    ...                        florin.bounds_classifier("big"))
    >>> [r.class_name for r in step(regionprops(labels))]
    ['small', 'big']
    """
    classifiers = _flatten(classifiers)
    names = _class_names(classifiers)
    if isinstance(regions, Region):
        for c in classifiers:
            if c(regions):
                return regions.with_class(names.index(c.name) + 1, names)
        return regions.with_class(0, names)
    if isinstance(regions, Regions):
        n = len(regions)
        ids = np.zeros(n, np.int64)
        for c in classifiers:
            todo = ids == 0
            if not todo.any():
                break
            if hasattr(c, "matches"):
                hit = c.matches(regions.table)
            else:
                hit = np.array([bool(c(r)) for r in regions.items()], bool)
            ids[todo & hit] = names.index(c.name) + 1
        table = dict(regions.table)
        table["class_id"] = ids
        lookup = np.empty(len(names) + 1, object)
        lookup[:] = (None, *names)
        table["class_name"] = lookup[ids]
        result = regions._like(table, names)
        warn_if_unmatched(result, classifiers)
        return result
    raise ClassificationError(
        f"classify() works on regions (from florin.conncomp.regionprops()), got {type(regions).__name__}; "
        "put conncomp.regionprops() before it"
    )


def _number_text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def warn_if_unmatched(regions, classifiers) -> None:
    """Warn when classified ``regions`` has objects but none matched any classifier with bounds.

    The warning (a :class:`~florin.errors.ClassificationWarning`) gives the count
    per class and the range of every bounded property over the objects, so the
    bounds can be set from what the volume holds.
    """
    classifiers = _flatten(classifiers)
    bounded = [c for c in classifiers if getattr(c, "bounds", None)]
    n = len(regions)
    if not bounded or not n or "class_id" not in regions.table:
        return
    names = _class_names(classifiers)
    ids = np.asarray(regions.table["class_id"], np.int64)
    counts = np.bincount(ids, minlength=len(names) + 1)
    if any(counts[names.index(c.name) + 1] for c in bounded):
        return
    bounds_of = {c.name: c.bounds for c in bounded}

    def shown(name):
        bounds = bounds_of.get(name)
        if not bounds:
            return name
        text = ", ".join(f"{k} {'' if lo is None else _number_text(lo)}..{'' if hi is None else _number_text(hi)}"
                         for k, (lo, hi) in bounds.items())
        return f"{name} ({text})"

    per_class = ", ".join(f"{shown(name)}: {int(counts[i + 1])}" for i, name in enumerate(names))
    if counts[0]:
        per_class += f", no class: {int(counts[0])}"
    props = []
    for c in bounded:
        props += [p for p in c.bounds if p not in props]
    seen = []
    for prop in props:
        col = regions.table.get(prop)
        if col is not None and np.asarray(col).dtype.kind in "biuf":
            col = np.asarray(col)
            seen.append(f"{prop} {_number_text(col.min().item())}..{_number_text(col.max().item())}")

    warnings.warn(
        f"classify(): none of the {n} objects matched a class with bounds; objects per class: {per_class}; "
        f"properties seen: {', '.join(seen) or 'none'}. Set the bounds from these ranges.",
        ClassificationWarning,
        stacklevel=3,
    )


def _flatten(classifiers):
    if len(classifiers) == 1 and isinstance(classifiers[0], list | tuple):
        return tuple(classifiers[0])
    return tuple(classifiers)
