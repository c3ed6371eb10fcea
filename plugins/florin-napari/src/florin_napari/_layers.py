"""florin volumes <-> napari layer data, without Qt.

A florin volume (an ``xarray.DataArray``, possibly lazy) becomes a napari
layer-data tuple ``(data, kwargs, layer_type)``:

* ``data`` is a dask array over the volume (one chunk per first-axis plane by
  default), so napari reads only the planes it shows;
* ``kwargs['scale']`` is the voxel size (:func:`florin.get_spacing`),
  ``kwargs['axis_labels']`` the dims with the unit of each spatial axis
  (``'z (µm)'``) and ``kwargs['units']`` the volume's units (``attrs['units']``)
  on every spatial axis;
* ``layer_type`` is ``'labels'`` for label volumes (see :func:`is_labels`),
  ``'image'`` otherwise.
"""

from __future__ import annotations

import re
import weakref

import numpy as np

import florin

__all__ = [
    "LABELS_KIND", "axis_label", "is_labels", "layer_tuple", "layer_units", "lazy_array", "placement",
    "source_of", "split_axis_label", "to_volume",
]

#: ``attrs['florin_kind']`` of a volume the plugin wrote from a Labels layer.
LABELS_KIND = "labels"
_LABEL_NAMES = re.compile(r"(label|class|object|segment|mask|instance)", re.IGNORECASE)
_PLANE_BYTES = 64 * 2**20
# dask name of a lazy_array -> its _Planes: the preview reads its z-context from the volume in one read, not
# plane by plane through dask's scheduler (65 planes: 0.1 s through dask, 0.015 s directly).
_SOURCES: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def is_labels(volume, name: str = "") -> bool:
    """Whether ``volume`` is a label volume (opened as a napari Labels layer).

    True for a boolean volume, a class volume (``attrs['classes']``, as
    :func:`florin.reconstruct` writes), a volume written from a Labels layer
    (``attrs['florin_kind'] == 'labels'``), an OME-Zarr ``image-label``, and an
    integer volume whose file or dataset name says labels (``labels``,
    ``classes``, ``objects``, ``segmented``, ``mask``...).

    Examples
    --------
    >>> import numpy as np, florin
    >>> is_labels(florin.as_volume(np.zeros((2, 2), bool)))
    True
    >>> is_labels(florin.as_volume(np.zeros((2, 2), np.uint16)), "cells_labels.tif")
    True
    >>> is_labels(florin.as_volume(np.zeros((2, 2), np.uint16)), "volume.tif")
    False
    """
    attrs = getattr(volume, "attrs", {}) or {}
    dtype = np.dtype(volume.dtype)
    if dtype.kind == "b":
        return True
    if dtype.kind not in "iu":
        return False
    if attrs.get("florin_kind") == LABELS_KIND or attrs.get("classes") or attrs.get("image-label"):
        return True
    return bool(_LABEL_NAMES.search(name or ""))


