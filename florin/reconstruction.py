"""Reconstruct classified regions as a volume of per-voxel class ids.

``florin.reconstruct()`` turns a classified :class:`~florin.regions.Regions`
collection into a class-label volume (``uint8``, or ``uint16`` beyond 255
classes; 0 is background) whose ``attrs['classes']`` maps class ids to names
as a JSON-friendly ``{'1': 'cell', ...}``, so that ``florin.save`` to TIFF keeps
the table. :func:`render` colours such a volume for previews.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from florin import blockwise
from florin._checked import checked
from florin.blockwise.reconstruct import _class_lut, _lookup
from florin.errors import ParameterError
from florin.planner import source
from florin.regions import Regions
from florin.volume import as_volume

__all__ = ["PALETTE", "class_table", "reconstruct", "render"]

PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
)
"""Default colours of class ids 1, 2, ... (cycled), RGB."""

_SLAB_VOXELS = 1 << 26


def class_table(volume) -> dict[int, str]:
    """The ``{class_id: name}`` table of a class-label volume (from its attrs).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> class_table(xr.DataArray(np.zeros(2, np.uint8), attrs={"classes": {"1": "cell"}}))
    {1: 'cell'}
    """
    table = getattr(volume, "attrs", {}).get("classes") or {}
    return {int(k): str(v) for k, v in table.items()}


def _reconstruct_params(params):
    dtype = params["dtype"]
    if dtype is None:
        return
    try:
        kind = np.dtype(dtype).kind
    except TypeError:
        kind = None
    if kind != "u":
        raise ParameterError(f"reconstruct(): dtype must be an unsigned integer dtype such as 'uint16', got {dtype!r}")


def _reconstruct_spec(op) -> dict:
    spec = {"op": "reconstruct"}
    dtype = op.params()["dtype"]
    if dtype is not None:
        spec["dtype"] = np.dtype(dtype).name
    return spec


def _reconstruct_blockwise(regions, *, allocate, blocks, map, dtype=None):
    """``reconstruct`` block by block (:func:`florin.blockwise.reconstruct`), for label volumes above the budget."""
    lut, _ = _class_lut(regions, dtype, "reconstruct()")
    labels = regions.labels
    out = allocate(labels.shape, lut.dtype)
    names = blockwise.reconstruct(source(labels), regions, out, blocks=blocks, map=map)
    coords = {k: v for k, v in labels.coords.items() if set(v.dims) <= set(labels.dims)}
    attrs = {k: v for k, v in labels.attrs.items() if k != "classes"}
    attrs["classes"] = names
    return xr.DataArray(out, dims=labels.dims, coords=coords, attrs=attrs, name="classes")


@checked(check=_reconstruct_params, data_types=(Regions,), per_item=False, spec=_reconstruct_spec, kind="lookup",
         blockwise=_reconstruct_blockwise)
def reconstruct(regions, *, dtype=None):
    """Build the class-label volume of classified regions.

    Every voxel of a region gets the region's class id (``class_id`` from
    :func:`florin.classify`); background and regions no classifier matched
    are 0. Computed with one lookup table over the label volume (no loop per
    region); volumes that are not in memory are processed in slabs.

    Parameters
    ----------
    regions : Regions
        Classified regions (``conncomp.regionprops()`` then ``florin.classify(...)``).
    dtype : numpy dtype, optional
        Output dtype; default ``uint8``, or ``uint16`` with more than 255 classes.

    Returns
    -------
    xarray.DataArray
        Class ids with the label volume's dims, coords and attrs, plus
        ``attrs['classes'] = {'1': name1, '2': name2, ...}`` (string keys, so it
        survives JSON metadata such as florin's TIFF tags).

    Examples
    --------
    >>> import numpy as np
    >>> import florin
    >>> from florin.conncomp import regionprops
    >>> labels = np.array([[1, 1, 0, 2]])
    >>> classify = florin.classify(florin.bounds_classifier("pair", area=(2, 2)),
    ...                            florin.bounds_classifier("other"))
    >>> out = reconstruct(classify(regionprops(labels)))
    >>> out.values, out.attrs["classes"]
    (array([[1, 1, 0, 2]], dtype=uint8), {'1': 'pair', '2': 'other'})
    """
    lut, names = _class_lut(regions, dtype, "reconstruct()")
    if regions.labels is None:
        raise ParameterError("reconstruct(): these regions do not carry their label volume")
    labels = regions.labels
    out = _apply_lut(lut, labels)
    coords = {k: v for k, v in labels.coords.items() if set(v.dims) <= set(labels.dims)}
    attrs = {k: v for k, v in labels.attrs.items() if k != "classes"}
    attrs["classes"] = {str(i): n for i, n in names.items()}
    return xr.DataArray(out, dims=labels.dims, coords=coords, attrs=attrs, name="classes")


def _apply_lut(lut, labels):
    """``lut[labels]``, labels beyond the table clipped to its last (0) entry; slab by slab if not in memory."""
    out = np.empty(labels.shape, lut.dtype)
    if isinstance(labels.data, np.ndarray) or labels.ndim == 0:
        return _lookup(lut, labels.data if isinstance(labels.data, np.ndarray) else labels.values, out=out)
    step = max(1, _SLAB_VOXELS // max(int(np.prod(labels.shape[1:])), 1))
    for start in range(0, labels.shape[0], step):
        _lookup(lut, labels[start : start + step], out=out[start : start + step])
    return out


def render(classes, *, colors=None, background=(0, 0, 0)):
    """Colour a class-label volume for previews.

    Parameters
    ----------
    classes : array_like or xarray.DataArray
        Class ids (from :func:`reconstruct`), 0 = background.
    colors : dict or sequence, optional
        Colour per class: a dict keyed by class name or id, or a sequence
        indexed by ``id - 1``; RGB triples of 0-255 integers. Default:
        :data:`PALETTE`, cycled.
    background : tuple of int
        Colour of class 0.

    Returns
    -------
    xarray.DataArray
        ``uint8`` RGB with the input's dims plus a trailing ``rgb`` dim.

    Examples
    --------
    >>> import numpy as np
    >>> render(np.array([[0, 1, 2]])).values.tolist()
    [[[0, 0, 0], [230, 25, 75], [60, 180, 75]]]
    >>> render(np.array([[1]]), colors={1: (1, 2, 3)}).values.tolist()
    [[[1, 2, 3]]]
    """
    vol = as_volume(classes)
    data = np.asarray(vol)
    if data.dtype.kind not in "biu":
        raise ParameterError(f"render() needs integer class ids, got {data.dtype}")
    table = class_table(vol)
    top = int(data.max()) if data.size else 0
    if data.size and data.min() < 0:
        raise ParameterError("render(): class ids must be >= 0")
    palette = np.zeros((top + 1, 3), np.uint8)
    palette[0] = _rgb(background, "background")
    for i in range(1, top + 1):
        palette[i] = PALETTE[(i - 1) % len(PALETTE)]
        if colors is None:
            continue
        if isinstance(colors, dict):
            key = next((k for k in (i, str(i), table.get(i)) if k is not None and k in colors), None)
            if key is not None:
                palette[i] = _rgb(colors[key], f"colour of class {i}")
        elif i - 1 < len(colors):
            palette[i] = _rgb(colors[i - 1], f"colour of class {i}")
    rgb = palette[data]
    coords = {k: v for k, v in vol.coords.items() if set(v.dims) <= set(vol.dims)}
    attrs = {k: v for k, v in vol.attrs.items() if k != "spacing"}
    return xr.DataArray(rgb, dims=(*vol.dims, "rgb"), coords=coords, attrs=attrs, name="render")


def _rgb(value, what):
    value = tuple(value)
    if len(value) != 3 or not all(isinstance(v, int | np.integer) and 0 <= v <= 255 for v in value):
        raise ParameterError(f"render(): {what} must be an (r, g, b) triple of integers 0-255, got {value!r}")
    return value
