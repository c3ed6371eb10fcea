"""Argument validation for NDNT (plain numpy, no xarray, no numba).

The public NDNT operator calls :func:`validate_ndnt_args` before it calls the
kernel :func:`florin._kernels.ndnt.ndnt_mask`, which trusts what it gets.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from florin.errors import ParameterError

__all__ = ["validate_ndnt_args", "default_shape", "POLARITIES"]

POLARITIES = ("dark", "bright")

_FINITE_CHUNK = 1 << 23  # voxels per np.isfinite call: bounds the temporary to 8 MiB


def default_shape(full_shape: Sequence[int]) -> tuple[int, ...]:
    """Default NDNT neighborhood: ``max(1, round(n / 8))`` per axis.

    Python's ``round`` is used literally, so halves go to the even neighbour
    (banker's rounding): ``n = 12`` gives ``round(1.5) = 2`` and ``n = 20`` gives
    ``round(2.5) = 2``.

    Examples
    --------
    >>> default_shape((64, 512, 4))
    (8, 64, 1)
    >>> default_shape((12, 20))
    (2, 2)
    """
    return tuple(max(1, round(int(n) / 8)) for n in full_shape)


def _is_int(v) -> bool:
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_image(image) -> np.ndarray:
    a = np.asarray(image)  # no copy for ndarrays and memmaps
    dt = a.dtype
    if dt.kind == "c":
        raise ParameterError(f"image: complex dtype {dt} is not supported; pass a real image (e.g. its abs())")
    if dt.kind not in "biuf":
        raise ParameterError(f"image: dtype {dt} is not numeric; NDNT needs a bool, integer or float image")
    if dt.kind == "f" and dt.itemsize > 8:
        raise ParameterError(f"image: dtype {dt} is not supported; convert it to float64")
    if a.ndim == 0:
        raise ParameterError("image: must have at least one dimension, got a 0-d array")
    if a.size == 0:
        raise ParameterError(f"image: is empty (shape {a.shape}); NDNT needs at least one voxel")
    return a


def _count_nonfinite(a: np.ndarray) -> int:
    """Count NaN/inf voxels reading ``a`` in slabs along axis 0 (small temporaries)."""
    n0 = a.shape[0]
    per = max(1, a.size // n0)
    step = max(1, _FINITE_CHUNK // per)
    bad = 0
    for i in range(0, n0, step):
        bad += int(a[i : i + step].size - np.count_nonzero(np.isfinite(a[i : i + step])))
    return bad


def _check_threshold(threshold) -> float:
    valid = "a fraction in [0, 1] or a percentage in (1, 100]"
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (numbers.Real, np.integer, np.floating)):
        raise ParameterError(f"threshold: must be {valid}, got {threshold!r}")
    t = float(threshold)
    if math.isnan(t) or t < 0 or t > 100:
        raise ParameterError(f"threshold: must be {valid}, got {threshold!r}")
    return t if t <= 1 else t / 100.0


def _check_shape(shape, ndim: int, full_shape) -> tuple[int, ...]:
    if shape is None:
        return default_shape(full_shape)
    if _is_int(shape):
        shape = (shape,) * ndim
    elif isinstance(shape, (str, bytes)) or not isinstance(shape, (Sequence, np.ndarray)):
        raise ParameterError(
            f"shape: must be an int or a sequence of {ndim} ints >= 1 (one per axis), or None, got {shape!r}"
        )
    shape = tuple(shape)
    if len(shape) != ndim:
        raise ParameterError(f"shape: needs {ndim} entries (one per axis) for a {ndim}-D image, got {shape!r}")
    if not all(_is_int(v) for v in shape):
        raise ParameterError(f"shape: entries must be integers >= 1, got {shape!r}")
    if any(int(v) < 1 for v in shape):
        raise ParameterError(f"shape: entries must be >= 1 (1 disables an axis), got {shape!r}")
    return tuple(int(v) for v in shape)


def validate_ndnt_args(image, shape, threshold, polarity="dark", *, full_shape=None, check_finite=True):
    """Validate NDNT arguments and normalise them for the kernel.

    Parameters
    ----------
    image : array_like
        The image (or tile); must be non-empty, at least 1-D, with a bool,
        integer or float (up to float64) dtype.
    shape : int, sequence of int, or None
        Neighborhood shape; an int applies to every axis; ``None`` takes the
        default ``max(1, round(n / 8))`` of each axis of ``full_shape``.
    threshold : float
        ``t`` in [0, 1] is a fraction, ``t`` in (1, 100] a percentage.
    polarity : {'dark', 'bright'}
        Which side of the local mean is foreground.
    full_shape : sequence of int, optional
        Shape of the whole volume when ``image`` is a tile, so that the default
        neighborhood is the whole volume's; defaults to ``image.shape``.
    check_finite : bool
        Count NaN/inf voxels of a float image (reading it in slabs) and raise if
        there are any.  The kernel checks this too, at no extra cost, after its
        run; pass ``False`` to skip the extra read.

    Returns
    -------
    shape : tuple of int
        One int >= 1 per axis.
    fraction : float
        The threshold as a fraction in [0, 1].
    bright : bool
        ``True`` for polarity ``'bright'``.

    Raises
    ------
    ParameterError
        Naming the offending parameter (``image``, ``shape``, ``threshold``,
        ``polarity`` or ``full_shape``) and what would be valid.

    Examples
    --------
    >>> import numpy as np
    >>> validate_ndnt_args(np.zeros((16, 64)), None, 25, "dark")
    ((2, 8), 0.25, False)
    >>> validate_ndnt_args(np.zeros((16, 64)), 5, 0.1, "bright")
    ((5, 5), 0.1, True)
    """
    a = _check_image(image)
    if full_shape is None:
        full_shape = a.shape
    else:
        if _is_int(full_shape) or not isinstance(full_shape, (Sequence, np.ndarray)):
            raise ParameterError(f"full_shape: must be a sequence of {a.ndim} ints >= 1, got {full_shape!r}")
        full_shape = tuple(full_shape)
        if len(full_shape) != a.ndim or not all(_is_int(v) and int(v) >= 1 for v in full_shape):
            raise ParameterError(f"full_shape: must be a sequence of {a.ndim} ints >= 1, got {full_shape!r}")
    if not isinstance(polarity, str) or polarity not in POLARITIES:
        raise ParameterError(f"polarity: must be 'dark' or 'bright', got {polarity!r}")
    fraction = _check_threshold(threshold)
    shape_t = _check_shape(shape, a.ndim, full_shape)
    if check_finite and a.dtype.kind == "f":
        bad = _count_nonfinite(a)
        if bad:
            raise ParameterError(
                f"image: contains {bad} NaN or infinite voxel(s); NDNT needs finite values "
                "(replace them first, e.g. with numpy.nan_to_num)"
            )
    return shape_t, fraction, polarity == "bright"
