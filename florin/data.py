"""Synthetic data: a deterministic phantom volume with ground truth.

:func:`phantom` draws a micro-CT-like volume of neural tissue: dark
ellipsoidal *cells* and dark tubular *vessels* on a brighter background, with
uneven illumination, blur and noise, together with the instance labels and the
class of every voxel. It is the data of the examples, the docs and the
end-to-end tests: FLoRIN's default pipeline (NDNT with polarity ``dark``, a
binary opening, connected components, region properties and the bounds
classifier with :data:`PHANTOM_CLASSES`) recovers it.

The phantom is pure numpy/scipy; the default (64, 256, 256) volume takes well under two
seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from florin._kernels._ahead import classic_kernels, compile_ahead

__all__ = ["Phantom", "phantom", "PHANTOM_CLASSES", "CLASS_NAMES", "class_accuracy", "compile_demo_ahead", "dice"]

CLASS_NAMES = {1: "cell", 2: "vasculature"}
"""Class id -> name of the phantom's ``classes`` volume (0 is background)."""

PHANTOM_CLASSES = (
    ("cell", {"area": (150, 4000), "depth": (4, 16), "height": (7, 26), "width": (7, 26)}),
    ("vasculature", {}),
)
"""Bounds classifiers that match the phantom's objects, in order.

``(name, bounds)`` pairs for ``florin.bounds_classifier(name, **bounds)``:
the first match wins and ``(lo, hi)`` is inclusive. ``area`` is in voxels,
``depth``/``height``/``width`` are the bounding-box extents along z/y/x of a
detected object. Cells are ellipsoids with semi-axes of 3-5 voxels along z and
5-9 along y and x (default ``cell_radius``): about 7-11 x 11-19 x 11-19
voxels and 300-1700 voxels in volume (detected: about 5-10 x 9-18 x 9-18
and 300-1600 voxels); vessels run from one side of the volume
to the other, so they are far wider or higher than any cell and fall through
to the default class ``vasculature`` (no bounds: matches everything). Use::

    florin.classify(*(florin.bounds_classifier(n, **b) for n, b in PHANTOM_CLASSES))
"""


@dataclass
class Phantom:
    """A phantom volume and its ground truth (all plain numpy arrays).

    Attributes
    ----------
    image : numpy.ndarray
        The observed volume, ``uint16`` (background around 20000, objects
        around 6000-9000 before illumination; see :func:`phantom`) or
        ``float32`` (background around 1) with ``dtype=np.float32``.
    labels : numpy.ndarray
        ``uint32`` instance ids: cells ``1..n_cells``, then vessels
        ``n_cells + 1..n_cells + n_vessels``; 0 is background. Objects never
        touch each other (at least ``gap`` background voxels between them).
    classes : numpy.ndarray
        ``uint8`` class id per voxel: 0 background, 1 cell, 2 vasculature.
    class_names : dict
        ``{1: 'cell', 2: 'vasculature'}``.
    object_classes : numpy.ndarray
        ``uint8`` class id of each instance: ``object_classes[i - 1]`` is the
        class of label ``i``.
    """

    image: np.ndarray
    labels: np.ndarray
    classes: np.ndarray
    class_names: dict = field(default_factory=lambda: dict(CLASS_NAMES))
    object_classes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))

    @property
    def n_cells(self) -> int:
        """Number of cells placed."""
        return int((self.object_classes == 1).sum())

    @property
    def n_vessels(self) -> int:
        """Number of vessels placed."""
        return int((self.object_classes == 2).sum())

    def __getitem__(self, key):
        # dict-style access: p["image"]
        return getattr(self, key)


def _box(center, half, shape):
    """Slices of the box ``center +- half`` clipped to ``shape``; and its origin."""
    lo = [max(int(np.floor(c - h)), 0) for c, h in zip(center, half, strict=True)]
    hi = [min(int(np.ceil(c + h)) + 1, s) for c, h, s in zip(center, half, shape, strict=True)]
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True)), np.array(lo, float)


def _ellipsoid(center, radii, shape):
    sl, origin = _box(center, radii, shape)
    grids = np.ogrid[tuple(slice(0, s.stop - s.start) for s in sl)]
    r2 = 0.0
    for g, o, c, r in zip(grids, origin, center, radii, strict=True):
        r2 = r2 + ((g + o - c) / r) ** 2
    return sl, r2 <= 1.0


