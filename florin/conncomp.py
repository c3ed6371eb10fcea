"""Connected components and region properties of segmented volumes.

``label`` numbers the connected components of a mask; ``regionprops`` measures
every labelled object and returns a :class:`~florin.regions.Regions`
collection, which pipelines map per-object steps (such as
:func:`florin.classify`) over. Both wrap the plain-array engines of
:mod:`florin._kernels.label` and :mod:`florin._kernels.regions`.

Tiled labeling
--------------
Inside a pipeline over tiles (``Serial(tile(...), Multithread(ndnt(...),
label()))``) each tile labels its *core* only (the voxels it owns; the halo
around it is context for the steps before, and is not exact for them), and
marks its result with ``attrs['florin_labels']``. When the tiles are joined,
:class:`LabelJoin` (the result kind of labelled tiles) gives every tile's
labels a distinct range, unions the labels that touch across tile faces,
edges and corners (same connectivity) and renumbers them in raster order of
their first voxel: the joined volume is *identical* to ``label`` of the whole
volume, whatever the order in which the tiles arrive. ``label`` declares this
(``merged_at_join``): inside a tiled pipeline only steps that take such tiles
(``regionprops``, which declares ``takes_merged_tiles``) may follow it, and a
pipeline with another step there is refused when it is built; in a flat
pipeline (``Serial(tile(...), label(), binary_dilation())``) the tiles are
joined before the next step, so the result is the whole-volume one.

Tiled region properties
-----------------------
``regionprops`` in the same tiled pipeline (``Multithread(ndnt(...),
label(), regionprops())``) measures each tile's core with its local labels
(:func:`~florin._kernels.regions.region_stats` with the tile's origin) and
attaches the statistics to the tile; the join maps every tile's local labels
to the merged global ones and aggregates their statistics (sums add, minima
of minima, maxima of maxima, then centroids and means), so the join yields the
:class:`~florin.regions.Regions` of the whole volume, equal to ``regionprops``
of the joined labels, computed in parallel. Outside tiled pipelines
``regionprops`` measures the whole label volume, in slabs aggregated with
:func:`~florin._kernels.regions.combine_stats` when it is not in memory.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, replace

import numpy as np

from florin import blockwise, planner, tilemeta
from florin._checked import checked
from florin._kernels import label as _klabel
from florin._kernels.regions import combine_stats, region_stats
from florin.blockwise.regions import _intensity_volume
from florin.errors import ParameterError, PipelineError
from florin.regions import Regions
from florin.tiling import TileJoin, core_of, register_join, wrap_joined
from florin.volume import as_volume, check_single_channel, like

__all__ = ["LABELS_KEY", "LabelJoin", "Regions", "join_labels", "label", "regionprops"]

LABELS_KEY = "florin_labels"
"""Key in a labelled tile's attrs of its :class:`LabelTile` (marks tiles join must merge)."""

_SLAB_VOXELS = 1 << 26  # lazy volumes are measured in slabs of about this many voxels


@dataclass(frozen=True)
class LabelTile:
    """What join needs to merge one tile's labels with its neighbours'.

    Attributes
    ----------
    n : int
        Number of labels in the tile's core (``1..n``).
    connectivity : int
        Connectivity the tile was labelled with.
    first : numpy.ndarray
        ``(n,)`` full-volume raster index of the first voxel of each label.
    stats : dict, optional
        ``region_stats`` of the core's local labels in full-volume coordinates,
        when ``regionprops`` ran on the tile.
    """

    n: int
    connectivity: int
    first: np.ndarray
    stats: dict | None = None


def _check_connectivity(connectivity, ndim=None):
    if isinstance(connectivity, bool) or not isinstance(connectivity, numbers.Integral) or connectivity < 1:
        raise ParameterError(f"label(): connectivity must be an integer >= 1, got {connectivity!r}")
    if ndim is not None and connectivity > max(ndim, 1):
        raise ParameterError(
            f"label(): connectivity must be between 1 and {max(ndim, 1)} for a {ndim}-D volume, got {connectivity}"
        )
    return int(connectivity)


def _mask_of(vol):
    data = vol.data  # once: on a lazily read file each .data reads it again
    data = data if isinstance(data, np.ndarray) else np.asarray(vol)
    if data.dtype.kind not in "biuf":
        raise ParameterError(f"label() needs a binary mask (bool or numbers, nonzero = foreground), got {data.dtype}")
    return data


