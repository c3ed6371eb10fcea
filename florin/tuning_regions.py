"""The crops around annotated regions that :mod:`florin.tuning` and :mod:`florin.tuning_classes` score on.

A :class:`_Region` is one annotated region with the context the largest halo
of the search space needs; :func:`declared_halo` is the context a parameter
set's per-voxel steps declare. Both tuning modules build on this one, so
neither imports the other back.
"""

from __future__ import annotations

import functools
from collections import OrderedDict

import numpy as np
from scipy import ndimage as ndi

import florin
import florin.morphology as morphology
import florin.thresholding as thresholding
from florin._kernels.ndnt import ndnt_mask
from florin.morphology import _binary_opening

__all__ = ["declared_halo", "opening_footprint"]

UNLABELED, BACKGROUND, FOREGROUND = 0, 1, 2


def opening_footprint(radius: int, ndim: int):
    """The footprint of an opening of ``radius``: None (the default cross) for 1, the cross iterated beyond.

    Examples
    --------
    >>> opening_footprint(1, 2) is None
    True
    >>> opening_footprint(2, 2).astype(int).tolist()[2]
    [1, 1, 1, 1, 1]
    """
    if radius <= 1:
        return None
    return ndi.iterate_structure(ndi.generate_binary_structure(ndim, 1), int(radius)).astype(np.uint8)


def _per_voxel_steps(params) -> list:
    """NDNT and the opening of a parameter set: the steps that run tile by tile."""
    shape = tuple(int(s) for s in params["shape"])
    steps = [thresholding.ndnt(shape=shape, threshold=float(params["threshold"]), polarity=params["polarity"])]
    if params.get("opening", 0):
        footprint = opening_footprint(int(params["opening"]), len(shape))
        steps.append(morphology.binary_opening() if footprint is None else morphology.binary_opening(footprint=footprint))
    return steps


@functools.lru_cache(maxsize=1024)
def declared_halo(shape, opening, full_shape) -> tuple[int, ...]:
    """The context NDNT of ``shape`` and an opening of radius ``opening`` need, as their steps declare it.

    The sum of the halos of the per-voxel steps (:meth:`florin.Pipeline.halo`),
    the same context a tiled run adds; a crop of the annotated region grown by
    it gives the whole-volume result there.

    Examples
    --------
    >>> declared_halo((9, 33, 33), 2, (48, 192, 192))
    (8, 20, 20)
    """
    params = {"shape": shape, "threshold": 0.25, "polarity": "dark", "opening": opening}
    return tuple(int(h) for h in florin.Serial(*_per_voxel_steps(params)).halo(tuple(full_shape)))


def _object_counts(truth_ids, pred_ids):
    """(matched, n_pred, n_true) of instance ids on the annotated voxels, matched when IoU > 0.5."""
    t = truth_ids.astype(np.int64, copy=False)
    p = pred_ids.astype(np.int64, copy=False)
    t_ids, t_sizes = np.unique(t[t > 0], return_counts=True)
    p_ids, p_sizes = np.unique(p[p > 0], return_counts=True)
    both = (t > 0) & (p > 0)
    if not both.any():
        return 0, len(p_ids), len(t_ids)
    pairs, inter = np.unique(np.stack([t[both], p[both]]), axis=1, return_counts=True)
    ts = t_sizes[np.searchsorted(t_ids, pairs[0])]
    ps = p_sizes[np.searchsorted(p_ids, pairs[1])]
    iou = inter / (ts + ps - inter)
    return int(np.count_nonzero(iou > 0.5)), len(p_ids), len(t_ids)