def _vessel(rng, shape, axis, radius, wiggle):
    """A tube along ``axis`` through the whole volume, as (slices, local mask)."""
    ndim = len(shape)
    length = shape[axis]
    t = np.arange(0.0, length, 0.25)
    pts = np.empty((t.size, ndim))
    pts[:, axis] = t
    for a in range(ndim):
        if a == axis:
            continue
        margin = radius + wiggle + 1
        c0 = rng.uniform(margin, max(shape[a] - margin, margin + 1e-3))
        amp = rng.uniform(0.3, 1.0, 2) * wiggle / 2
        per = rng.uniform(0.6, 1.5, 2) * length
        ph = rng.uniform(0, 2 * np.pi, 2)
        pts[:, a] = c0 + (amp[:, None] * np.sin(2 * np.pi * t[None] / per[:, None] + ph[:, None])).sum(0)
    lo = np.maximum(np.floor(pts.min(0) - radius - 1), 0).astype(int)
    hi = np.minimum(np.ceil(pts.max(0) + radius + 2), shape).astype(int)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    box = tuple(hi - lo)
    centre = np.zeros(box, bool)
    idx = np.clip(np.round(pts - lo).astype(int), 0, np.array(box) - 1)
    centre[tuple(idx.T)] = True
    dist = ndi.distance_transform_edt(~centre)
    return sl, dist <= radius


