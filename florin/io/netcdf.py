"""NetCDF-4 through xarray (netCDF4 engine): dims, coords and attrs round-trip.

Reading opens the file with xarray (CF decoding: scale factors, fill values,
booleans) and keeps the chosen variable lazy: a worker reopens the file and
reads only its tile. ``key=`` names the variable; without it the file's only
data variable is taken, or the ones present are listed.

Writing stores the volume as one compressed, chunked variable (named after the
volume, else ``key=``, default ``'data'``) with its coordinates; florin attrs
that NetCDF cannot hold (nested tables) are kept as JSON in the variable
attribute ``florin``. A lazy volume is written chunk by chunk through dask when
dask is installed, and loaded first otherwise.
"""

from __future__ import annotations

import threading

import numpy as np
import xarray as xr

from florin.io import Format
from florin.io._blocks import default_chunks
from florin.io._reader import pick_key, volume_of
from florin.io.lazy import FileArray, cached_handle, is_lazy
from florin.io.metadata import from_json, meta_json, plain

__all__ = ["FORMAT"]

_lock = threading.Lock()


def _open(path):
    return xr.open_dataset(path, engine="netcdf4", cache=False)


def read_region(path, key, index):
    """Read a region of variable ``key`` (the lazy reader; decoded as xarray decodes it)."""
    with _lock:
        return cached_handle(_open, path)[key].variable[index].values


def _data_vars(ds):
    return [str(name) for name, var in ds.data_vars.items() if var.ndim > 0]


def read_netcdf(path, *, key=None, lazy=True):
    """Read a variable of a NetCDF file lazily (its dims, 1-D coords and attrs)."""
    with _open(path) as ds:
        key = pick_key(path, key, _data_vars(ds), noun="variable", plural="data variables",
                       problem=lambda k: None if k in ds.variables else "no variable")
        var = ds[key]
        dims, shape, dtype = tuple(var.dims), tuple(var.shape), np.dtype(var.dtype)
        coords = {name: c.variable.load() for name, c in var.coords.items() if c.ndim <= 1}
        attrs = dict(var.attrs)
        data = None if lazy else var.values
    meta = from_json(attrs.pop("florin", None))
    if meta is not None:
        attrs = meta["attrs"]
    else:
        attrs = {k: plain(v) for k, v in attrs.items()}
    if isinstance(attrs.get("spacing"), list | tuple) and len(attrs["spacing"]) == len(dims):
        attrs["spacing"] = tuple(float(s) for s in attrs["spacing"])
    elif "spacing" in attrs:
        attrs.pop("spacing")
    data = FileArray(path, "netcdf", key, shape, dtype, read_region) if lazy else data
    return volume_of(data, dims=dims, coords=coords, attrs=attrs, name=key)


def _nc_attrs(volume):
    """Attributes NetCDF can store, plus florin's full metadata as JSON."""
    attrs = dict(volume.attrs)
    out = {"florin": meta_json(volume.dims, volume.dtype, attrs)}
    for name, value in attrs.items():
        value = plain(value)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            out[name] = value
        elif isinstance(value, list) and value and all(isinstance(v, int | float) and not isinstance(v, bool)
                                                       for v in value):
            out[name] = np.asarray(value)
    return out


def write_netcdf(path, volume, *, key=None, compression=True, complevel=4):
    """Write a volume as a compressed NetCDF-4 variable with its coordinates."""
    name = key or (volume.name if isinstance(volume.name, str) and volume.name else "data")
    coords = {k: v.variable for k, v in volume.coords.items() if set(v.dims) <= set(volume.dims)}
    data = volume.variable
    if is_lazy(volume):
        try:
            import dask.array  # noqa: F401

            data = volume.chunk({volume.dims[0]: max(1, default_chunks(volume.shape, volume.dtype.itemsize)[0])})
            data = data.variable
        except ImportError:
            data = xr.Variable(volume.dims, np.asarray(volume))
    da = xr.DataArray(data, coords=coords, name=name)
    da.attrs = _nc_attrs(volume)
    encoding = {}
    if volume.ndim:
        chunks = [min(c, n) for c, n in zip(default_chunks(volume.shape, volume.dtype.itemsize), volume.shape,
                                            strict=True)]
        if all(n > 0 for n in volume.shape):
            encoding = {"zlib": bool(compression), "complevel": int(complevel), "chunksizes": chunks}
    ds = da.to_dataset()
    ds.attrs["Conventions"] = "CF-1.8"
    ds.to_netcdf(path, engine="netcdf4", format="NETCDF4", encoding={name: encoding})


FORMAT = Format(
    "netcdf",
    (".nc", ".nc4", ".netcdf", ".cdf"),
    read_netcdf,
    write_netcdf,
    "NetCDF-4 (xarray + netCDF4; key= names the variable; dims, coords, attrs)",
)
