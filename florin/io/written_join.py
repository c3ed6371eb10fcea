"""The join of tiles that ``save`` already wrote into an on-disk output (:class:`WrittenJoin`)."""

from __future__ import annotations

import base64
import math
import pickle

from florin import tilemeta
from florin.errors import PipelineError
from florin.io.atomic import fsync_file
from florin.io.ondisk_array import _like, _read
from florin.io.tile_sink import _sink_of
from florin.tiling import TileJoin, register_join

__all__ = ["WrittenJoin", "join_written"]


class WrittenJoin(TileJoin):
    """The result kind of tiles that ``save`` already wrote into an on-disk output.

    There is nothing to copy: :meth:`finish` checks that every voxel was
    written, commits the output (renames it into place) and returns it as a
    lazy volume with the dims and coords of ``like``.
    """

    name = "written tiles"
    #: An interrupted run's temporary output keeps the tiles it recorded; a resumed run writes the others.
    resumable = True

    @classmethod
    def claims(cls, tile) -> bool:
        return _sink_of(tile) is not None

    @classmethod
    def reopen(cls, record, *, like=None):
        """The result of a join that an earlier run committed (``record`` from :meth:`committed`)."""
        vol = _like(_read(record["outputs"][0], record["format"], record["locator"]), like)
        vol.attrs = pickle.loads(base64.b64decode(record["attrs"]))
        return vol

    def __init__(self, first, *, infos, like=None, out=None, allocate=None):
        super().__init__(first, infos=infos, like=like, out=out, allocate=allocate)
        self.sink = _sink_of(first)
        if out is not None:
            raise PipelineError(f"the tiles were already saved to {self.sink.target!r}; join them without out=")
        self.covered, self.count, self.origins = 0, 0, set()

    def add(self, tile, info) -> None:
        sink = _sink_of(tile)
        if (sink.target, sink.tmp) != (self.sink.target, self.sink.tmp):
            raise PipelineError(f"tiles were saved to different outputs: {sorted({self.sink.target, sink.target})}")
        self.restore(info)

    def restore(self, info, state=None) -> None:
        self.covered += math.prod(info.core_shape)
        self.count += 1
        self.origins.add(tuple(info.origin))

    def flush(self) -> None:
        fsync_file(self.sink.tmp)  # written (and closed) by a worker: on disk before the tile is recorded

    def committed(self):
        attrs = base64.b64encode(pickle.dumps(tilemeta.strip(dict(self.first.attrs)))).decode()
        return {"outputs": [self.sink.target], "format": self.sink.format, "locator": self.sink.locator, "attrs": attrs}

    def finish(self):
        sink = self.sink
        if self.covered != math.prod(sink.shape) or len(self.origins) != self.count:
            raise PipelineError(
                f"the saved tiles cover {self.covered} of the {math.prod(sink.shape)} voxels of {sink.target!r}; "
                "not committing an incomplete output"
            )
        sink.commit()
        vol = sink.volume(like=self.like)
        vol.attrs = tilemeta.strip(dict(self.first.attrs))
        return vol


register_join(WrittenJoin)


def join_written(tiles, infos, *, like=None, out=None):
    """The join of tiles that ``save`` already wrote into an on-disk output, else None (see :class:`WrittenJoin`)."""
    tiles = list(tiles)
    kinds = [WrittenJoin.claims(t) for t in tiles]
    if not any(kinds):
        return None
    if not all(kinds):
        raise PipelineError("some tiles were written by save() and others not; save must end the tiled pipeline")
    joiner = WrittenJoin(tiles[0], infos=sorted(infos, key=lambda i: i.index), like=like, out=out)
    for t, info in zip(tiles, infos, strict=True):
        joiner.add(t, info)
    return joiner.finish()
