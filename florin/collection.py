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
    and ``rebuild(results)`` (or ``rebuild_stream(pairs)``). ``items()`` returns what is shipped to workers; by
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

    def item_nbytes(self) -> int:
        """About how many bytes one item and its result hold while in flight (0: unknown)."""
        return 0

    def rebuild(self, results):
        """Build the pipeline's next datum from the per-item results (a list, in item order)."""
        raise NotImplementedError

    def rebuild_stream(self, pairs):
        """Build the next datum from ``(index, result)`` pairs arriving in any order.

        What pipelines call, with the pairs an executor yields as items
        complete. By default the results are put in item order and passed to
        :meth:`rebuild`; a collection whose results can be consumed one by one
        (the tiles of a volume: each core is written into its destination)
        overrides this so they need not all be held.
        """
        results = [None] * len(self)
        for index, result in pairs:
            results[index] = result
        return self.rebuild(results)