def lazy_array(volume):
    """A dask array reading ``volume`` on demand (first-axis planes as chunks).

    ``volume`` may be a lazy florin volume: no voxel is read until napari (or
    anyone) computes a chunk.
    """
    import dask.array as da

    if isinstance(getattr(volume, "data", None), da.Array):
        return volume.data
    shape = tuple(volume.shape)
    if not shape:
        return da.from_array(np.asarray(volume))
    itemsize = np.dtype(volume.dtype).itemsize
    plane = int(np.prod(shape[1:], dtype=np.int64)) * itemsize if len(shape) > 1 else itemsize
    first = max(1, min(shape[0], _PLANE_BYTES // max(1, plane))) if len(shape) > 1 else shape[0]
    chunks = (1 if len(shape) > 2 else first, *shape[1:])
    planes = _Planes(volume)
    array = da.from_array(planes, chunks=chunks, asarray=True, fancy=False, name=False)
    _SOURCES[array.name] = planes
    return array


def source_of(array):
    """The florin volume behind a :func:`lazy_array` (read slabs of it in one read), else ``array`` itself."""
    planes = _SOURCES.get(getattr(array, "name", None)) if _is_dask(array) else None
    if planes is None or tuple(planes.shape) != tuple(array.shape):
        return array
    return planes.volume


class _Planes:
    """``volume[index]`` as a numpy array (what dask's ``from_array`` reads)."""

    def __init__(self, volume):
        self.volume = volume
        self.shape = tuple(volume.shape)
        self.dtype = np.dtype(volume.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, index):
        return np.asarray(self.volume[index])


_DISPLAY_UNITS = {"um": "µm"}
_LABEL_UNIT = re.compile(r"^(?P<name>.*\S)\s*\((?P<unit>[^()]+)\)$")


def axis_label(dim: str, unit=None) -> str:
    """The axis label of ``dim``: with its unit in brackets when it has one (``'z (µm)'``).

    Examples
    --------
    >>> axis_label("z", "um"), axis_label("t")
    ('z (µm)', 't')
    """
    if not unit or unit == "pixel":
        return str(dim)
    return f"{dim} ({_DISPLAY_UNITS.get(str(unit), str(unit))})"


def split_axis_label(label: str) -> tuple[str, str | None]:
    """The dim and unit (florin's spelling) of an axis label: the inverse of :func:`axis_label`.

    Examples
    --------
    >>> split_axis_label("z (µm)"), split_axis_label("x")
    (('z', 'um'), ('x', None))
    """
    match = _LABEL_UNIT.match(str(label))
    if match is None:
        return str(label), None
    return match["name"], _short_unit(match["unit"].strip())


def _units(volume, ndim):
    units = (getattr(volume, "attrs", {}) or {}).get("units")
    if not units:
        return None
    dims = tuple(volume.dims)
    spatial = [d in ("z", "y", "x") for d in dims]
    if not any(spatial):
        return None
    out = tuple(str(units) if s else "pixel" for s in spatial)
    return out if len(out) == ndim else None


def layer_tuple(volume, *, name=None, layer_type=None, multiscale=None, metadata=None):
    """The napari layer-data tuple of a florin volume (or of a list of pyramid levels).

    Parameters
    ----------
    volume : xarray.DataArray or list of xarray.DataArray
        A volume, or the levels of a pyramid (finest first).
    name : str, optional
        Layer name (default: the volume's name).
    layer_type : {'image', 'labels'}, optional
        Default: :func:`is_labels` on the volume and ``name``.
    multiscale, metadata : optional
        Passed to napari; ``metadata`` gets the volume's attrs under ``'florin'``.

    Examples
    --------
    >>> import numpy as np, florin
    >>> vol = florin.as_volume(np.zeros((3, 4, 5), np.uint8), spacing=(2.0, 0.5, 0.5), units="um")
    >>> data, kwargs, kind = layer_tuple(vol, name="v")
    >>> kind, kwargs["scale"], kwargs["axis_labels"], kwargs["units"]
    ('image', (2.0, 0.5, 0.5), ('z (µm)', 'y (µm)', 'x (µm)'), ('um', 'um', 'um'))
    """
    levels = list(volume) if isinstance(volume, list | tuple) else [volume]
    base = levels[0]
    name = name or (base.name if isinstance(base.name, str) else None)
    if layer_type is None:
        layer_type = "labels" if is_labels(base, name or "") else "image"
    arrays = [lazy_array(v) for v in levels]
    if layer_type == "labels":
        arrays = [a.astype(np.uint8) if a.dtype == bool else a for a in arrays]
    kwargs = {**placement(base), "metadata": {"florin": _plain_attrs(base.attrs), **(metadata or {})}}
    if name:
        kwargs["name"] = name
    if len(arrays) > 1 or multiscale:
        kwargs["multiscale"] = True
        return arrays, kwargs, layer_type
    return arrays[0], kwargs, layer_type


def placement(volume) -> dict:
    """Where a layer of ``volume`` lies: its ``scale`` (voxel size), ``axis_labels`` with units, ``units``, ``translate``.

    ``units`` and ``translate`` are left out when the volume has no units or
    lies at the origin.

    Examples
    --------
    >>> import numpy as np, florin
    >>> placement(florin.as_volume(np.zeros((3, 4, 5)), spacing=(2.0, 0.5, 0.5), units="um"))["axis_labels"]
    ('z (µm)', 'y (µm)', 'x (µm)')
    """
    units = _units(volume, volume.ndim)
    kwargs = {
        "scale": tuple(float(s) for s in florin.get_spacing(volume)),
        "axis_labels": tuple(axis_label(d, u) for d, u in zip(volume.dims, units or (None,) * volume.ndim,
                                                               strict=True)),
    }
    if units is not None:
        kwargs["units"] = units
    origin = _origin(volume)
    if origin is not None:
        kwargs["translate"] = origin
    return kwargs


def _origin(volume):
    out = []
    for dim in volume.dims:
        coord = volume.coords.get(dim)
        if coord is None or coord.size == 0 or coord.dtype.kind not in "iuf":
            out.append(0.0)
        else:
            out.append(float(coord.values[0]))
    return tuple(out) if any(out) else None


def _plain_attrs(attrs):
    out = {}
    for key, value in dict(attrs).items():
        if isinstance(value, str | int | float | bool | list | tuple | dict) or value is None:
            out[str(key)] = value
    return out


def to_volume(data, meta=None, *, labels=False):
    """A florin volume from napari layer data and its metadata (what writers get).

    The layer's ``scale`` becomes the voxel size, its axis labels the dims (when
    they are florin dims; a unit in brackets, ``'z (µm)'``, is not part of the
    dim), its units ``attrs['units']`` (or, when the layer has none, the one
    unit its axis labels name); a Labels layer is marked
    ``attrs['florin_kind'] = 'labels'`` so it opens as Labels again.
    """
    meta = dict(meta or {})
    if isinstance(data, list | tuple):  # a multiscale layer: write its finest level
        data = data[0]
    ndim = len(data.shape)
    dims = None
    labels_meta = meta.get("axis_labels")
    if labels_meta is not None and len(labels_meta) == ndim:
        split = [split_axis_label(a) for a in labels_meta]
        names = tuple(name for name, _ in split)
        if all(n and not n.lstrip("-").isdigit() for n in names) and len(set(names)) == ndim:
            dims = names
    scale = meta.get("scale")
    spacing = tuple(float(s) for s in scale) if scale is not None and len(scale) == ndim else None
    attrs = dict((meta.get("metadata") or {}).get("florin") or {})
    for key in ("spacing", "units", "source", "florin_kind"):
        attrs.pop(key, None)
    units = layer_units(meta.get("units"), meta.get("axis_labels"))
    if labels:
        attrs["florin_kind"] = LABELS_KIND
    array = np.asarray(data) if not _is_dask(data) else data
    if labels and np.dtype(array.dtype).kind not in "iub":
        array = array.astype(np.int32)
    return florin.as_volume(array, dims=dims, spacing=spacing, units=units, attrs=attrs,
                            name=meta.get("name") if isinstance(meta.get("name"), str) else None)


def layer_units(units, axis_labels=None):
    """florin's ``units`` of a layer: the one unit of its spatial axes, from ``layer.units`` or else its axis labels.

    Examples
    --------
    >>> layer_units(("pixel", "micrometer", "micrometer")), layer_units(None, ("z (µm)", "y (µm)", "x (µm)"))
    ('um', 'um')
    """
    if units is not None:
        spatial = {str(u) for u in np.atleast_1d(units) if str(u) not in ("pixel", "pixels", "None", "")}
        if len(spatial) == 1:
            return _short_unit(spatial.pop())
    # napari without layer units, or a layer made without them: the unit its axis labels name
    named = {unit for _, unit in map(split_axis_label, axis_labels or ()) if unit not in (None, "pixel")}
    return named.pop() if len(named) == 1 else None


def _is_dask(data) -> bool:
    return type(data).__module__.startswith("dask")


_PINT_SHORT = {"micrometer": "um", "nanometer": "nm", "millimeter": "mm", "centimeter": "cm", "meter": "m",
               "angstrom": "A", "picometer": "pm", "µm": "um", "\u03bcm": "um", "micron": "um", "pixel": "pixel"}


def _short_unit(unit: str) -> str:
    return _PINT_SHORT.get(unit, unit)
