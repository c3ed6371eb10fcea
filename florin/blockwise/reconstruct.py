"""Blockwise reconstruction, equal to :func:`florin.reconstruct`.

The classified table becomes one lookup table ``class id per label`` (the
same one the in-memory form builds), and every block of the label volume is
looked up and written on its own: a ``lookup`` step.
"""

from __future__ import annotations

import functools

import numpy as np

from florin._kernels.lookup import lookup
from florin.blockwise._arrays import Sink, Source
from florin.blockwise.label import _check_arrays, _normalize_blocks
from florin.errors import ClassificationError, ParameterError
from florin.regions import Regions

__all__ = ["class_dtype", "reconstruct"]

_WHAT = "blockwise.reconstruct()"


def _class_lut(regions, dtype, what):
    """``(lut, {id: name})``: class id per label (``lut[label]``; its last entry, 0, stands for labels beyond it).

    Shared by :func:`reconstruct` and :func:`florin.blockwise.reconstruct`. ``dtype`` None: ``uint8``, or
    ``uint16`` beyond 255 classes.
    """
    if not isinstance(regions, Regions):
        raise ParameterError(
            f"{what} needs the regions of a label volume (conncomp.regionprops() then florin.classify(...)), "
            f"got {type(regions).__name__}"
        )
    if len(regions) == 0 and regions.classes is None:
        # No objects: mapping classify over zero regions never ran it, so there is nothing to classify.
        regions = regions._like({**regions.table, "class_id": np.zeros(0, np.int64)}, ())
    if regions.classes is None or "class_id" not in regions.table:
        raise ClassificationError(f"{what} needs classified regions: put florin.classify(...) before it")
    names = regions.classes
    if dtype is None:
        dtype = np.uint8 if len(names) <= np.iinfo(np.uint8).max else np.uint16
    dtype = np.dtype(dtype)
    if dtype.kind != "u" or len(names) > np.iinfo(dtype).max:
        raise ParameterError(f"{what}: dtype {dtype} cannot hold {len(names)} class ids")
    lab = np.asarray(regions.table["label"], np.int64)
    ids = np.asarray(regions.table["class_id"], np.int64)
    # one spare 0 entry at the end: labels beyond the table (regions dropped) clip to it
    lut = np.zeros((int(lab.max()) if lab.size else 0) + 2, dtype)
    lut[lab] = ids.astype(dtype)
    return lut, names


def _lookup(lut, block, what="reconstruct()", out=None):
    """``lut[block]`` for a block of labels, labels beyond the table clipped to its last (0) entry (into ``out``)."""
    block = np.asarray(block)
    if block.dtype.kind == "i" and block.size and block.min() < 0:
        raise ParameterError(f"{what}: labels must be >= 0")
    return lookup(lut, block, out)


def class_dtype(regions) -> np.dtype:
    """The dtype :func:`florin.reconstruct` gives the class volume of ``regions``: ``uint8``, or ``uint16``.

    Examples
    --------
    >>> import numpy as np, florin
    >>> from florin.conncomp import regionprops
    >>> class_dtype(florin.classify(florin.bounds_classifier("all"))(regionprops(np.ones((2, 2), int))))
    dtype('uint8')
    """
    return _class_lut(regions, None, _WHAT)[0].dtype


def _lookup_block(labels, out, lut, block):
    return out.put(block, _lookup(lut, labels[block], _WHAT))


def reconstruct(labels, table, out, *, blocks, map=map) -> dict:
    """Write the class-label volume of classified regions block by block.

    Equal voxel for voxel to ``florin.reconstruct(table)`` on the whole
    volume: each voxel gets its region's ``class_id``, background and
    unclassified (or dropped) regions 0; a volume without objects gives an
    all-zero class volume.

    Parameters
    ----------
    labels : array_like
        Sliceable integer label volume the table was measured on (numpy array,
        ``numpy.memmap``, h5py dataset, zarr array, lazy florin volume).
    table : florin.regions.Regions
        Classified regions (:func:`florin.blockwise.regionprops` or
        ``conncomp.regionprops()``, then ``florin.classify(...)``).
    out : array_like
        Writable array of the labels' shape with an unsigned dtype holding the
        class ids; :func:`class_dtype` gives the in-memory form's (``uint8``,
        or ``uint16`` beyond 255 classes). An output of :func:`florin.io.create`
        or a writable ``numpy.memmap`` is written by the workers themselves
        under a process pool; other arrays by the parent (the workers return
        their blocks).
    blocks : tuple of int or list of tuple of slice
        A block shape or boxes partitioning the volume.
    map : callable
        ``builtins.map``, or a thread or process pool's map.

    Returns
    -------
    dict
        ``{'1': name1, '2': name2, ...}``: the ``attrs['classes']`` the
        in-memory form attaches (store it with the output).

    Raises
    ------
    florin.errors.ClassificationError
        When the regions are not classified.
    florin.errors.ParameterError
        For shapes that differ, an ``out`` dtype that cannot hold the class
        ids, negative labels or bad ``blocks``.

    Examples
    --------
    >>> import numpy as np, florin
    >>> from florin import blockwise
    >>> labels = np.array([[1, 1, 0, 2]])
    >>> step = florin.classify(florin.bounds_classifier("pair", area=(2, 2)), florin.bounds_classifier("other"))
    >>> regions = step(blockwise.regionprops(labels, blocks=(1, 2)))
    >>> out = np.zeros(labels.shape, blockwise.class_dtype(regions))
    >>> blockwise.reconstruct(labels, regions, out, blocks=(1, 3))
    {'1': 'pair', '2': 'other'}
    >>> out
    array([[1, 1, 0, 2]], dtype=uint8)
    """
    shape = _check_arrays(labels, out, _WHAT)
    if np.dtype(labels.dtype).kind not in "iu":
        raise ParameterError(f"{_WHAT}: labels must be an integer label volume, got {np.dtype(labels.dtype)}")
    lut, names = _class_lut(table, out.dtype, _WHAT)
    blocks = _normalize_blocks(blocks, shape)
    sink = Sink(out)
    for pending in map(functools.partial(_lookup_block, Source(labels), sink, lut), blocks):
        sink.apply(pending)
    return {str(i): n for i, n in names.items()}
