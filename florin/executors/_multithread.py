"""The Multithread executor: items in threads of this process."""

from __future__ import annotations

import concurrent.futures as cf
import contextvars

from florin import _run
from florin.executors._common import _kernel_threads, _kernel_threads_for, _worker_count, cpu_count
from florin.pipelines import Pipeline


class Multithread(Pipeline):
    """Pipeline that maps its steps over items in threads of this process.

    numba kernels (NDNT) release the GIL, as do many NumPy routines, so threads
    run tiles concurrently without copying any data (steps that hold the GIL
    run one thread at a time: use :class:`Multiprocess` for those).

    Parameters
    ----------
    *steps : callable
        The steps applied to every item (see :class:`florin.Pipeline`).
    workers : int, optional
        Number of threads; default one per CPU core. Each thread's numba
        kernels use ``cpu_count // workers`` threads (at least 1).
    threads : int, optional
        Deprecated name of ``workers`` (a
        :class:`~florin.errors.FlorinDeprecationWarning`); ``.threads`` reads
        ``workers``.

    Examples
    --------
    >>> import numpy as np
    >>> import florin
    >>> from florin.morphology import binary_opening
    >>> mask = np.zeros((6, 8), bool); mask[1:5, 1:7] = True
    >>> out = florin.Serial(florin.tile(shape=(3, 4)), florin.Multithread(binary_opening(), workers=2))(mask)
    >>> bool((out.values == binary_opening(mask).values).all())
    True
    """

    name = "multithread"
    in_process = True  # items run in this process: progress advances per item

    #: Deprecated constructor names and the option they stand for (pipeline files write only the new one).
    deprecated_options = {"threads": "workers"}

    def __init__(self, *steps, workers=None, threads=None):
        super().__init__(*steps)
        self.workers = _worker_count("Multithread", workers, threads=threads)

    @property
    def threads(self):
        """The worker count under its old name (``workers``)."""
        return self.workers

    def imap(self, func, items):
        """Yield ``(index, result)`` as threads finish items; at most two items per thread in flight."""
        items = list(items)
        if not items:
            return
        workers = min(self.workers or cpu_count(), len(items))
        kernel_threads = _kernel_threads_for(workers)
        bound = _run.max_in_flight(2 * workers)

        def run(item):
            with _kernel_threads(kernel_threads):
                return func(item)

        pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="florin")
        pending = {}
        todo = iter(enumerate(items))
        try:
            for i, item in todo:
                pending[pool.submit(contextvars.copy_context().run, run, item)] = i
                if len(pending) >= bound:
                    break
            while pending:
                done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for fut in sorted(done, key=pending.get):
                    i = pending.pop(fut)
                    result = fut.result()  # the first failure stops the run (the rest is cancelled below)
                    yield i, result
                    del result
                for i, item in todo:
                    pending[pool.submit(contextvars.copy_context().run, run, item)] = i
                    if len(pending) >= bound:
                        break
        finally:  # a failure, an interrupt or a consumer that stopped: do not start what is still queued
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=True)
