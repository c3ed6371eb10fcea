"""Morphology operators that keep dims, coords and attrs.

Binary and grey erosion, dilation, opening and closing run on florin's numba
kernels (:mod:`florin._kernels.morphology`), bit-exact with scipy.ndimage and
scikit-image; the size filters run on florin's label kernel with a size table.

Each operator declares its halo from its footprint, so tiled pipelines give
exactly the whole-volume result: erosion and dilation need the footprint's
radius, opening and closing twice that. ``remove_small_objects`` and
``remove_small_holes`` depend on whole objects and must run on the joined
volume; on label images they keep the labels.
"""

from __future__ import annotations

import math

import numpy as np
import skimage.morphology as skm
from scipy import ndimage as ndi

import florin.blockwise as blockwise
from florin._checked import checked
from florin._kernels import morphology as _km
from florin._kernels import sizes as _ksizes
from florin.blockwise.sizes import size_limit
from florin.errors import ParameterError
from florin.operators import florinate
from florin.planner import source
from florin.volume import as_volume, check_single_channel, like

__all__ = [
    "binary_closing",
    "binary_dilation",
    "binary_erosion",
    "binary_opening",
    "closing",
    "dilation",
    "erosion",
    "opening",
    "remove_small_holes",
    "remove_small_objects",
]


