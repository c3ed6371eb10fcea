"""Collections that pipelines map their steps over.

A pipeline hands a single datum (a volume) to each step in turn. When the datum
is a :class:`Collection` (the tiles of a volume, the regions of a labelled
volume) the pipeline instead maps its per-item steps over the collection's
items with its executor, then asks the collection to ``rebuild`` itself from the
results: tiles join back into a volume, regions stay a collection.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["Collection"]


class Collection(Sequence):
    """Base class of what a pipeline maps over.

    Subclasses implement ``__len__``, ``__getitem__`` (materialising one item)
    and ``rebuild(results)``. ``items()`` returns what is shipped to workers; by
    default the materialised items, but a lazy collection may return light
    references that workers resolve with ``resolve``.
    """

    def items(self) -> list:
        """What executors map over (picklable)."""
        return [self[i] for i in range(len(self))]

    @staticmethod
    def resolve(item):
        """Turn a shipped item into the datum the steps receive (identity by default)."""
        return item

    def item_label(self, item) -> str:
        """How an item is named in error messages."""
        return "item"

    def rebuild(self, results):
        """Build the pipeline's next datum from the per-item results."""
        raise NotImplementedError