def _label_params(params):
    _check_connectivity(params["connectivity"])


def _label_blockwise(image, *, allocate, blocks, map, connectivity=1):
    """``label`` block by block (:func:`florin.blockwise.label`), for volumes above the memory budget."""
    vol = as_volume(image)
    connectivity = _check_connectivity(connectivity, vol.ndim)
    _mask_dtype = np.dtype(vol.dtype)
    if _mask_dtype.kind not in "biuf":
        raise ParameterError(f"label() needs a binary mask (bool or numbers, nonzero = foreground), got {_mask_dtype}")
    dtype = _klabel.label_dtype(math.prod(vol.shape))
    out = allocate(vol.shape, dtype)
    # A block holds its mask, its local labels and their runs; blocks as compact as their count allows write
    # few outer layers of provisional ids (the one-voxel shells the merge reads).
    blocks = planner.recut(vol.shape, blocks, bytes_per_voxel=_mask_dtype.itemsize + dtype.itemsize + 1,
                           halo=(1,) * vol.ndim)
    blockwise.label(planner.source(vol), out, blocks=blocks, connectivity=connectivity, map=map, scratch=allocate)
    return like(out, vol)


@checked(check=_label_params, merged_at_join=True, kind="label-merge", blockwise=_label_blockwise)
def label(image, *, connectivity=1):
    """Label the connected components of a binary volume.

    Nonzero voxels are foreground. Components are numbered ``1..N`` in raster
    order of their first voxel (exactly as :func:`scipy.ndimage.label`), 0 is
    background. Inside a pipeline over tiles, each tile is labelled and the
    labels are merged across tiles when they are joined, with the same result
    as labelling the whole volume.

    Parameters
    ----------
    image : array_like or xarray.DataArray
        Binary volume (any dimension >= 1).
    connectivity : int
        ``1`` (default) joins voxels that share a face (6-connectivity in 3-D),
        up to ``ndim``, which also joins voxels that share an edge or a corner
        (26-connectivity in 3-D): voxels are neighbours when their offset has at
        most ``connectivity`` nonzero components.

    Returns
    -------
    xarray.DataArray
        ``uint32`` labels (``uint64`` for volumes of more than 2**32 - 1
        voxels) with the input's dims, coords and attrs.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.array([[1, 1, 0, 0],
    ...                  [0, 0, 1, 0],
    ...                  [1, 0, 0, 1]], bool)
    >>> label(mask).values
    array([[1, 1, 0, 0],
           [0, 0, 2, 0],
           [3, 0, 0, 4]], dtype=uint32)
    >>> int(label(mask, connectivity=2).values.max())
    2
    """
    vol = as_volume(image)
    if vol.ndim == 0:
        raise ParameterError("label() needs an image with at least one dimension, got a 0-d array")
    check_single_channel(vol, "label()")
    connectivity = _check_connectivity(connectivity, vol.ndim)
    info = tilemeta.info_of(vol)
    data = _mask_of(vol)
    if info is None:
        labels, _ = _klabel.label(data, connectivity)
        return like(labels, vol)
    # A tile: label its core only; join merges the cores (see join_labels).
    local, n = _klabel.label(data[info.core_in_tile], connectivity)
    dtype = _klabel.label_dtype(math.prod(info.full_shape))
    if tuple(data.shape) == tuple(info.core_shape):
        out = local.astype(dtype, copy=False)
    else:
        out = np.zeros(data.shape, dtype)
        out[info.core_in_tile] = local
    first = _klabel.first_flat_index(local, n, origin=info.origin, shape=info.full_shape)
    result = like(out, vol)
    result.attrs[LABELS_KEY] = LabelTile(int(n), connectivity, first)
    return result


