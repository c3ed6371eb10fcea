"""Region objects and the collection :func:`florin.conncomp.regionprops` returns.

A :class:`Regions` collection keeps its properties as a table of numpy columns
(one row per object, computed in one vectorized pass) next to a reference to
the label volume. Pipelines map per-object steps over it like over tiles: the
items are light :class:`Region` objects (a dict of plain Python numbers, never
the volume), so any executor can ship them to threads, processes or ranks, and
the collection rebuilds itself from the results. ``florin.reconstruct``
turns a classified collection back into a volume.
"""

from __future__ import annotations

import difflib
import math

import numpy as np
import pandas as pd

from florin.collection import Collection
from florin.io.atomic import atomic_path
from florin.volume import get_spacing

__all__ = ["Region", "Regions", "EXTENT_NAMES"]

EXTENT_NAMES = ("depth", "height", "width")
"""Names of the bounding-box extents along the last three axes (2-D: height, width)."""

_COMPOSITES = ("bbox", "centroid", "physical_centroid", "extent", "slice")


def extent_names(dims) -> list[str]:
    """Extent property name per dim: depth/height/width for the last three, ``extent_<dim>`` before.

    Examples
    --------
    >>> extent_names(("y", "x"))
    ['height', 'width']
    >>> extent_names(("t", "z", "y", "x"))
    ['extent_t', 'depth', 'height', 'width']
    """
    ndim = len(dims)
    names = []
    for i, d in enumerate(dims):
        from_end = ndim - i
        names.append(EXTENT_NAMES[3 - from_end] if from_end <= 3 else f"extent_{d}")
    return names


