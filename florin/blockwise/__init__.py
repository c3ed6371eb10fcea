"""Whole-volume steps computed block by block, exactly.

Each algorithm reads its input (anything sliceable: numpy array,
``numpy.memmap``, h5py dataset, zarr array) one block at a time and writes
``out[block] = ...``, holding a few blocks and per-object tables at a time,
and gives the in-memory result voxel for voxel. ``blocks`` is a list of tuples
of slices partitioning the volume (e.g. the ``core_slices`` of
:func:`florin.tiling.tile_infos`); ``map`` is a ``builtins.map``-like callable
the per-block work (module-level functions) is handed to.
"""

from florin.blockwise.label import label
from florin.blockwise.reconstruct import class_dtype, reconstruct
from florin.blockwise.regions import regionprops
from florin.blockwise.save import save
from florin.blockwise.sizes import remove_small_holes, remove_small_objects

__all__ = ["class_dtype", "label", "reconstruct", "regionprops", "remove_small_holes", "remove_small_objects", "save"]