class LabelJoin(TileJoin):
    """The result kind of tiles labelled by :func:`label`: labels merged across tiles.

    Tiles arrive in any order. Each core is written at once with
    *provisional* ids, its local labels plus the number of voxels of the
    tiles before it in raster order (unique, and below the volume's size).
    :meth:`finish` reads the two hyperplanes on both sides of every tile
    boundary (faces, edges and corners alike), unions the ids that touch with
    the tiles' connectivity, renumbers the components ``1..N`` in raster order
    of their first voxel and rewrites every core with its final labels: the
    result is identical to labelling the whole volume, whatever the order of
    arrival. When :func:`regionprops` ran on the tiles, their statistics are
    aggregated into the :class:`~florin.regions.Regions` of the whole volume.
    """

    name = "labels"
    #: A resumed run restores the provisional labels and each tile's :class:`LabelTile` (kept with its record).
    resumable = True

    @classmethod
    def claims(cls, tile) -> bool:
        return isinstance(getattr(tile, "attrs", None), dict) and LABELS_KEY in tile.attrs

    def __init__(self, first, *, infos, like=None, out=None, allocate=None):
        super().__init__(first, infos=infos, like=like, out=out, allocate=allocate)
        self.full_shape = tuple(self.infos[0].full_shape)
        self.dtype = _klabel.label_dtype(math.prod(self.full_shape))
        self.offsets, offset = {}, 0
        for info in sorted(self.infos, key=lambda i: i.index):
            self.offsets[info.index] = offset
            offset += math.prod(info.core_shape)
        self.connectivity = first.attrs[LABELS_KEY].connectivity
        self.metas, self.placed = {}, {}

    def add(self, tile, info) -> None:
        meta = tile.attrs[LABELS_KEY]
        if meta.connectivity != self.connectivity:
            raise PipelineError(
                f"tiles were labelled with different connectivities {sorted({self.connectivity, meta.connectivity})}"
            )
        if info.index not in self.offsets or info.index in self.metas:
            raise PipelineError(f"join got the tile at origin {info.origin} twice, or a tile of another volume")
        if self.out is None:
            self.out = self.allocate(self.full_shape, self.dtype)
        core = np.asarray(core_of(tile, info))
        offset = self.dtype.type(self.offsets[info.index])
        self.out[info.core_slices] = np.where(core != 0, core.astype(self.dtype) + offset, self.dtype.type(0))
        self.metas[info.index], self.placed[info.index] = meta, info

    def restore(self, info, state=None) -> None:
        if not isinstance(state, LabelTile) or info.index not in self.offsets:
            raise PipelineError(f"the record of the labelled tile at origin {info.origin} is missing; "
                                "remove the run's .florin-partial folder or run without resume")
        if self.out is None:
            self.out = self.allocate(self.full_shape, self.dtype)
        self.metas[info.index], self.placed[info.index] = state, info

    def state(self, info):
        return self.metas[info.index]

    def rewrites(self) -> bool:
        return True  # finish() turns the provisional labels into the final ones in place

    def _compact(self, ids, offsets, bases):
        """Provisional ids to dense ones (``local + base``, bases in tile order); 0 stays 0."""
        ids = np.asarray(ids).astype(np.int64, copy=False)
        t = np.maximum(np.searchsorted(offsets, ids, side="left") - 1, 0)
        return np.where(ids != 0, ids - offsets[t] + bases[t], 0)

    def finish(self):
        order = sorted(self.metas)
        covered = sum(math.prod(self.placed[i].core_shape) for i in order)
        if covered != math.prod(self.full_shape):
            raise PipelineError(
                f"the labelled tiles cover {covered} of the {math.prod(self.full_shape)} voxels; a tile is missing"
            )
        out = self.out
        offsets = np.array([self.offsets[i] for i in order], np.int64)
        counts = np.array([self.metas[i].n for i in order], np.int64)
        bases = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        n_prov = int(counts.sum())
        # pairs across every tile boundary hyperplane (covers faces, edges and corners)
        pairs = [np.zeros((0, 2), np.uint64)]
        for axis in range(len(self.full_shape)):
            for e in sorted({info.origin[axis] for info in self.placed.values() if info.origin[axis] > 0}):
                lo = (slice(None),) * axis + (e - 1,)
                hi = (slice(None),) * axis + (e,)
                a = self._compact(out[lo], offsets, bases).astype(self.dtype)
                b = self._compact(out[hi], offsets, bases).astype(self.dtype)
                pairs.append(_klabel.boundary_pairs(a, b, self.connectivity))
        # union-find, then renumber in raster order of first voxels
        relabel = _klabel.merge_pairs(np.concatenate(pairs), n_prov)
        firsts = [np.asarray(self.metas[i].first, np.int64) for i in order]
        first = np.concatenate(firsts) if firsts else np.zeros(0, np.int64)
        relabel = _klabel.renumber_by_first_voxel(relabel, first).astype(self.dtype, copy=False)
        for i, base in zip(order, bases.tolist(), strict=True):
            sl = self.placed[i].core_slices
            ids = np.asarray(out[sl]).astype(np.int64, copy=False)
            out[sl] = relabel[np.where(ids != 0, ids - self.offsets[i] + base, 0)]
        result = wrap_joined(out, self.like, self.first)
        result.attrs.pop(LABELS_KEY, None)
        measured = [self.metas[i].stats is not None for i in order]
        if any(measured):
            if not all(measured):
                raise PipelineError("regionprops() ran on some tiles only; run it on every tile or after the join")
            return Regions.from_stats(_aggregate([self.metas[i].stats for i in order], relabel), result)
        return result


