"""An operator: Sauvola's local threshold, tiled exactly thanks to its declared halo.

An operator is a function ``func(image, *params)`` turned into a pipeline step
factory by :func:`florin.florinate`. Three things make it a good citizen:

1. **Image first, options keyword-only**, so that ``sauvola(window_size=31)``
   binds parameters (checked against the signature when the pipeline is built:
   ``sauvola(window_sise=31)`` fails right away and suggests ``window_size``).
2. **Labels kept**: return a DataArray with the input's dims, coords and attrs
   (``image.copy(data=...)``); tile metadata lives in the attrs.
3. **A declared halo**: how many voxels of context on each side the result of a
   voxel depends on. ``florin.tile(..., halo='auto')`` adds that much context to
   every tile, which makes the tiled result equal the whole-volume result.
"""

from __future__ import annotations

import numbers

import numpy as np
import xarray as xr
from skimage.filters import threshold_sauvola

import florin
from florin.errors import ParameterError

__all__ = ["sauvola"]


def _window(window_size, ndim) -> tuple:
    """``window_size`` as one odd int per axis."""
    if isinstance(window_size, numbers.Integral):
        window = (int(window_size),) * ndim
    else:
        window = tuple(int(w) for w in window_size)
    if len(window) != ndim or any(w < 1 or w % 2 == 0 for w in window):
        raise ParameterError(
            f"sauvola: window_size={window_size!r} must be an odd int >= 1, or one per axis of the {ndim}-D image"
        )
    return window


def _halo(params, full_shape):
    """The halo: half the window on each axis (called with the bound parameters)."""
    return tuple(w // 2 for w in _window(params["window_size"], len(full_shape)))


@florin.florinate(name="example.sauvola", halo=_halo)
def sauvola(image, *, window_size=15, k=0.2, r=128.0, polarity="dark"):
    """Segment with Sauvola's local threshold (scikit-image's ``threshold_sauvola``).

    The threshold at each voxel is ``m * (1 + k * (s / r - 1))`` where ``m`` and
    ``s`` are the mean and standard deviation in a ``window_size`` window.

    Parameters
    ----------
    image : array_like or xarray.DataArray
        N-D image.
    window_size : int or tuple of int
        Odd window side per axis (one int for all axes). Declares a halo of
        ``window_size // 2``.
    k : float
        Sensitivity; larger values lower the threshold.
    r : float
        Dynamic range of the standard deviation. Fixed (128 suits 8-bit data)
        rather than computed from the image, because a value computed per tile
        would make tiles disagree.
    polarity : {'dark', 'bright'}
        ``'dark'`` (default, as FLoRIN) marks voxels at or below the threshold,
        ``'bright'`` those above it.

    Returns
    -------
    xarray.DataArray or numpy.ndarray
        Boolean mask; a DataArray with the input's labels when given one.

    Notes
    -----
    On integer images the window sums are exact, so tiled and whole-volume
    results are identical; on float images a voxel within rounding error of its
    threshold may differ.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.full((5, 7), 200, np.uint8); image[2, 3] = 20
    >>> sauvola(image, window_size=3).astype(int)
    array([[0, 0, 0, 0, 0, 0, 0],
           [0, 0, 0, 0, 0, 0, 0],
           [0, 0, 0, 1, 0, 0, 0],
           [0, 0, 0, 0, 0, 0, 0],
           [0, 0, 0, 0, 0, 0, 0]])

    As a pipeline step (parameters bound, image passed by the pipeline):

    >>> step = sauvola(window_size=3, k=0.3)
    >>> florin.Serial(step)(image).values.sum()
    np.int64(1)
    """
    if polarity not in ("dark", "bright"):
        raise ParameterError(f"sauvola: polarity={polarity!r} must be 'dark' or 'bright'")
    values = np.asarray(image)
    window = _window(window_size, values.ndim)
    threshold = threshold_sauvola(values, window_size=window, k=k, r=r)
    mask = values <= threshold if polarity == "dark" else values > threshold
    if isinstance(image, xr.DataArray):
        return image.copy(data=mask)  # same dims, coords and attrs (tile metadata included)
    return mask
