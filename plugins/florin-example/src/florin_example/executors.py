"""An executor: map items a chunk at a time, in a few threads.

An executor is a :class:`florin.Pipeline` subclass that overrides one method,
``map(self, func, items)``: apply ``func`` to every item and return the results
**in the items' order**. florin calls it with the per-item steps (``func``) and
what a collection ships (the tiles of a volume, or references that ``func``
resolves into tiles; the regions of a labelled volume). Everything else (running
steps, tiling, joining) is inherited, so ``Chunked(*steps)`` nests in any
pipeline exactly like ``florin.Serial``.

Rules every executor follows:

* return exactly what ``[func(item) for item in items]`` would;
* let an exception raised by ``func`` reach the caller unchanged: florin's errors
  already name the failing operator and the tile's origin;
* keep keyword options as attributes of the same name (pipeline files write
  them back out), and never hang: here threads cannot die silently;
* call the worker count ``workers``, as florin's executors do.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

import florin
from florin.errors import FlorinDeprecationWarning, ParameterError

__all__ = ["Chunked"]


class Chunked(florin.Pipeline):
    """Pipeline that maps its steps over items ``chunk_size`` at a time.

    Each chunk runs concurrently in up to ``workers`` threads, and the next chunk
    starts only when the previous one is done, so at most ``chunk_size`` results
    are being computed at once (a simple way to bound memory).

    Parameters
    ----------
    *steps : callable
        The steps run on each item.
    chunk_size : int
        Items per chunk. Default 4.
    workers : int
        Threads per chunk (at most ``chunk_size`` are used). Default 2.
    threads : int, optional
        Deprecated name of ``workers`` (a ``FlorinDeprecationWarning``).

    Examples
    --------
    >>> import numpy as np
    >>> import florin
    >>> double = florin.florinate(lambda image: image * 2)
    >>> pipeline = florin.Serial(florin.tile(shape=(2, 2)), Chunked(double(), chunk_size=3))
    >>> pipeline(np.arange(16).reshape(4, 4)).values[0].tolist()
    [0, 2, 4, 6]
    """

    #: Registry name, as in ``--executor chunked``.
    name = "chunked"

    #: Old constructor names and the option they stand for (pipeline files write only the new one).
    deprecated_options = {"threads": "workers"}

    def __init__(self, *steps, chunk_size=4, workers=2, threads=None):
        super().__init__(*steps)
        option = "workers" if threads is None else "threads"
        workers = workers if threads is None else threads
        for name, value in (("chunk_size", chunk_size), (option, workers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ParameterError(f"Chunked({name}={value!r}): must be a positive integer")
        if threads is not None:
            warnings.warn("Chunked(threads=...) is deprecated; use workers=", FlorinDeprecationWarning, stacklevel=2)
        self.chunk_size = chunk_size
        self.workers = workers
        #: Sizes of the chunks the last ``map`` ran (handy in tests and demos).
        self.last_chunks = []

    def map(self, func, items):
        """Apply ``func`` to the items, ``chunk_size`` at a time; results in order."""
        items = list(items)
        results = []
        self.last_chunks = []
        with ThreadPoolExecutor(max_workers=min(self.workers, self.chunk_size)) as pool:
            for start in range(0, len(items), self.chunk_size):
                chunk = items[start : start + self.chunk_size]
                # pool.map keeps the order and re-raises the first exception in order.
                results.extend(pool.map(func, chunk))
                self.last_chunks.append(len(chunk))
        return results
