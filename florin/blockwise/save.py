"""Streamed save: a lazily readable volume written block by block into its final file, committed atomically.

The output is made with :func:`florin.io.create` (the format's ``create`` and
``open_region`` writers), so it lives under a hidden temporary name beside
the target until every block is written, and is renamed into place only
then; on any failure the temporary output is removed and nothing appears
under the final name. Workers write their blocks themselves (the output
pickles as a reference; writes from several processes take turns under a
lock file beside it).

Formats that can be written region by region: HDF5, Zarr, OME-Zarr, TIFF
(uncompressed, memory-mapped; no ``compression=``) and NPY. NetCDF and image
stacks cannot (their writers take the whole volume): ``save`` raises a
:class:`florin.errors.FormatError` listing the ones that can.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from florin.blockwise._arrays import Sink, Source, _h5_reference, _memmap_layout
from florin.blockwise.label import _normalize_blocks
from florin.blockwise.regions import _as_lazy_volume
from florin.errors import OutputExistsError, ParameterError
from florin.io import create
from florin.io.ondisk_array import OnDiskArray

__all__ = ["save"]


def _copy_block(volume, out, dtype, block):
    return out.put(block, volume[block].astype(dtype, copy=False))


def _raw_sources(volume) -> list[str]:
    """Files a memmap or h5py dataset reads (lazy florin volumes are checked by :func:`florin.io.check_output`)."""
    layout = _memmap_layout(volume)
    if layout is not None:
        return [layout[0]]
    h5 = _h5_reference(volume)
    return [h5.filename] if h5 is not None else []


def save(volume, path, *, blocks, map=map, format=None, overwrite=False, **options):
    """Write ``volume`` into ``path`` block by block and commit it atomically.

    Parameters
    ----------
    volume : array_like
        Sliceable volume (numpy array, ``numpy.memmap``, h5py dataset, zarr
        array, lazy florin volume, whose dims, spacing and attrs are written
        too). Only a block is read at a time.
    path : str, path-like or florin.io.ondisk_array.OnDiskArray
        The output file; or an output made with :func:`florin.io.create` of
        the volume's shape, which is filled and committed.
    blocks : tuple of int or list of tuple of slice
        A block shape or boxes partitioning the volume; each block is read and
        written once.
    map : callable
        ``builtins.map``, or a thread or process pool's map: workers read
        their block and write it into the temporary output themselves.
    format : str, optional
        Format name; by default chosen from the extension. It must support
        region writes (HDF5, Zarr, OME-Zarr, TIFF, NPY).
    overwrite : bool
        Replace an existing output (at commit; never the volume's own file).
    **options
        The format's creation options (``key=``, ``chunks=``,
        ``compression=`` for HDF5 ...).

    Returns
    -------
    xarray.DataArray
        The committed output, read lazily.

    Raises
    ------
    florin.errors.FormatError
        When the format cannot be written region by region.
    florin.errors.OutputExistsError
        When the output exists (without ``overwrite``) or is the volume's own file.

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "out.npy")
    >>> vol = save(np.arange(12, dtype=np.uint8).reshape(3, 4), path, blocks=(2, 3))
    >>> np.load(path)[2].tolist(), sorted(os.listdir(os.path.dirname(path)))
    ([8, 9, 10, 11], ['out.npy', 'out.npy.json'])
    """
    if not hasattr(volume, "shape") or not hasattr(volume, "dtype"):
        raise ParameterError(f"blockwise.save(): volume must be a sliceable array, got {type(volume).__name__}")
    shape = tuple(int(n) for n in volume.shape)
    blocks = _normalize_blocks(blocks, shape)
    if isinstance(path, OnDiskArray):
        if format is not None or options:
            raise ParameterError("blockwise.save(out) into an output from florin.io.create takes no format or options")
        if path.shape != shape:
            raise ParameterError(f"blockwise.save(): the output has shape {path.shape}, the volume {shape}")
        out = path
    else:
        target = os.path.realpath(os.fspath(path))
        if any(os.path.realpath(p) == target for p in _raw_sources(volume)):
            raise OutputExistsError(
                f"refusing to write {os.fspath(path)!r}: it is the volume being read; choose another output path"
            )
        out = create(path, like=_as_lazy_volume(volume), format=format, overwrite=overwrite, **options)
    with out:  # commits when every block is written, removes the temporary output on any error
        sink = Sink(out)
        step = functools.partial(_copy_block, Source(volume), sink, np.dtype(out.dtype))
        for pending in map(step, blocks):
            sink.apply(pending)
    return out.volume()
