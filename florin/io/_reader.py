"""What every reader does: choose the array inside a file, wrap it lazily or in memory, apply stored metadata.

Formats call these three helpers instead of each writing them again:

- :func:`pick_key` takes ``key=`` (or the file's only array) and raises the
  one error that lists what the file holds;
- :func:`volume_of` wraps a :class:`~florin.io.lazy.FileArray` as a lazy
  volume and anything else (voxels already read) as an in-memory one;
- :func:`stored_volume` applies florin's own metadata (dims, spacing, attrs,
  see :mod:`florin.io.metadata`) when it describes the data, and says so by
  returning None when it does not (other tools' files, a changed file).
"""

from __future__ import annotations

import os

import xarray as xr

from florin.errors import InputFileError
from florin.io.lazy import FileArray, lazy_volume
from florin.volume import as_volume, default_dims

__all__ = ["pick_key", "stored_volume", "volume_of"]


def pick_key(path, key, present, *, noun, plural=None, problem=None):
    """The array to read: ``key``, or the only one ``present`` when ``key`` is None.

    Parameters
    ----------
    path : str or path-like
        The file (for the message).
    key : str or None
        What the caller passed as ``key=``.
    present : sequence of str
        The arrays the file holds.
    noun : str
        What one of them is called (``'dataset'``, ``'array'``, ``'variable'``).
    plural : str, optional
        What several are called (default ``noun + 's'``).
    problem : callable, optional
        ``problem(key)`` -> None when ``key`` can be read, else what the file
        has under that name instead (``'a group'``); default: ``key`` must be
        one of ``present`` (else ``'no <noun>'``).

    Returns
    -------
    str
        The key to read.

    Raises
    ------
    InputFileError
        The file holds no array, several without ``key=``, or none named ``key``;
        the message lists the ones present.

    Examples
    --------
    >>> pick_key("f.h5", None, ["/a"], noun="dataset")
    '/a'
    >>> pick_key("f.h5", None, ["/a", "/b"], noun="dataset")
    Traceback (most recent call last):
    ...
    florin.errors.InputFileError: 'f.h5' holds 2 datasets (/a, /b); pass key= one of them
    >>> pick_key("f.nc", "t", ["temp"], noun="variable", plural="data variables")
    Traceback (most recent call last):
    ...
    florin.errors.InputFileError: 'f.nc' has no variable 't'; data variables present: temp
    """
    plural = plural or f"{noun}s"
    where = repr(os.fspath(path))
    listed = ", ".join(present) or "none"
    if key is None:
        if len(present) == 1:
            return present[0]
        if not present:
            raise InputFileError(f"{where} holds no {plural}")
        raise InputFileError(f"{where} holds {len(present)} {plural} ({listed}); pass key= one of them")
    found = problem(key) if problem is not None else (None if key in present else f"no {noun}")
    if found is not None:
        raise InputFileError(f"{where} has {found} {key!r}; {plural} present: {listed}")
    return key


def volume_of(data, *, dims=None, coords=None, spacing=None, units=None, attrs=None, name=None):
    """``data`` as a florin volume: lazy for a :class:`~florin.io.lazy.FileArray`, in memory otherwise.

    The options are those of :func:`florin.io.lazy.lazy_volume`.

    Examples
    --------
    >>> import numpy as np
    >>> volume_of(np.zeros((2, 3)), dims=("y", "x"), coords={"x": [0, 2, 4]}).x.values.tolist()
    [0, 2, 4]
    """
    if isinstance(data, FileArray):
        return lazy_volume(data, dims=dims, coords=coords, spacing=spacing, units=units, attrs=attrs, name=name)
    if coords is not None:
        dims = tuple(dims) if dims is not None else default_dims(len(data.shape))
        data, dims, name = xr.DataArray(data, dims=dims, coords=coords, name=name), None, None
    return as_volume(data, dims=dims, spacing=spacing, units=units, attrs=attrs, name=name)


def stored_volume(data, meta, *, spacing=None, planes=None):
    """``data`` with florin's stored metadata ``meta``, or None when ``meta`` does not describe it.

    Parameters
    ----------
    data : FileArray or numpy.ndarray
        The voxels (see :func:`volume_of`).
    meta : dict or None
        What :func:`florin.io.metadata.from_json` parsed (None: the file has none).
    spacing : tuple of float, optional
        Voxel size found elsewhere in the file, used when ``meta`` has none.
    planes : str, optional
        Also accept ``data`` with one more, leading axis of length 1 (a 2-D
        volume stored as the one plane of a stack): that axis, named ``planes``,
        is dropped.

    Returns
    -------
    xarray.DataArray or None
        The volume with ``meta``'s dims, spacing and attrs; None when ``meta``
        is None or its dims do not match the data's.

    Examples
    --------
    >>> import numpy as np
    >>> meta = {"dims": ["y", "x"], "attrs": {"spacing": (2.0, 1.0)}}
    >>> stored_volume(np.zeros((2, 3)), meta).attrs["spacing"]
    (2.0, 1.0)
    >>> stored_volume(np.zeros((1, 2, 3)), meta, planes="plane").dims
    ('y', 'x')
    >>> stored_volume(np.zeros(3), meta) is None
    True
    """
    if meta is None:
        return None
    ndim, dims, attrs = len(data.shape), tuple(meta["dims"]), dict(meta["attrs"])
    spacing = attrs.pop("spacing", spacing)
    if len(dims) == ndim:
        return volume_of(data, dims=dims, spacing=spacing, attrs=attrs)
    if planes is not None and len(dims) == ndim - 1 and data.shape[0] == 1:
        return as_volume(volume_of(data, dims=(planes, *dims), attrs=attrs)[0], spacing=spacing)
    return None
