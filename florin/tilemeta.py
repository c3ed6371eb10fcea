"""Tile metadata: the only module that reads or writes it.

A tile is a DataArray cut from a volume. What join and the merging steps need to
know about it lives in ``attrs['florin_tile']`` as a :class:`TileInfo`: where its
core (the voxels it owns) sits in the full volume, how much context surrounds
the core inside the tile, and the full volume's shape.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["TileInfo", "attach", "crop_to_core", "info_of", "strip"]

_KEY = "florin_tile"


@dataclass(frozen=True)
class TileInfo:
    """Where a tile sits in its volume.

    Parameters
    ----------
    index : int
        Position of the tile in raster order of the tile grid.
    origin : tuple of int
        First voxel of the core in full-volume coordinates.
    core_shape : tuple of int
        Shape of the core (the voxels this tile owns).
    before : tuple of int
        Voxels of context in the tile before the core, per axis.
    after : tuple of int
        Voxels of context in the tile after the core, per axis.
    full_shape : tuple of int
        Shape of the full volume.

    Examples
    --------
    >>> info = TileInfo(0, (0, 32), (10, 32), (0, 5), (0, 5), (10, 100))
    >>> info.read_slices
    (slice(0, 10, None), slice(27, 69, None))
    >>> info.core_in_tile
    (slice(0, 10, None), slice(5, 37, None))
    """

    index: int
    origin: tuple
    core_shape: tuple
    before: tuple
    after: tuple
    full_shape: tuple

    @property
    def ndim(self) -> int:
        return len(self.origin)

    @property
    def read_slices(self) -> tuple:
        """Slices of the full volume that make up the whole tile."""
        return tuple(
            slice(o - b, o + c + a)
            for o, c, b, a in zip(self.origin, self.core_shape, self.before, self.after, strict=True)
        )

    @property
    def core_slices(self) -> tuple:
        """Slices of the full volume that the tile's core covers."""
        return tuple(slice(o, o + c) for o, c in zip(self.origin, self.core_shape, strict=True))

    @property
    def core_in_tile(self) -> tuple:
        """Slices of the tile that are its core."""
        return tuple(slice(b, b + c) for b, c in zip(self.before, self.core_shape, strict=True))

    @property
    def tile_shape(self) -> tuple:
        return tuple(b + c + a for b, c, a in zip(self.before, self.core_shape, self.after, strict=True))

    def as_core(self) -> TileInfo:
        """The info of this tile once cropped to its core."""
        zero = (0,) * self.ndim
        return replace(self, before=zero, after=zero)


def attach(tile, info: TileInfo):
    """Return ``tile`` (a DataArray) with ``info`` recorded in its attrs."""
    tile = tile.copy(deep=False)
    tile.attrs = {**tile.attrs, _KEY: info}
    return tile


def info_of(data) -> TileInfo | None:
    """The tile info of ``data``, or None when it is not a tile."""
    attrs = getattr(data, "attrs", None)
    if not attrs:
        return None
    return attrs.get(_KEY)


def strip(attrs: dict) -> dict:
    """A copy of ``attrs`` without tile metadata (for joined volumes and files)."""
    return {k: v for k, v in attrs.items() if k != _KEY}


def crop_to_core(tile):
    """Crop a processed tile to its core and update its metadata.

    Workers return cores only, so join and the transfer back carry no halo.
    """
    info = info_of(tile)
    if info is None:
        return tile
    if tuple(tile.shape) != info.tile_shape:
        raise ValueError(f"tile shape changed from {info.tile_shape} to {tuple(tile.shape)}")
    core = tile[info.core_in_tile]
    return attach(core, info.as_core())