class Region:
    """One labelled object: its properties as attributes (and items).

    Properties (3-D names; ``<d>`` is a dim name such as ``z``):

    - ``label``, ``area`` (voxels), ``depth``, ``height``, ``width``
      (bounding-box extents in voxels), ``physical_volume`` (area times the
      voxel volume);
    - ``bbox_min_<d>``, ``bbox_max_<d>`` (exclusive), ``centroid_<d>``,
      ``physical_centroid_<d>`` and the tuples ``bbox`` (mins then maxes, as
      scikit-image), ``centroid``, ``physical_centroid``, ``extent`` and
      ``slice`` (the bounding box as slices of the volume);
    - with an intensity image: ``intensity_mean``, ``intensity_min``,
      ``intensity_max``, ``intensity_sum``;
    - once classified: ``class_id`` (0 when no classifier matched) and
      ``class_name``.

    Regions hold plain Python numbers only, so they are cheap to pickle.

    Examples
    --------
    >>> r = Region({"label": 3, "area": 4, "bbox_min_y": 0, "bbox_min_x": 1,
    ...             "bbox_max_y": 2, "bbox_max_x": 3}, ("y", "x"))
    >>> r.label, r.bbox, r.slice
    (3, (0, 1, 2, 3), (slice(0, 2, None), slice(1, 3, None)))
    """

    __slots__ = ("_props", "_dims", "_classes")

    def __init__(self, props: dict, dims, classes=None):
        self._props = props
        self._dims = tuple(dims)
        self._classes = classes

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        props = self._props
        if name in props:
            return props[name]
        dims = self._dims
        if name == "bbox" and f"bbox_min_{dims[0]}" in props:
            return tuple(props[f"bbox_min_{d}"] for d in dims) + tuple(props[f"bbox_max_{d}"] for d in dims)
        if name in ("centroid", "physical_centroid") and f"{name}_{dims[0]}" in props:
            return tuple(props[f"{name}_{d}"] for d in dims)
        if name == "extent" and f"bbox_min_{dims[0]}" in props:
            return tuple(props[f"bbox_max_{d}"] - props[f"bbox_min_{d}"] for d in dims)
        if name == "slice" and f"bbox_min_{dims[0]}" in props:
            return tuple(slice(props[f"bbox_min_{d}"], props[f"bbox_max_{d}"]) for d in dims)
        close = difflib.get_close_matches(name, list(props), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise AttributeError(f"region has no property {name!r}{hint} (properties: {', '.join(self.keys())})")

    def __getitem__(self, key):
        try:
            return getattr(self, key)
        except AttributeError as exc:
            raise KeyError(str(exc)) from None

    def __contains__(self, key):
        return key in self._props

    def keys(self) -> list[str]:
        """Names of the scalar properties (the columns of the table)."""
        return list(self._props)

    def to_dict(self) -> dict:
        """The scalar properties as a plain dict."""
        return dict(self._props)

    @property
    def dims(self) -> tuple:
        return self._dims

    @property
    def classes(self):
        """``{class_id: class_name}`` of the classification this region went through, or None."""
        return None if self._classes is None else {i + 1: n for i, n in enumerate(self._classes)}

    def with_class(self, class_id: int, classes: tuple) -> Region:
        """A copy of this region classified as ``classes[class_id - 1]`` (0: no class)."""
        props = dict(self._props)
        props["class_id"] = int(class_id)
        props["class_name"] = classes[class_id - 1] if class_id else None
        return Region(props, self._dims, tuple(classes))

    def __reduce__(self):
        return (Region, (self._props, self._dims, self._classes))

    def __eq__(self, other):
        return isinstance(other, Region) and self._props == other._props and self._dims == other._dims

    __hash__ = None

    def __repr__(self):
        parts = [f"label={self._props.get('label')}", f"area={self._props.get('area')}"]
        if "class_name" in self._props:
            parts.append(f"class_name={self._props['class_name']!r}")
        return f"<Region {' '.join(parts)}>"


def _column(values):
    """A numpy column from a list of Python scalars (object dtype for strings and None)."""
    if any(v is None or isinstance(v, str) for v in values):
        col = np.empty(len(values), object)
        col[:] = values
        return col
    return np.asarray(values)


class Regions(Collection):
    """The regions of a label volume: a table of properties and the volume.

    Pipelines map per-item steps (``florin.classify``, or any function of a
    :class:`Region`) over the regions with their executor; a step returning
    None drops the region. Indexing and iteration give :class:`Region`
    objects; the table itself is vectorized.

    Parameters
    ----------
    table : dict of str to numpy.ndarray
        One column per scalar property, one row per region.
    labels : xarray.DataArray, optional
        The label volume the regions come from (for ``florin.reconstruct``).
    dims : tuple of str
        Dim names of the volume.
    spacing : tuple of float
        Voxel size per dim.
    classes : tuple of str, optional
        Class names of the classification, class id ``i + 1`` is ``classes[i]``.

    Attributes
    ----------
    table : dict of str to numpy.ndarray
    labels : xarray.DataArray or None
    """

    def __init__(self, table: dict, labels=None, *, dims, spacing, classes=None, units=None):
        self.table = dict(table)
        self.labels = labels
        self.dims = tuple(dims)
        self.spacing = tuple(spacing)
        self.units = units
        self._classes = None if classes is None else tuple(classes)
        lengths = {len(v) for v in self.table.values()}
        if len(lengths) > 1:
            raise ValueError(f"region table columns have different lengths {sorted(lengths)}")

    # -- construction --------------------------------------------------------------------
    @classmethod
    def from_stats(cls, stats: dict, labels) -> Regions:
        """Build the collection from :func:`~florin._kernels.regions.region_stats` output.

        Labels with area 0 (absent from the volume) are left out.
        """
        dims = tuple(labels.dims)
        spacing = get_spacing(labels)
        keep = np.asarray(stats["area"]) > 0
        bmin = stats["bbox_min"][keep]
        bmax = stats["bbox_max"][keep]
        centroid = stats["centroid"][keep]
        area = stats["area"][keep].astype(np.int64)
        extent = bmax - bmin
        table = {"label": stats["label"][keep].astype(np.int64), "area": area}
        for name, i in zip(extent_names(dims), range(len(dims)), strict=True):
            table[name] = extent[:, i].astype(np.int64)
        for i, d in enumerate(dims):
            table[f"bbox_min_{d}"] = bmin[:, i].astype(np.int64)
        for i, d in enumerate(dims):
            table[f"bbox_max_{d}"] = bmax[:, i].astype(np.int64)
        for i, d in enumerate(dims):
            table[f"centroid_{d}"] = centroid[:, i].astype(np.float64)
        table["physical_volume"] = area * float(math.prod(spacing))
        for i, d in enumerate(dims):
            table[f"physical_centroid_{d}"] = _coord0(labels, d) + centroid[:, i] * spacing[i]
        for key in ("intensity_mean", "intensity_min", "intensity_max", "intensity_sum"):
            if key in stats:
                table[key] = np.asarray(stats[key], np.float64)[keep]
        return cls(table, labels, dims=dims, spacing=spacing, units=labels.attrs.get("units"))

    def _like(self, table, classes=None) -> Regions:
        return Regions(table, self.labels, dims=self.dims, spacing=self.spacing, classes=classes, units=self.units)

    def from_regions(self, regions) -> Regions:
        """A collection like this one made of ``regions`` (e.g. after a mapped step)."""
        regions = list(regions)
        if not regions:
            table = {k: v[:0] for k, v in self.table.items()}
            return self._like(table, self._classes)
        keys = list(regions[0]._props)
        for r in regions[1:]:
            if len(r._props) != len(keys):
                for k in r._props:
                    if k not in keys:
                        keys.append(k)
        table = {}
        for k in keys:
            table[k] = _column([r._props.get(k, 0 if k == "class_id" else None) for r in regions])
        classes = next((r._classes for r in regions if r._classes is not None), self._classes)
        return self._like(table, classes)

    # -- the Collection protocol ---------------------------------------------------------
    def __len__(self):
        return len(self.table["label"]) if "label" in self.table else 0

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"region index {i} out of range for {n} regions")
        props = {}
        for k, col in self.table.items():
            v = col[i]
            props[k] = v.item() if isinstance(v, np.generic) else v
        return Region(props, self.dims, self._classes)

    def __iter__(self):
        return iter(self.items())

    def items(self) -> list[Region]:
        """The regions as light, picklable :class:`Region` objects."""
        keys = list(self.table)
        columns = [self.table[k].tolist() for k in keys]
        dims, classes = self.dims, self._classes
        return [Region(dict(zip(keys, row, strict=True)), dims, classes) for row in zip(*columns, strict=True)]

    def item_label(self, item) -> str:
        return f"region {getattr(item, 'label', '?')}"

    def rebuild(self, results):
        """Regions from mapped results; None results drop their region.

        Results that are not regions (a step mapping regions to numbers) are
        returned as a list.
        """
        results = [r for r in results if r is not None]
        if all(isinstance(r, Region) for r in results):
            return self.from_regions(results)
        return results

    # -- views -----------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.dims)

    @property
    def classes(self) -> dict | None:
        """``{class_id: class_name}`` once classified (ids from 1), else None."""
        return None if self._classes is None else {i + 1: n for i, n in enumerate(self._classes)}

    def property_names(self) -> list[str]:
        """Names of the numeric scalar properties (what classifiers can bound)."""
        return [k for k, v in self.table.items() if k not in ("class_id", "class_name") and v.dtype.kind in "biuf"]

    def to_dataframe(self):
        """The table as a :class:`pandas.DataFrame`, one row per region.

        Examples
        --------
        >>> import numpy as np
        >>> from florin.conncomp import regionprops
        >>> df = regionprops(np.array([[1, 0, 2]])).to_dataframe()
        >>> list(df["label"]), list(df["centroid_x"])
        ([1, 2], [0.0, 2.0])
        """
        return pd.DataFrame({k: v.copy() for k, v in self.table.items()})

    def to_csv(self, path, **kwargs) -> None:
        """Write the table to a CSV file atomically (``index=False`` by default).

        ``kwargs`` go to :meth:`pandas.DataFrame.to_csv`.
        """
        kwargs.setdefault("index", False)
        with atomic_path(path) as tmp:
            self.to_dataframe().to_csv(tmp, **kwargs)

    def __repr__(self):
        shape = tuple(self.labels.shape) if self.labels is not None else None
        cls = f", classes {self.classes}" if self._classes is not None else ""
        return f"<Regions: {len(self)} regions of a {shape} label volume{cls}>"


def _coord0(vol, dim) -> float:
    """Physical coordinate of the first voxel along ``dim`` (0 without coordinates)."""
    if dim in vol.coords:
        values = vol.coords[dim].values
        if values.size and np.issubdtype(values.dtype, np.number):
            return float(values[0])
    return 0.0