register_join(LabelJoin)


def join_labels(tiles, infos, *, like=None, out=None):
    """Join tiles labelled by :func:`label`, merging labels across tiles (see :class:`LabelJoin`).

    Parameters
    ----------
    tiles : list of xarray.DataArray
        Labelled tiles, whole or cropped to their cores.
    infos : list of TileInfo
        Their tile metadata, in the same order.
    like : xarray.DataArray, optional
        Volume whose dims and coords the result takes.
    out : array_like, optional
        Where to write (e.g. an on-disk dataset); allocated when omitted.

    Returns
    -------
    xarray.DataArray, or Regions when :func:`regionprops` ran on the tiles.
    """
    tiles = list(tiles)
    if not tiles:
        raise PipelineError("join got no tiles")
    if not all(LabelJoin.claims(t) for t in tiles):
        raise PipelineError("join got a mix of labelled and unlabelled tiles; label every tile or none")
    joiner = LabelJoin(tiles[0], infos=sorted(infos, key=lambda i: i.index), like=like, out=out)
    for t, info in zip(tiles, infos, strict=True):
        joiner.add(t, info)
    return joiner.finish()


def _aggregate(tile_stats, relabel):
    """Statistics of the merged labels from per-tile statistics of local labels.

    ``tile_stats[t]`` describes tile ``t``'s local labels ``1..n_t`` whose
    provisional ids follow those of the tiles before it; ``relabel`` maps
    provisional ids to the merged labels ``1..N``.
    """
    n = int(relabel.max()) if relabel.size > 1 else 0
    gid = relabel[1:].astype(np.int64) - 1  # provisional id p -> row of label relabel[p]
    keys = ("area", "bbox_min", "bbox_max", "coord_sum", "intensity_sum", "intensity_min", "intensity_max")
    cat = {k: np.concatenate([st[k] for st in tile_stats]) for k in keys if k in tile_stats[0]}
    ndim = cat["bbox_min"].shape[1]
    area = np.zeros(n, np.int64)
    np.add.at(area, gid, cat["area"])
    bmin = np.full((n, ndim), np.iinfo(np.int64).max, np.int64)
    np.minimum.at(bmin, gid, cat["bbox_min"])
    bmax = np.full((n, ndim), -1, np.int64)
    np.maximum.at(bmax, gid, cat["bbox_max"])
    csum = np.zeros((n, ndim), np.int64)
    np.add.at(csum, gid, cat["coord_sum"])
    out = {
        "label": np.arange(1, n + 1, dtype=np.int64),
        "area": area,
        "bbox_min": bmin,
        "bbox_max": bmax,
        "coord_sum": csum,
        "centroid": csum / np.maximum(area, 1)[:, None],
    }
    if "intensity_sum" in cat:
        isum = np.zeros(n)
        np.add.at(isum, gid, cat["intensity_sum"])
        imin = np.full(n, np.inf)
        np.minimum.at(imin, gid, cat["intensity_min"])
        imax = np.full(n, -np.inf)
        np.maximum.at(imax, gid, cat["intensity_max"])
        out.update(
            intensity_sum=isum, intensity_min=imin, intensity_max=imax, intensity_mean=isum / np.maximum(area, 1)
        )
    return out


# ----------------------------------------------------------------------------------------
# region properties
# ----------------------------------------------------------------------------------------