def phantom(
    shape=(64, 256, 256),
    *,
    n_cells: int | None = None,
    n_vessels: int | None = None,
    seed: int = 0,
    cell_radius=((3.0, 5.0), (5.0, 9.0), (5.0, 9.0)),
    vessel_radius=(2.5, 3.5),
    gap: int = 4,
    background: float = 1.0,
    object_level=(0.2, 0.4),
    illumination: float = 0.25,
    blur: float = 0.7,
    noise: float = 0.04,
    dtype=np.uint16,
) -> Phantom:
    """Draw a deterministic synthetic volume of dark cells and vessels.

    Parameters
    ----------
    shape : tuple of int
        2-D ``(y, x)`` or 3-D ``(z, y, x)`` shape. Default ``(64, 256, 256)``.
    n_cells : int, optional
        Number of cells to place (at most; placement gives up on a cell after
        many tries when the volume is crowded). Default: one per 30000 voxels
        (140 for the default shape; 2-D: one per 1500 pixels).
    n_vessels : int, optional
        Number of vessels. Default: one per 48 voxels of the second-largest
        extent, at least 1 (5 for the default shape).
    seed : int
        Seed of :func:`numpy.random.default_rng`; the same arguments give the
        same phantom on every platform.
    cell_radius : sequence of (lo, hi)
        Range of the ellipsoid semi-axes per axis, in voxels (the last
        ``len(shape)`` entries are used).
    vessel_radius : (lo, hi)
        Range of the tube radii, in voxels.
    gap : int
        Minimum number of background voxels between two objects.
    background : float
        Background level before illumination (1 = the ``float32`` scale).
    object_level : (lo, hi)
        Range of object levels, as a fraction of the background; each object
        gets one level (objects are *dark*, as in X-ray micro-CT of neural
        tissue, so FLoRIN's default NDNT polarity ``dark`` finds them).
    illumination : float
        Amplitude of the smooth multiplicative illumination field: the image
        is multiplied by ``1 + illumination * g`` with ``g`` a gradient from
        -1 to 1 across x plus a gentle bend along the other axes.
    blur : float
        Gaussian blur sigma (voxels) applied before the noise.
    noise : float
        Standard deviation of the additive Gaussian noise, as a fraction of
        the background.
    dtype : numpy dtype
        ``uint16`` (default; the ``float32`` image times 20000, rounded) or
        ``float32``.

    Returns
    -------
    Phantom
        ``image``, ``labels``, ``classes``, ``class_names``,
        ``object_classes`` (see :class:`Phantom`); ``p["image"]`` works too.

    Examples
    --------
    >>> p = phantom((16, 64, 64), seed=1)
    >>> p.image.dtype, p.image.shape
    (dtype('uint16'), (16, 64, 64))
    >>> int(p.labels.max()) == p.n_cells + p.n_vessels
    True
    >>> p.class_names
    {1: 'cell', 2: 'vasculature'}
    >>> bool(p.image[p.classes == 1].mean() < p.image[p.classes == 0].mean())
    True
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    if ndim not in (2, 3) or min(shape) < 1:
        raise ValueError(f"phantom shape must be 2-D or 3-D with positive sizes, got {shape}")
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.uint16), np.dtype(np.float32)):
        raise ValueError(f"dtype must be uint16 or float32, got {dtype}")
    size = int(np.prod(shape))
    if n_cells is None:
        n_cells = max(1, size // (30000 if ndim == 3 else 1500))
    if n_vessels is None:
        n_vessels = max(1, sorted(shape)[-2] // 48)
    radii_range = np.array(cell_radius, float)[-ndim:]
    rng = np.random.default_rng(seed)

    forbidden = np.zeros(shape, bool)  # objects dilated by the gap
    objects = []  # (class, slices, local mask)
    ball = ndi.generate_binary_structure(ndim, 1)

    def place(cls, sl, local):
        if forbidden[sl][local].any():
            return False
        objects.append((cls, sl, local))
        pad = tuple(slice(max(s.start - gap, 0), min(s.stop + gap, n)) for s, n in zip(sl, shape, strict=True))
        grown = np.zeros(tuple(p.stop - p.start for p in pad), bool)
        inner = tuple(slice(s.start - p.start, s.stop - p.start) for s, p in zip(sl, pad, strict=True))
        grown[inner] = local
        grown = ndi.binary_dilation(grown, ball, iterations=gap)
        forbidden[pad] |= grown
        return True

    # vessels first (they are long), alternating between the two last axes
    for i in range(n_vessels):
        axis = ndim - 1 - (i % 2)
        for _ in range(50):
            r = rng.uniform(*vessel_radius)
            sl, local = _vessel(rng, shape, axis, r, wiggle=min(12.0, shape[axis] / 8))
            if place(2, sl, local):
                break
    for _ in range(n_cells):
        for _ in range(50):
            radii = rng.uniform(radii_range[:, 0], radii_range[:, 1])
            lo = radii + 1
            hi = np.array(shape) - radii - 2
            if np.any(hi <= lo):
                break
            center = rng.uniform(lo, hi)
            sl, local = _ellipsoid(center, radii, shape)
            if place(1, sl, local):
                break

    # ids: cells first, then vessels
    objects.sort(key=lambda o: o[0])
    labels = np.zeros(shape, np.uint32)
    classes = np.zeros(shape, np.uint8)
    truth = np.full(shape, background, np.float32)
    levels = rng.uniform(*object_level, len(objects))
    for i, ((cls, sl, local), level) in enumerate(zip(objects, levels, strict=True), start=1):
        labels[sl][local] = i
        classes[sl][local] = cls
        truth[sl][local] = background * level
    object_classes = np.array([o[0] for o in objects], np.uint8)

    image = ndi.gaussian_filter(truth, blur) if blur > 0 else truth
    # smooth illumination: gradient across x, gentle bend along the other axes
    field_ = np.ones(shape, np.float32)
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    gx = (2.0 * grids[-1] / max(shape[-1] - 1, 1) - 1.0).astype(np.float32)
    bend = 0.0
    for g, s in zip(grids[:-1], shape[:-1], strict=True):
        bend = bend + 0.3 * np.cos(np.pi * g / max(s - 1, 1)).astype(np.float32)
    field_ = field_ + np.float32(illumination) * (gx + bend) / (1.0 + 0.3 * (ndim - 1))
    image = image * field_
    image += rng.standard_normal(shape, dtype=np.float32) * np.float32(noise * background)
    if dtype == np.uint16:
        image = np.clip(np.rint(image * 20000.0), 0, 65535).astype(np.uint16)
    else:
        image = image.astype(np.float32, copy=False)
    return Phantom(
        image=image,
        labels=labels,
        classes=classes,
        class_names=dict(CLASS_NAMES),
        object_classes=object_classes,
    )


def dice(a, b) -> float:
    """Dice coefficient of two masks.

    Examples
    --------
    >>> print(round(dice([1, 1, 0, 0], [1, 0, 0, 0]), 3))
    0.667
    """
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(a, b).sum() / total


def class_accuracy(true_labels, true_classes_of_objects, predicted_classes) -> float:
    """Fraction of true objects whose majority predicted class (over their voxels) is their true class.

    Examples
    --------
    >>> class_accuracy([0, 1, 1, 2], [1, 2], [0, 1, 1, 1])  # object 2 is predicted as class 1, not 2
    0.5
    """
    true_labels = np.asarray(true_labels)
    predicted = np.asarray(predicted_classes)
    n = int(true_labels.max())
    if n == 0:
        return 1.0
    counts = np.zeros((n + 1, int(predicted.max()) + 1), np.int64)
    np.add.at(counts, (true_labels.ravel(), predicted.ravel()), 1)
    majority = counts[1:, 1:].argmax(axis=1) + 1
    majority[counts[1:, 1:].sum(axis=1) == 0] = 0
    return float(np.mean(majority == np.asarray(true_classes_of_objects)))


def compile_demo_ahead():
    """A context in which a background process compiles the kernels the demo runs after NDNT, on a cold cache.

    See :mod:`florin._kernels._ahead`; on a warm or read-only numba cache it starts nothing.

    Examples
    --------
    >>> import os
    >>> os.environ["FLORIN_COMPILE_AHEAD"] = "0"
    >>> with compile_demo_ahead() as proc:
    ...     print(proc)
    None
    >>> del os.environ["FLORIN_COMPILE_AHEAD"]
    """
    return compile_ahead("florin._kernels._ahead:classic", kernels=classic_kernels())
