"""The data model: volumes are labelled ``xarray.DataArray`` objects.

A volume has named dims (``z``, ``y``, ``x`` in 3-D, ``y``, ``x`` in 2-D, extra
leading dims allowed), physical coordinates ``origin + index * spacing`` on its
spatial dims, and ``attrs`` for provenance. ``attrs['spacing']`` holds the voxel
size per dim so it survives slicing down to one voxel; ``attrs['units']`` the
unit of length. Plain numpy arrays (and memory-mapped or other lazy arrays) are
accepted everywhere and wrapped without copying.
"""

from __future__ import annotations

import numbers

import numpy as np
import xarray as xr

from florin.errors import ParameterError

__all__ = ["COLOUR_DIM", "SPATIAL_DIMS", "as_volume", "check_single_channel", "default_dims", "get_spacing", "like"]

SPATIAL_DIMS = ("z", "y", "x")
#: The dim of colour samples (an RGB TIFF's or PNG's channels).
COLOUR_DIM = "c"


def check_single_channel(volume, what: str) -> None:
    """Refuse a volume with a colour axis: neighbourhoods and connectivity would treat it as a spatial axis.

    Examples
    --------
    >>> check_single_channel(as_volume(np.zeros((4, 4, 3)), dims=("y", "x", "c")), "label()")
    Traceback (most recent call last):
    ...
    florin.errors.ParameterError: label(): the image has a colour axis `c` (dims y, x, c), which would count as a spatial axis; pick a channel (volume.isel(c=0)) or convert it to greyscale first
    """
    dims = tuple(getattr(volume, "dims", ()))
    if COLOUR_DIM in dims:
        raise ParameterError(
            f"{what}: the image has a colour axis `{COLOUR_DIM}` (dims {', '.join(map(str, dims))}), which would "
            "count as a spatial axis; pick a channel (volume.isel(c=0)) or convert it to greyscale first"
        )


def default_dims(ndim: int) -> tuple[str, ...]:
    """Dim names for an ``ndim``-dimensional array.

    Examples
    --------
    >>> default_dims(2)
    ('y', 'x')
    >>> default_dims(4)
    ('dim_0', 'z', 'y', 'x')
    """
    if ndim < 0:
        raise ParameterError(f"ndim must be >= 0, got {ndim}")
    spatial = SPATIAL_DIMS[max(0, 3 - ndim) :]
    extra = tuple(f"dim_{i}" for i in range(ndim - len(spatial)))
    return extra + spatial


def _spacing_tuple(spacing, dims):
    if spacing is None:
        return None
    if isinstance(spacing, numbers.Real):
        spacing = (float(spacing),) * len(dims)
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != len(dims):
        raise ParameterError(
            f"spacing has {len(spacing)} entries but the volume has {len(dims)} dims {dims}; "
            "give one voxel size per dim"
        )
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ParameterError(f"spacing must be positive and finite, got {spacing}")
    return spacing


def as_volume(data, *, dims=None, spacing=None, units=None, attrs=None, name=None) -> xr.DataArray:
    """Wrap an array as a florin volume without copying it.

    Parameters
    ----------
    data : array_like or xarray.DataArray
        The image. A DataArray is returned as is unless other arguments change it.
    dims : sequence of str, optional
        Dim names; by default ``('z', 'y', 'x')`` trimmed to the array's ndim, with
        ``dim_0, dim_1, ...`` for extra leading dims.
    spacing : float or sequence of float, optional
        Voxel size per dim (a scalar applies to all dims). Sets physical coordinates.
    units : str, optional
        Unit of ``spacing`` (e.g. ``'um'``).
    attrs : dict, optional
        Extra attributes (provenance).
    name : str, optional
        Name of the DataArray.

    Returns
    -------
    xarray.DataArray

    Examples
    --------
    >>> import numpy as np
    >>> vol = as_volume(np.zeros((2, 3, 4)), spacing=(2.0, 0.5, 0.5), units="um")
    >>> vol.dims, get_spacing(vol)
    (('z', 'y', 'x'), (2.0, 0.5, 0.5))
    >>> vol.coords["z"].values.tolist()
    [0.0, 2.0]
    """
    if isinstance(data, xr.DataArray):
        vol = data
        if dims is not None and tuple(dims) != vol.dims:
            vol = vol.rename(dict(zip(vol.dims, dims, strict=True)))
    else:
        if not hasattr(data, "shape") or not hasattr(data, "dtype"):
            data = np.asarray(data)
        ndim = len(data.shape)
        dims = tuple(dims) if dims is not None else default_dims(ndim)
        if len(dims) != ndim:
            raise ParameterError(f"dims {dims} has {len(dims)} names for a {ndim}-D array")
        vol = xr.DataArray(data, dims=dims, name=name)
    spacing = _spacing_tuple(spacing, vol.dims)
    if spacing is None and "spacing" not in vol.attrs:
        # Coordinates without attrs (e.g. from NetCDF) still define a spacing.
        inferred = _spacing_from_coords(vol)
        if inferred is not None:
            vol.attrs["spacing"] = inferred
    if spacing is not None:
        coords = {d: np.arange(n) * s for d, n, s in zip(vol.dims, vol.shape, spacing, strict=True)}
        vol = vol.assign_coords(coords)
        vol.attrs["spacing"] = spacing
    if units is not None:
        vol.attrs["units"] = str(units)
    if attrs:
        vol.attrs.update(attrs)
    if name is not None:
        vol.name = name
    return vol


def _spacing_from_coords(vol):
    if not any(d in vol.coords for d in vol.dims):
        return None
    out = []
    for d in vol.dims:
        c = vol.coords[d].values if d in vol.coords else None
        if c is not None and c.size > 1 and np.issubdtype(c.dtype, np.number):
            out.append(float(c[1] - c[0]))
        else:
            out.append(1.0)
    return tuple(out)


def get_spacing(vol) -> tuple[float, ...]:
    """Voxel size per dim of a volume (1.0 where unknown).

    Examples
    --------
    >>> import numpy as np
    >>> get_spacing(np.zeros((2, 2)))
    (1.0, 1.0)
    """
    if isinstance(vol, xr.DataArray):
        sp = vol.attrs.get("spacing")
        if sp is not None and len(sp) == vol.ndim:
            return tuple(float(s) for s in sp)
        inferred = _spacing_from_coords(vol)
        if inferred is not None:
            return inferred
    return (1.0,) * np.ndim(vol)


def like(result, template: xr.DataArray, *, name=None) -> xr.DataArray:
    """Wrap a plain array result with the dims, coords and attrs of ``template``.

    Used by operators that call numpy/scipy/scikit-image functions so that their
    output keeps the input's labels (and tile metadata, which lives in attrs).
    """
    if isinstance(result, xr.DataArray):
        return result
    result = np.asarray(result)
    if result.shape != template.shape:
        raise ParameterError(
            f"result shape {result.shape} differs from input shape {template.shape}; "
            "operators in a volume pipeline must keep the shape"
        )
    coords = {k: v for k, v in template.coords.items() if set(v.dims) <= set(template.dims)}
    return xr.DataArray(result, dims=template.dims, coords=coords, attrs=dict(template.attrs),
                        name=name if name is not None else template.name)