def _resolve_intensity(intensity, labels):
    if intensity is None:
        return None
    vol = _intensity_volume(
        intensity,
        "regionprops(intensity='input') measures the volume the pipeline started from, "
        "but no pipeline run has an input here; pass the intensity image itself",
    )
    if tuple(vol.shape) != tuple(labels.shape):
        raise ParameterError(
            f"regionprops(): the intensity image has shape {tuple(vol.shape)} but the labels have "
            f"{tuple(labels.shape)}; they must match voxel for voxel"
        )
    if vol.dtype.kind not in "biuf":
        raise ParameterError(f"regionprops(): the intensity image must be real-valued, got {vol.dtype}")
    return vol


def _stats(labels, intensity, slab):
    """region_stats of the whole volume, or of slabs combined with combine_stats."""
    # .data once each: on a lazily read file each .data reads it again (the whole-volume pass below reuses them)
    ldata, idata = labels.data, None if intensity is None else intensity.data
    in_memory = isinstance(ldata, np.ndarray) and (intensity is None or isinstance(idata, np.ndarray))
    nz = labels.shape[0] if labels.ndim else 1
    if slab is None:
        if in_memory:
            slab = nz
        else:
            per_slice = max(math.prod(labels.shape[1:]), 1)
            slab = max(1, _SLAB_VOXELS // per_slice)
    total = None
    for start in range(0, nz, slab):
        sl = slice(start, min(start + slab, nz))
        part = np.asarray(labels[sl]) if slab < nz else np.asarray(ldata)
        if part.size == 0:
            continue
        if not np.issubdtype(part.dtype, np.integer):
            raise ParameterError(
                f"regionprops() needs an integer label volume, got {part.dtype}; "
                "label a mask first with florin.conncomp.label()"
            )
        n = int(part.max())
        if np.issubdtype(part.dtype, np.signedinteger) and int(part.min()) < 0:
            raise ParameterError("regionprops(): labels must be >= 0 (0 is background)")
        img = None
        if intensity is not None:
            img = np.asarray(intensity[sl]) if slab < nz else np.asarray(idata)
        origin = (start,) + (0,) * (labels.ndim - 1)
        stats = region_stats(part, n, img, origin=origin)
        total = stats if total is None else combine_stats(total, stats)
    if total is None:
        total = region_stats(
            np.zeros((1,) * labels.ndim, np.uint8), 0, None if intensity is None else np.zeros((1,) * labels.ndim)
        )
    return total


def _tile_intensity(intensity, info):
    """The intensity of a tile's core, for regionprops on a tile."""
    if intensity is None:
        return None
    vol = _intensity_volume(
        intensity,
        "regionprops(intensity='input') on tiles needs the run's input volume, which this worker "
        "does not have (process and MPI workers); pass the image or its path, or measure after the join",
    )
    if tuple(vol.shape) != tuple(info.full_shape):
        raise ParameterError(
            f"regionprops(): the intensity image has shape {tuple(vol.shape)} but the tiled volume has "
            f"{tuple(info.full_shape)}; they must match voxel for voxel"
        )
    return np.asarray(vol[info.core_slices])


def _regionprops_tile(vol, info, intensity):
    meta = vol.attrs.get(LABELS_KEY)
    if meta is None:
        raise ParameterError(
            "regionprops() on a tile needs conncomp.label() before it in the same tiled pipeline "
            "(the join merges the labels and their statistics); or run regionprops() after the join"
        )
    data = np.asarray(vol)
    core = data if tuple(data.shape) == tuple(info.core_shape) else data[info.core_in_tile]
    stats = region_stats(core, meta.n, _tile_intensity(intensity, info), origin=info.origin)
    out = vol.copy(deep=False)
    out.attrs = {**vol.attrs, LABELS_KEY: replace(meta, stats=stats)}
    return out


def _intensity_param(intensity, intensity_image):
    """``intensity=``, or scikit-image's name for it, ``intensity_image=``; both given is a ParameterError."""
    if intensity_image is None:
        return intensity
    if intensity is not None:
        raise ParameterError(
            "regionprops(): pass intensity= or intensity_image= (scikit-image's name for the same image), not both"
        )
    return intensity_image


def _regionprops_params(params):
    intensity = _intensity_param(params["intensity"], params["intensity_image"])
    if intensity is None or isinstance(intensity, str | os.PathLike) or hasattr(intensity, "shape"):
        return
    raise ParameterError(
        f"regionprops(): intensity must be None, 'input', a path or an image array, got {type(intensity).__name__}"
    )


def _regionprops_blockwise(label_image, *, allocate, blocks, map, intensity=None, slab=None, intensity_image=None):
    """``regionprops`` block by block (:func:`florin.blockwise.regionprops`), for volumes above the memory budget."""
    intensity = _intensity_param(intensity, intensity_image)
    return blockwise.regionprops(as_volume(label_image), intensity, blocks=blocks, map=map)


@checked(check=_regionprops_params, per_item=False, takes_merged_tiles=True, kind="reduce",
         blockwise=_regionprops_blockwise)
def regionprops(label_image, *, intensity=None, slab=None, intensity_image=None):
    """Measure every labelled object of a label volume.

    The statistics are computed in one vectorized pass over the volume
    (:func:`florin._kernels.regions.region_stats`), not with a Python loop per
    object. A volume that is not in memory (memory-mapped, on disk, dask) is
    measured in slabs along its first axis whose statistics are aggregated
    (:func:`~florin._kernels.regions.combine_stats`), so it never has to fit
    in memory.

    Parameters
    ----------
    label_image : array_like or xarray.DataArray
        Label volume (integers, 0 = background), e.g. from :func:`label`; named
        as in scikit-image, and like every florin operator's image it comes
        first and positionally.
    intensity : None, array_like, xarray.DataArray, str or path-like
        Intensity image for ``intensity_mean``/``_min``/``_max``/``_sum``:
        an array of the labels' shape, a file to read, or ``'input'``: the
        volume the running pipeline started from (what ``florin.load()`` read
        or the array the pipeline was called with).
    slab : int, optional
        First-axis slices measured at a time. Default: all at once for volumes
        in memory, about 2**26 voxels otherwise.
    intensity_image : optional
        scikit-image's name for ``intensity``, taking the same values; give one
        of the two (both is a :class:`~florin.errors.ParameterError`).

    Returns
    -------
    Regions
        A collection of :class:`~florin.regions.Region` objects, one per
        label present, in label order. Each region has ``label``, ``area``
        (voxels), ``bbox`` (mins then exclusive maxes, as scikit-image),
        ``depth``/``height``/``width`` (extents along the last three axes;
        2-D: ``height``/``width``), ``centroid`` (voxels), ``physical_volume``
        and ``physical_centroid`` (from the voxel spacing, see
        :func:`florin.get_spacing`) and, with an intensity image,
        ``intensity_mean``, ``intensity_min``, ``intensity_max`` and
        ``intensity_sum``. See :class:`~florin.regions.Regions` for the table,
        ``to_dataframe()`` and ``to_csv()``.

        On a tile labelled by :func:`label` in the same tiled pipeline it
        returns the tile with its statistics attached instead; the join then
        yields the Regions of the whole volume (see the module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([[1, 1, 0],
    ...                    [0, 2, 2],
    ...                    [0, 0, 2]])
    >>> regions = regionprops(labels)
    >>> len(regions), regions[1].area, regions[1].bbox, regions[1].height
    (2, 3, (1, 1, 3, 3), 2)
    >>> regions.to_dataframe()[["label", "area", "width"]]
       label  area  width
    0      1     2      2
    1      2     3      2
    """
    vol = as_volume(label_image)
    if vol.ndim == 0:
        raise ParameterError("regionprops() needs a label volume with at least one dimension")
    intensity = _intensity_param(intensity, intensity_image)
    info = tilemeta.info_of(vol)
    if info is not None:
        return _regionprops_tile(vol, info, intensity)
    if slab is not None and (isinstance(slab, bool) or not isinstance(slab, numbers.Integral) or slab < 1):
        raise ParameterError(f"regionprops(): slab must be an integer >= 1, got {slab!r}")
    intensity = _resolve_intensity(intensity, vol)
    if vol.dtype == bool:
        raise ParameterError(
            "regionprops() needs an integer label volume, got a mask; label it first with florin.conncomp.label()"
        )
    stats = _stats(vol, intensity, slab)
    return Regions.from_stats(stats, vol)
