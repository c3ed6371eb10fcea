"""Blockwise region properties, equal to :func:`florin.conncomp.regionprops`.

Every property florin's ``regionprops`` reports is an exact function of
per-object partial statistics that add up over any partition of the volume:
the voxel count, the bounding box (minima of minima, maxima of maxima), the
integer sums of the voxel coordinates (the centroid is ``coord_sum / area``,
computed once at the end, as in memory) and the intensity sum, minimum and
maximum. So one reduce pass suffices: each block returns the statistics of
the labels present in it (:func:`florin._kernels.regions.region_stats` with
the block's origin, on the block's labels compacted to ``1..k``) and the
parent folds them per label. No property needs a second pass over object
crops.

Exactness: every column equals the in-memory one bit for bit, except
``intensity_sum`` and ``intensity_mean`` of a *floating-point* intensity
image, which are float64 sums taken in another order (the in-memory form's
own order already depends on the numba thread count and on whether the
volume is in memory); for integer and boolean intensities, whose sums are
exact in float64 below 2**53, they are equal too.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from florin import _run
from florin._kernels.regions import region_stats
from florin.blockwise._arrays import Source
from florin.blockwise.label import _normalize_blocks
from florin.errors import ParameterError
from florin.io import read
from florin.regions import Regions, extent_names
from florin.volume import as_volume, default_dims

__all__ = ["regionprops"]

_INTENSITY = ("intensity_mean", "intensity_min", "intensity_max", "intensity_sum")
_DENSE_FACTOR = 4  # a block's labels are offset (not compacted) when their range is below this many voxels each


class _Lazy(BackendArray):
    """Any sliceable array-like as an xarray backend array, read region by region (pickles as a reference)."""

    __slots__ = ("arr", "dtype", "shape")

    def __init__(self, arr):
        self.arr = Source(arr)
        self.shape = tuple(int(n) for n in arr.shape)
        self.dtype = np.dtype(arr.dtype)

    def __getitem__(self, key):
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.BASIC, self._read)

    def _read(self, index):
        return self.arr[tuple(index)]

    def __reduce__(self):
        return (_Lazy, (self.arr,))


def _intensity_volume(intensity, no_input_message):
    """The intensity image as a volume: ``'input'`` (the run's input), a path to read, or an array."""
    if isinstance(intensity, str) and intensity == "input":
        state = _run.current()
        volume = getattr(state, "input", None) if state is not None else None
        if volume is None:
            raise ParameterError(no_input_message)
        intensity = volume
    elif isinstance(intensity, str | os.PathLike):
        intensity = read(intensity)
    return as_volume(intensity)


def _as_lazy_volume(arr):
    """``arr`` as a DataArray without reading it (numpy arrays are wrapped as they are)."""
    if isinstance(arr, xr.DataArray):
        return arr
    if isinstance(arr, np.ndarray):
        return as_volume(arr)
    dims = default_dims(len(arr.shape))
    return xr.DataArray(xr.Variable(dims, indexing.LazilyIndexedArray(_Lazy(arr))))


def _block_stats(labels, intensity, has_intensity, block):
    """Statistics of the labels present in one block: ``(ids, stats)`` (rows of ids only)."""
    lab = labels[block]
    if lab.dtype.kind == "i" and lab.size and int(lab.min()) < 0:
        raise ParameterError("blockwise.regionprops(): labels must be >= 0 (0 is background)")
    img = intensity[block] if has_intensity else None
    origin = [s.start for s in block]
    top = int(lab.max()) if lab.size else 0
    if top == 0:
        return np.zeros(0, np.int64), None
    if top <= _DENSE_FACTOR * lab.size + 64:
        stats = region_stats(lab, top, img, origin=origin)
        keep = stats["area"] > 0
        ids = stats["label"][keep]
    else:  # a few large label values: compact them to 1..k
        uniq, inverse = np.unique(lab, return_inverse=True)
        local = inverse.reshape(lab.shape)
        if uniq[0] == 0:
            uniq = uniq[1:]
        else:
            local = local + 1
        stats = region_stats(local, uniq.size, img, origin=origin)
        keep = slice(None)
        ids = uniq.astype(np.int64)
    keys = ("area", "bbox_min", "bbox_max", "coord_sum") + (
        ("intensity_sum", "intensity_min", "intensity_max") if has_intensity else ()
    )
    return ids, {k: stats[k][keep] for k in keys}


def _fold(parts, ndim, has_intensity):
    """The statistics per label (rows in label order, labels present only) from the blocks' parts."""
    ids = np.concatenate([np.zeros(0, np.int64)] + [p[0] for p in parts])
    stats = [p[1] for p in parts if p[1] is not None]
    uniq, row = np.unique(ids, return_inverse=True)
    n = uniq.size
    row = row.ravel()

    def cat(key, tail=()):
        return np.concatenate([np.zeros((0, *tail))] + [s[key] for s in stats])

    area = np.zeros(n, np.int64)
    np.add.at(area, row, cat("area").astype(np.int64))
    bmin = np.full((n, ndim), np.iinfo(np.int64).max, np.int64)
    np.minimum.at(bmin, row, cat("bbox_min", (ndim,)).astype(np.int64))
    bmax = np.full((n, ndim), -1, np.int64)
    np.maximum.at(bmax, row, cat("bbox_max", (ndim,)).astype(np.int64))
    csum = np.zeros((n, ndim), np.int64)
    np.add.at(csum, row, cat("coord_sum", (ndim,)).astype(np.int64))
    out = {
        "label": uniq.astype(np.int64),
        "area": area,
        "bbox_min": bmin,
        "bbox_max": bmax,
        "centroid": csum / area[:, None].astype(np.float64),
    }
    if has_intensity:
        isum = np.zeros(n, np.float64)
        np.add.at(isum, row, cat("intensity_sum"))
        imin = np.full(n, np.inf)
        np.minimum.at(imin, row, cat("intensity_min"))
        imax = np.full(n, -np.inf)
        np.maximum.at(imax, row, cat("intensity_max"))
        out.update(
            intensity_sum=isum, intensity_min=imin, intensity_max=imax, intensity_mean=isum / area.astype(np.float64)
        )
    return out


def _columns(dims, has_intensity):
    names = ["label", "area", *extent_names(dims)]
    names += [f"bbox_min_{d}" for d in dims] + [f"bbox_max_{d}" for d in dims] + [f"centroid_{d}" for d in dims]
    names += ["physical_volume"] + [f"physical_centroid_{d}" for d in dims]
    return names + (list(_INTENSITY) if has_intensity else [])


def _intensity_of(intensity, shape):
    if intensity is None:
        return None
    if isinstance(intensity, str | os.PathLike):
        intensity = _intensity_volume(
            intensity, "blockwise.regionprops(intensity='input') needs a running pipeline's input; pass the image"
        )
    if not hasattr(intensity, "shape") or not hasattr(intensity, "dtype"):
        raise ParameterError(
            f"blockwise.regionprops(): intensity must be None, a path or a sliceable image array, "
            f"got {type(intensity).__name__}"
        )
    if tuple(intensity.shape) != shape:
        raise ParameterError(
            f"blockwise.regionprops(): the intensity image has shape {tuple(intensity.shape)} but the labels have "
            f"{shape}; they must match voxel for voxel"
        )
    if np.dtype(intensity.dtype).kind not in "biuf":
        raise ParameterError(f"blockwise.regionprops(): the intensity image must be real-valued, got {intensity.dtype}")
    return intensity


def regionprops(labels, intensity=None, *, blocks, properties=None, map=map) -> Regions:
    """Measure every labelled object block by block: the table of :func:`florin.conncomp.regionprops`.

    One pass over the blocks returns per-label partial statistics (voxel
    count, bounding box, integer coordinate sums, intensity sum, minimum and
    maximum); the parent folds them per label and derives centroids, extents,
    physical sizes and means exactly as the in-memory form does. Only a
    block, and tables of the objects present in it, are held at a time.

    Parameters
    ----------
    labels : array_like
        Sliceable integer label volume (numpy array, ``numpy.memmap``, h5py
        dataset, zarr array, :func:`florin.io.create` output, or a lazy florin
        volume, whose dims, coordinates and spacing are used); 0 is background.
        Never modified.
    intensity : array_like, str or path-like, optional
        Intensity image of the labels' shape (sliceable as ``labels``), a file
        to read lazily, or ``'input'`` inside a pipeline run; adds
        ``intensity_mean``, ``_min``, ``_max`` and ``_sum``.
    blocks : tuple of int or list of tuple of slice
        A block shape (the volume is cut into a regular grid of such blocks,
        clipped at its edges) or boxes partitioning the volume.
    properties : sequence of str, optional
        Columns to return, a subset of the in-memory table's (``label`` is
        always kept; the order is the table's). Default: all of them.
    map : callable
        ``map(func, items)``: ``builtins.map``, a thread pool's or a process
        pool's map (each block is one item; arrays cross to processes as
        references, see :mod:`florin.blockwise._arrays`).

    Returns
    -------
    florin.regions.Regions
        The same columns, in the same order, with the same dtypes and values as
        ``florin.conncomp.regionprops(labels, intensity=intensity)`` on the
        whole volume (floating-point intensity sums and means up to summation
        order, see :mod:`florin.blockwise.regions`). ``regions.labels`` is
        ``labels`` wrapped lazily, so :func:`florin.blockwise.reconstruct` (or
        the in-memory ``florin.reconstruct``) can follow.

    Raises
    ------
    florin.errors.ParameterError
        For a mask or float label volume, negative labels, an intensity image
        of another shape or dtype, bad ``blocks`` or unknown ``properties``.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([[1, 1, 0, 2], [0, 3, 0, 2]])
    >>> regions = regionprops(labels, blocks=(1, 2))
    >>> regions.table["area"].tolist(), regions.table["centroid_x"].tolist()
    ([2, 2, 1], [0.5, 3.0, 1.0])
    >>> list(regionprops(labels, blocks=(2, 2), properties=["area"]).table)
    ['label', 'area']
    """
    what = "blockwise.regionprops()"
    if not hasattr(labels, "shape") or not hasattr(labels, "dtype"):
        raise ParameterError(f"{what}: labels must be a sliceable label array, got {type(labels).__name__}")
    shape = tuple(int(n) for n in labels.shape)
    if not shape:
        raise ParameterError(f"{what} needs a label volume with at least one dimension")
    dtype = np.dtype(labels.dtype)
    if dtype.kind == "b":
        raise ParameterError(
            f"{what} needs an integer label volume, got a mask; label it first with florin.blockwise.label()"
        )
    if dtype.kind not in "iu":
        raise ParameterError(
            f"{what} needs an integer label volume, got {dtype}; label a mask first with florin.blockwise.label()"
        )
    intensity = _intensity_of(intensity, shape)
    vol = _as_lazy_volume(labels)
    columns = _columns(vol.dims, intensity is not None)
    if properties is not None:
        if isinstance(properties, str) or not all(isinstance(p, str) for p in properties):
            raise ParameterError(f"{what}: properties must be a list of column names, got {properties!r}")
        unknown = [p for p in properties if p not in columns]
        if unknown:
            raise ParameterError(f"{what}: unknown properties {unknown}; valid: {', '.join(columns)}")
        wanted = {"label", *properties}
        columns = [c for c in columns if c in wanted]
        if not wanted & set(_INTENSITY):
            intensity = None  # not read at all
    blocks = _normalize_blocks(blocks, shape)
    has_intensity = intensity is not None
    step = functools.partial(_block_stats, Source(labels), Source(intensity) if has_intensity else None, has_intensity)
    parts = list(map(step, blocks))
    stats = _fold(parts, len(shape), has_intensity)
    regions = Regions.from_stats(stats, vol)
    if properties is not None:
        regions = regions._like({c: regions.table[c] for c in columns})
    return regions