def footprint_radius(footprint, ndim) -> tuple:
    """Radius per axis of a footprint (scikit-image's default is a radius-1 cross).

    Examples
    --------
    >>> footprint_radius(None, 3)
    (1, 1, 1)
    >>> footprint_radius(np.ones((1, 5, 3)), 3)
    (0, 2, 1)
    """
    if footprint is None:
        return (1,) * ndim
    if isinstance(footprint, tuple) and footprint and isinstance(footprint[0], tuple):
        # A decomposed footprint: ((array, repeats), ...) applies each in sequence.
        total = np.zeros(ndim, dtype=int)
        for part, repeats in footprint:
            total += np.array(footprint_radius(part, ndim)) * int(repeats)
        return tuple(int(t) for t in total)
    shape = np.shape(footprint)
    if len(shape) != ndim:
        raise ParameterError(f"footprint has {len(shape)} dims but the image has {ndim}")
    return tuple(s // 2 for s in shape)


_GREY_MODES = ("reflect", "constant", "nearest", "mirror", "wrap", "max", "min", "ignore")


def _check_footprint(footprint, ndim):
    """The footprint as an array with the image's ndim and at least one voxel, or a ParameterError."""
    if isinstance(footprint, tuple) and footprint and isinstance(footprint[0], tuple):
        # a decomposed footprint: ((part, repeats), ...), each part applied ``repeats`` times
        parts = []
        for item in footprint:
            if len(item) != 2 or isinstance(item[1], bool) or not isinstance(item[1], int | np.integer) or item[1] < 1:
                raise ParameterError(f"a decomposed footprint is ((array, repeats >= 1), ...), got the part {item!r}")
            parts.append((_check_footprint(item[0], ndim), int(item[1])))
        return tuple(parts)
    try:
        array = np.asarray(footprint)
    except Exception:
        array = None
    if array is None or array.dtype.kind not in "biuf":
        raise ParameterError(
            f"footprint must be an array of {ndim} dims (e.g. skimage.morphology.ball(1)), got {footprint!r}"
        )
    if array.ndim != ndim:
        raise ParameterError(f"footprint has {array.ndim} dims but the image has {ndim}; give a {ndim}-D footprint")
    if not array.any():
        raise ParameterError(f"footprint must contain at least one non-zero element, got shape {array.shape}")
    return array


def _halo(factor):
    def halo(params, full_shape):
        return tuple(factor * r for r in footprint_radius(params.get("footprint"), len(full_shape)))

    return halo


_NUMBA_KINDS = "biuf"


def _native(data):
    """True when the kernels take ``data`` as it is (native byte order, no float16)."""
    return data.dtype.kind in _NUMBA_KINDS and data.dtype.isnative and data.dtype != np.float16


def _binary_erosion(data, footprint, mode):
    # 'ignore' / 'max': outside the image is foreground, so borders do not erode; 'min': they do.
    return _km.binary_erosion(data, footprint, border_value=mode != "min")


def _binary_dilation(data, footprint, mode):
    # 'ignore' / 'min': nothing grows in from outside; 'max': outside is foreground.
    return _km.binary_dilation(data, footprint, border_value=mode == "max")


def _binary_opening(data, footprint, mode):
    return _binary_dilation(_binary_erosion(data, footprint, mode), footprint, mode)


def _binary_closing(data, footprint, mode):
    return _binary_erosion(_binary_dilation(data, footprint, mode), footprint, mode)


def _grey_border(dtype, mode, maximum):
    """scikit-image's border: ``(scipy mode, cval)``; 'ignore' is 'max' for an erosion, 'min' for a dilation."""
    if mode == "ignore":
        mode = "min" if maximum else "max"
    if mode not in ("max", "min"):
        return mode, 0.0
    if dtype.kind == "b":
        return "constant", mode == "max"
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return "constant", info.max if mode == "max" else info.min
    return "constant", np.inf if mode == "max" else -np.inf


def _grey(data, footprint, mode, maximum, mirror):
    scipy_mode, cval = _grey_border(data.dtype, mode, maximum)
    run = _km.grey_dilation if maximum else _km.grey_erosion
    return run(data, footprint, mode=scipy_mode, cval=cval, mirror=mirror)


def _erosion(data, footprint, mode):
    if not _native(data):
        return skm.erosion(data, footprint, mode=mode)
    return _grey(data, footprint, mode, False, False)


def _dilation(data, footprint, mode):
    if not _native(data):
        return skm.dilation(data, footprint, mode=mode)
    return _grey(data, footprint, mode, True, False)


def _opening(data, footprint, mode):
    if not _native(data):
        return skm.opening(data, footprint, mode=mode)
    return _grey(_grey(data, footprint, mode, False, False), footprint, mode, True, True)


def _closing(data, footprint, mode):
    if not _native(data):
        return skm.closing(data, footprint, mode=mode)
    return _grey(_grey(data, footprint, mode, True, False), footprint, mode, False, True)


def _make(name, kernel, factor, binary, summary):
    default_mode = "ignore" if binary else "reflect"

    def op(image, *, footprint=None, mode=default_mode):
        vol = as_volume(image)
        check_single_channel(vol, f"{name}()")
        data = np.asarray(vol)
        if data.ndim == 0:
            raise ParameterError(f"image must have at least one dimension for {name}, got a 0-d array")
        if footprint is not None:
            footprint = _check_footprint(footprint, data.ndim)
        else:
            footprint = ndi.generate_binary_structure(data.ndim, 1)
        if binary:
            if mode not in _BINARY_MODES:
                raise ParameterError(
                    f"mode must be one of {', '.join(map(repr, _BINARY_MODES))} for {name}, got {mode!r}"
                )
            data = data if data.dtype == bool else data != 0
            return like(kernel(data, footprint, mode), vol)
        if mode not in _GREY_MODES:
            raise ParameterError(f"mode must be one of {', '.join(map(repr, _GREY_MODES))} for {name}, got {mode!r}")
        return like(kernel(data, footprint, mode), vol)

    oracle = f"scipy.ndimage.{name}" if binary else f"skimage.morphology.{name}"
    op.__doc__ = f"""{summary}

    Computed by florin's numba kernels (:mod:`florin._kernels.morphology`),
    bit-exact with :func:`{oracle}`{" (which scikit-image's ``" + name + "`` calls)" if binary else ""},
    borders included; boxes and other separable footprints run as one pass
    per axis. The result keeps the input's dims, coords and attrs.
    Halo: {factor} x the footprint radius.

    Parameters
    ----------
    image : array_like or xarray.DataArray
        Input {"mask (non-zero is foreground)" if binary else "image"}.
    footprint : array_like or sequence of (array_like, int), optional
        Flat neighbourhood (non-zero entries), or scikit-image's decomposed
        form ``((part, repeats), ...)``; default is the radius-1 cross of the
        image's ndim.
    mode : str
        {_BINARY_MODE_DOC if binary else _GREY_MODE_DOC}

    Returns
    -------
    xarray.DataArray

    Examples
    --------
    >>> import numpy as np
    >>> import skimage.morphology
    >>> mask = np.zeros((7, 7), bool); mask[1:5, 1:6] = True; mask[3, 3] = False
    >>> bool(np.array_equal({name}(mask).values, skimage.morphology.{name}(mask)))
    True
    """
    return florinate(op, name=name, halo=_halo(factor))


_BINARY_MODES = ("ignore", "min", "max")
_BINARY_MODE_DOC = (
    "Border, as scikit-image: 'ignore' (default): outside the image never erodes and never dilates; "
    "'min': outside is background; 'max': outside is foreground."
)
_GREY_MODE_DOC = (
    "Border, as scikit-image: 'reflect' (default), 'constant' (zero), 'nearest', 'mirror', 'wrap', "
    "'max' / 'min' (the dtype's largest / smallest value), 'ignore' (the border never wins)."
)


binary_erosion = _make("binary_erosion", _binary_erosion, 1, True, "Binary erosion.")
binary_dilation = _make("binary_dilation", _binary_dilation, 1, True, "Binary dilation.")
binary_opening = _make(
    "binary_opening", _binary_opening, 2, True, "Binary opening (erosion then dilation): removes specks."
)
binary_closing = _make(
    "binary_closing", _binary_closing, 2, True, "Binary closing (dilation then erosion): fills gaps."
)
erosion = _make("erosion", _erosion, 1, False, "Greyscale erosion.")
dilation = _make("dilation", _dilation, 1, False, "Greyscale dilation.")
opening = _make("opening", _opening, 2, False, "Greyscale opening.")
closing = _make("closing", _closing, 2, False, "Greyscale closing.")


def _size_params(what):
    """The build-time check of a size filter's parameters (warns for ``min_size=``)."""

    def check(params):
        size_limit(params["max_size"], params["min_size"], what)

    return check


def _structure(ndim, connectivity):
    if not 1 <= connectivity <= ndim:
        raise ParameterError(f"connectivity must be between 1 and {ndim} for a {ndim}-D image, got {connectivity}")
    return ndi.generate_binary_structure(ndim, connectivity)


_whole_volume = math.inf  # depends on whole objects: run after the join


def _size_filter_blockwise(name, image, allocate, blocks, map, min_size, connectivity, max_size):
    """The blockwise form of size filter ``name`` (:mod:`florin.blockwise`), for volumes above the memory budget."""
    vol = as_volume(image)
    out = allocate(vol.shape, vol.dtype)
    limit = size_limit(max_size, min_size, f"{name}()", warn=False)  # warned when the step was built
    # the labels of the global form (when the local one would read too much) are allocated within the budget
    getattr(blockwise, name)(source(vol), out, blocks=blocks, max_size=limit, connectivity=connectivity,
                             scratch=allocate, map=map)
    return like(out, vol)


def _remove_small_objects_blockwise(image, *, allocate, blocks, map, min_size=None, connectivity=1, max_size=None):
    """``remove_small_objects`` block by block (:func:`florin.blockwise.remove_small_objects`)."""
    return _size_filter_blockwise("remove_small_objects", image, allocate, blocks, map, min_size, connectivity,
                                  max_size)


def _remove_small_holes_blockwise(image, *, allocate, blocks, map, min_size=None, connectivity=1, max_size=None):
    """``remove_small_holes`` block by block (:func:`florin.blockwise.remove_small_holes`)."""
    return _size_filter_blockwise("remove_small_holes", image, allocate, blocks, map, min_size, connectivity,
                                  max_size)


@checked(check=_size_params("remove_small_objects()"), halo=_whole_volume, kind="label-merge",
         blockwise=_remove_small_objects_blockwise)
def remove_small_objects(image, *, min_size=None, connectivity=1, max_size=None):
    """Remove objects of at most ``max_size`` voxels (as scikit-image 0.26 names it).

    Parameters
    ----------
    image : array_like or xarray.DataArray
        A mask, or a label image (objects keep their labels).
    min_size : int, optional
        Deprecated (FLoRIN's and scikit-image < 0.26 name): objects smaller than
        this are removed, i.e. ``max_size = min_size - 1``. Accepted with a
        :class:`~florin.errors.FlorinDeprecationWarning`; given with
        ``max_size`` it is a :class:`~florin.errors.ParameterError`.
    connectivity : int
        Neighbourhood for finding objects in a mask (1 = faces ... ndim = full).
    max_size : int, optional
        Objects of this many voxels or fewer are removed. Default 63 (FLoRIN's:
        objects under 64 voxels go; scikit-image's default is 64).

    Returns
    -------
    xarray.DataArray

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.zeros((6, 6), bool); mask[0, 0] = True; mask[2:5, 2:5] = True
    >>> int(remove_small_objects(mask, max_size=1).values.sum())
    9
    """
    vol = as_volume(image)
    check_single_channel(vol, "remove_small_objects()")
    min_size = size_limit(max_size, min_size, "remove_small_objects()", warn=False) + 1  # sizes below it go
    data = np.asarray(vol)
    if data.ndim == 0:
        raise ParameterError("image must have at least one dimension for remove_small_objects, got a 0-d array")
    if data.dtype == bool:
        _structure(data.ndim, connectivity)  # checks connectivity
        return like(_ksizes.remove_small_objects(data, min_size, connectivity), vol)
    if data.dtype.kind not in "iu":
        raise ParameterError(f"image must be a mask (bool) or a label image (integers), got dtype {data.dtype}")
    if data.size and data.min() < 0:
        raise ParameterError(f"image labels must be >= 0, got a minimum of {data.min()}")
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    small = _ksizes.label_sizes(data) < min_size
    small[0] = False
    return like(_ksizes.remove_labels(data, small), vol)


@checked(check=_size_params("remove_small_holes()"), halo=_whole_volume, kind="label-merge",
         blockwise=_remove_small_holes_blockwise)
def remove_small_holes(image, *, min_size=None, connectivity=1, max_size=None):
    """Fill holes (background components) of at most ``max_size`` voxels (as scikit-image 0.26 names it).

    Parameters
    ----------
    image : array_like or xarray.DataArray
        A mask, or a label image: a filled hole takes the label of the object
        around it (the largest label bordering it), so labels are kept.
    min_size : int, optional
        Deprecated (FLoRIN's name): holes smaller than this are filled, i.e.
        ``max_size = min_size - 1``. Accepted with a
        :class:`~florin.errors.FlorinDeprecationWarning`; given with
        ``max_size`` it is a :class:`~florin.errors.ParameterError`.
    connectivity : int
        Neighbourhood for finding holes (1 = faces ... ndim = full).
    max_size : int, optional
        Holes of this many voxels or fewer are filled (scikit-image 0.26's name,
        its ``area_threshold`` renamed). Default 63 (FLoRIN's: holes under 64
        voxels; scikit-image's default is 64).

    Returns
    -------
    xarray.DataArray

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.ones((5, 5), bool); mask[2, 2] = False
    >>> bool(remove_small_holes(mask, max_size=1).values.all())
    True
    """
    vol = as_volume(image)
    check_single_channel(vol, "remove_small_holes()")
    min_size = size_limit(max_size, min_size, "remove_small_holes()", warn=False) + 1  # sizes below it are filled
    data = np.asarray(vol)
    if data.ndim == 0:
        raise ParameterError("image must have at least one dimension for remove_small_holes, got a 0-d array")
    _structure(data.ndim, connectivity)  # checks connectivity
    if data.dtype == bool:
        out = _ksizes.remove_small_holes(data, min_size, connectivity)
    else:
        out = _ksizes.fill_small_holes(data, min_size, connectivity)
    return like(out, vol)

