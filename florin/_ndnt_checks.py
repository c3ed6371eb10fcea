"""Argument checks for NDNT (plain numpy; the kernel assumes validated input)."""

from __future__ import annotations

import numbers

import numpy as np

from florin.errors import ParameterError

__all__ = ["validate_ndnt_args"]


def validate_ndnt_args(image, shape, threshold, polarity, *, full_shape=None):
    """Return ``(shape_tuple, fraction, bright)`` or raise :class:`ParameterError`."""
    if polarity not in ("dark", "bright"):
        raise ParameterError(f"polarity must be 'dark' or 'bright', got {polarity!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not np.isfinite(threshold):
        raise ParameterError(f"threshold must be a fraction in [0, 1] or a percentage in (1, 100], got {threshold!r}")
    if 0 <= threshold <= 1:
        fraction = float(threshold)
    elif 1 < threshold <= 100:
        fraction = float(threshold) / 100
    else:
        raise ParameterError(f"threshold must be a fraction in [0, 1] or a percentage in (1, 100], got {threshold!r}")
    dtype = np.dtype(image.dtype)
    if dtype.kind not in "biuf":
        raise ParameterError(f"image must have a real numeric dtype, got {dtype}")
    if image.size == 0:
        raise ParameterError(f"image is empty (shape {image.shape})")
    ndim = image.ndim
    full_shape = tuple(image.shape if full_shape is None else full_shape)
    if shape is None:
        # Python's round() as in the definition: max(1, round(n / 8)).
        shape = tuple(max(1, round(n / 8)) for n in full_shape)
    elif isinstance(shape, numbers.Integral):
        shape = (int(shape),) * ndim
    else:
        shape = tuple(shape)
    if len(shape) != ndim or not all(isinstance(s, numbers.Integral) and s >= 1 for s in shape):
        raise ParameterError(f"shape must have {ndim} integers >= 1 (one per axis), got {shape!r}")
    if dtype.kind == "f":
        bad = np.count_nonzero(~np.isfinite(image))
        if bad:
            raise ParameterError(f"image has {bad} NaN or infinite voxels; NDNT needs finite values")
    return tuple(int(s) for s in shape), fraction, polarity == "bright"