class _Region:
    """One annotated region (a run of annotated slices along axis 0) and its context.

    The region reads the crop that the largest halo of the search space needs
    once; each configuration computes only the part its own halo needs.
    """

    def __init__(self, image, annotation, instances, box, halo, connectivity, *, rows=None, cache_bytes=256 << 20):
        full = image.shape
        self.full_shape = full
        self.box = box  # slices of the annotated bounding box in the volume
        self.crop = _grow(box, halo, full)
        self.image = np.ascontiguousarray(np.asarray(image[self.crop]))
        self.annotation = np.array(annotation[self.crop])
        if rows is not None:  # only the member runs are scored here (another set's runs may lie between)
            keep = np.zeros(self.annotation.shape[0], bool)
            for lo, hi in rows:
                keep[lo - self.crop[0].start:hi - self.crop[0].start] = True
            self.annotation[~keep] = UNLABELED
        self.instances = None if instances is None else np.asarray(instances[self.crop])
        self.structure = ndi.generate_binary_structure(image.ndim, connectivity)
        self.cache: OrderedDict = OrderedDict()  # recent masks: other min sizes reuse them
        self.cache_bytes = cache_bytes
        self.computed = 0  # voxels computed so far

    def view(self, halo):
        """(slices into the crop, open faces) of the box grown by ``halo``."""
        grown = _grow(self.box, halo, self.full_shape)
        local = tuple(slice(g.start - c.start, g.stop - c.start) for g, c in zip(grown, self.crop, strict=True))
        # A face inside the volume cuts objects: their full size is unknown there.
        faces = [(g.start > 0, g.stop < n) for g, n in zip(grown, self.full_shape, strict=True)]
        return local, faces

    def _objects(self, shape, threshold, polarity, opening):
        key = (shape, threshold, polarity, opening)
        hit = self.cache.get(key)
        if hit is not None:
            self.cache.move_to_end(key)
            return hit
        local, faces = self.view(declared_halo(shape, opening, self.full_shape))
        mask = self.mask(self.image[local], shape, threshold, polarity, opening)
        self.computed += mask.size
        ann = self.annotation[local]
        where = ann > 0
        truth = ann[where] == FOREGROUND
        ids = None if self.instances is None else self.instances[local][where]
        hit = {"mask": mask, "faces": faces, "where": where, "truth": truth, "ids": ids, "pred": mask[where]}
        self.cache[key] = hit
        while len(self.cache) > 1 and sum(h["mask"].nbytes for h in self.cache.values()) > self.cache_bytes:
            self.cache.popitem(last=False)
        return hit

    def _labels(self, hit):
        """Objects of a cached mask (computed when a minimum size or object F1 needs them)."""
        if "at" not in hit:
            labels, n = ndi.label(hit["mask"], self.structure)
            sizes = np.bincount(labels.ravel(), minlength=n + 1)
            cut = np.zeros(n + 1, bool)
            for axis, (lo, hi) in enumerate(hit["faces"]):
                for side, is_open in ((0, lo), (-1, hi)):
                    if is_open:
                        cut[np.take(labels, side, axis=axis)] = True
            cut[0] = False
            hit.update(at=labels[hit["where"]], sizes=sizes, cut=cut)  # the label array itself is not kept
        return hit

    @staticmethod
    def mask(image, shape, threshold, polarity, opening):
        """The NDNT (+ opening) mask of ``image``, exact where the halo is inside it."""
        mask = ndnt_mask(image, shape, threshold, polarity == "bright", threads=1)
        if opening:
            footprint = opening_footprint(opening, image.ndim)
            if footprint is None:  # binary_opening's default: the radius-1 cross
                footprint = ndi.generate_binary_structure(image.ndim, 1)
            mask = _binary_opening(mask, footprint.astype(bool), "ignore")
        return mask

    def prediction(self, params):
        """(image, annotation, predicted mask) on the annotated box, for previews."""
        hit = self._objects(params["shape"], params["threshold"], params["polarity"], params["opening"])
        local, _ = self.view(declared_halo(params["shape"], params["opening"], self.full_shape))
        mask = hit["mask"]
        if params["min_size"]:
            self._labels(hit)
            mask = self._keep(hit, params["min_size"])[ndi.label(mask, self.structure)[0]]
        inner = tuple(slice(b.start - c.start - v.start, b.stop - c.start - v.start)
                      for b, c, v in zip(self.box, self.crop, local, strict=True))
        return self.image[local][inner], self.annotation[local][inner], mask[inner]

    @staticmethod
    def _keep(hit, min_size):
        keep = (hit["sizes"] >= min_size) | hit["cut"]
        keep[0] = False
        return keep

    def counts(self, params, metric):
        hit = self._objects(params["shape"], params["threshold"], params["polarity"], params["opening"])
        if params["min_size"] or metric == "object_f1":
            self._labels(hit)
            pred = self._keep(hit, params["min_size"])[hit["at"]]
        else:
            pred = hit["pred"]
        truth = hit["truth"]
        if metric == "object_f1":
            ids = hit["ids"]
            if ids is None:
                if "truth_ids" not in hit:
                    full = np.zeros(hit["where"].shape, bool)
                    full[hit["where"]] = truth
                    hit["truth_ids"] = ndi.label(full, self.structure)[0][hit["where"]]
                ids = hit["truth_ids"]
            return _object_counts(ids, np.where(pred, hit["at"], 0))
        return (int(np.count_nonzero(pred & truth)), int(np.count_nonzero(pred & ~truth)),
                int(np.count_nonzero(~pred & truth)))


def _grow(box, halo, full):
    return tuple(slice(max(0, s.start - h), min(n, s.stop + h)) for s, h, n in zip(box, halo, full, strict=True))
