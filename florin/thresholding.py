"""Thresholding operators: N-Dimensional Neighborhood Thresholding (NDNT).

NDNT marks a voxel as foreground when it is darker (or brighter) than the mean
of its neighbourhood by a fraction ``threshold``. The normative definition is
in the architecture brief; the numba kernel lives in
:mod:`florin._kernels.ndnt`.
"""

from __future__ import annotations

import numpy as np

from florin import tilemeta
from florin._kernels.ndnt import ndnt_mask
from florin._ndnt_checks import validate_ndnt_args
from florin.errors import ParameterError
from florin.operators import florinate
from florin.volume import as_volume, check_single_channel, like

__all__ = ["ndnt"]


def _full_shape(vol):
    info = tilemeta.info_of(vol)
    return info.full_shape if info is not None else vol.shape


def _ndnt_halo(params, full_shape):
    shape, _, _ = validate_ndnt_args(
        np.empty((1,) * len(full_shape), np.uint8), params["shape"], params["threshold"],
        params["polarity"], full_shape=full_shape,
    )
    return tuple(s // 2 for s in shape)


@florinate(halo=_ndnt_halo)
def ndnt(image, *, shape=None, threshold=0.25, polarity="dark", threads=None):
    """N-Dimensional Neighborhood Thresholding.

    A voxel ``x`` is foreground (polarity ``'dark'``) when
    ``I(x) * count(x) <= (1 - t) * sum(x)``, i.e. when it is at most
    ``(1 - t)`` times the mean of its neighbourhood; with ``'bright'`` when
    ``I(x) * count(x) >= (1 + t) * sum(x)``. The neighbourhood is a box of
    half-widths ``shape // 2`` clipped to the volume. Integer images are decided
    exactly; float images in float64.

    Parameters
    ----------
    image : array_like or xarray.DataArray
        N-D image (integer or float; NaN/inf are rejected).
    shape : int or tuple of int, optional
        Neighbourhood shape per axis; an entry of 1 disables that axis.
        Default: ``max(1, round(n / 8))`` per axis of the full volume.
    threshold : float
        Fraction in [0, 1], or a percentage in (1, 100]. Default 0.25.
    polarity : {'dark', 'bright'}
        Which objects are foreground: darker (default, as FLoRIN) or brighter
        than their neighbourhood.
    threads : int, optional
        Threads for the kernel (default: numba's, honouring ``NUMBA_NUM_THREADS``).

    Returns
    -------
    xarray.DataArray
        Boolean mask with the input's dims, coords and attrs.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.full((5, 5), 100, np.uint8); image[2, 2] = 10
    >>> ndnt(image, shape=3, threshold=0.3).values.astype(int)[1:4, 1:4].tolist()
    [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
    """
    vol = as_volume(image)
    check_single_channel(vol, "ndnt()")
    data = vol.data  # once: on a lazily read file each .data reads it again
    data = data if isinstance(data, np.ndarray) else np.asarray(vol)
    # The kernel counts NaN/inf itself while it reads (no extra pass over the image).
    shape, fraction, bright = validate_ndnt_args(data, shape, threshold, polarity, full_shape=_full_shape(vol),
                                                 check_finite=False)
    try:
        mask = ndnt_mask(data, shape, fraction, bright, threads=threads)
    except ParameterError:
        bad = np.count_nonzero(~np.isfinite(data)) if data.dtype.kind == "f" else 0
        if bad:  # error path only: name the exact number of bad voxels
            raise ParameterError(
                f"image has {bad} NaN or infinite voxel(s); NDNT needs finite values "
                "(replace them, e.g. with numpy.nan_to_num)"
            ) from None
        raise
    return like(mask, vol)

