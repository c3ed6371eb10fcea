"""The ``Dask`` executor: map a pipeline's per-item steps over a Dask cluster.

Like every florin executor, :class:`Dask` is a :class:`florin.Pipeline` that
overrides the mapping method, :meth:`Dask.imap`. The pipeline hands it a
function (the per-item steps) and the items of a collection (the tiles of a
volume, the regions of a labelled volume); it submits one Dask task per item,
a bounded number at a time, and yields each result as its task finishes, so
the collection joins them as they arrive.

What a task receives is what the collection's ``items()`` ships: for tiles of a
file-backed (lazy) volume that is a light reference that the task resolves on the
worker by reading only its own slice; for in-memory data it is the tile itself
(large ones are scattered to the workers instead of travelling through the
scheduler).

``distributed`` is imported only when a pipeline actually runs, so listing
plugins (``florin plugins``) stays fast.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import queue
import time
import uuid
import weakref

import numpy as np

from florin import steps as florin_steps
from florin import tilemeta
from florin.errors import FlorinError, ParameterError, PipelineError, WorkerError
from florin.pipelines import Pipeline

__all__ = ["Dask"]

#: Items larger than this (bytes) are scattered to workers rather than embedded in the task graph.
SCATTER_BYTES = 1 << 20
#: Seconds between checks that the cluster still has workers while tasks are pending.
POLL_SECONDS = 0.5


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class Dask(Pipeline):
    """Pipeline that maps its steps over tiles or regions as Dask tasks.

    Parameters
    ----------
    *steps : callable
        The steps run on each item (operators, functions, nested pipelines).
    address : str, optional
        Address of a running Dask scheduler (``"tcp://10.0.0.5:8786"``), or the
        path of a scheduler file written by ``dask scheduler --scheduler-file``.
        When neither ``address`` nor ``client`` is given, the ``scheduler-address``
        of the Dask configuration (``DASK_SCHEDULER_ADDRESS``) is used if set,
        and otherwise a private :class:`distributed.LocalCluster` is started.
    client : distributed.Client, optional
        An existing client (for example of a ``dask_jobqueue.SLURMCluster``).
        It is used as is and never closed by florin.
    workers : int, optional
        With a local cluster: how many worker processes to start (one thread
        each; default: the CPUs this process may use). With ``address`` or
        ``client``: how many workers to wait for before submitting tasks
        (default: at least one).
    worker_timeout : float
        Seconds to wait for workers to join, and to keep waiting while the
        cluster has no worker left, before failing with
        :class:`florin.errors.WorkerError` instead of hanging. Default 60.

    Notes
    -----
    A local cluster is started for each :meth:`map` and shut down right after
    it. Use the pipeline as a context manager to keep one cluster for several
    runs::

        with florin.Dask(ndnt(), binary_opening(), workers=8) as tiles_on_dask:
            pipeline = florin.Serial(florin.load(), florin.tile(shape=(10, 64, 64)), tiles_on_dask)
            for path in paths:
                pipeline(path)

    A failing item raises in the caller a :class:`florin.errors.PipelineError`
    naming the operator and the tile's origin; a worker that dies while running
    an item (Dask retries it on other workers first, see the scheduler's
    ``allowed-failures``) raises :class:`florin.errors.WorkerError`.

    Examples
    --------
    >>> import numpy as np
    >>> import florin
    >>> from florin.morphology import binary_opening
    >>> mask = np.zeros((6, 8), bool); mask[1:5, 1:7] = True
    >>> pipeline = florin.Serial(florin.tile(shape=(3, 4)), florin.Dask(binary_opening(), workers=1))
    >>> bool((pipeline(mask).values == florin.Serial(binary_opening())(mask).values).all())
    True
    """

    name = "dask"

    def __init__(self, *steps, address=None, client=None, workers=None, worker_timeout=60.0):
        super().__init__(*steps)
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
            raise ParameterError(f"Dask(workers={workers!r}): workers must be a positive integer")
        if address is not None and client is not None:
            raise ParameterError("Dask(): give either address= or client=, not both")
        if address is not None and not isinstance(address, str | os.PathLike):
            raise ParameterError(f"Dask(address={address!r}): address must be a string such as 'tcp://host:8786'")
        if worker_timeout is None or worker_timeout <= 0:
            raise ParameterError(f"Dask(worker_timeout={worker_timeout!r}): must be a positive number of seconds")
        self.address = os.fspath(address) if address is not None else None
        self.client = client
        self.workers = workers
        self.worker_timeout = float(worker_timeout)
        self._session = None  # (client, cluster, finalizer) while kept open by `with`
        self._keep_open = 0

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self):
        self._keep_open += 1
        return self

    def __exit__(self, *exc):
        self._keep_open -= 1
        if self._keep_open == 0:
            self.close()

    def close(self) -> None:
        """Shut down the cluster and client this executor started (never a user's client)."""
        session, self._session = self._session, None
        if session is not None:
            session[2]()  # the finalizer closes client and cluster, once

    def __getstate__(self):
        # Pipelines are pickled (Pipeline.dump, shipping to workers): a live client or
        # cluster cannot travel, the options can.
        state = dict(self.__dict__)
        state.update(client=None, _session=None, _keep_open=0)
        return state

    @contextlib.contextmanager
    def _client(self):
        if self.client is not None:
            self._wait_for_workers(self.client, self.workers or 1, f"the cluster of {self.client!r}")
            yield self.client
            return
        if self._session is None:
            client, cluster, quiet = self._start()
            finalizer = weakref.finalize(self, _shutdown, client, cluster, quiet)
            self._session = (client, cluster, finalizer)
        client, cluster = self._session[:2]
        try:
            if cluster is None:
                self._wait_for_workers(client, self.workers or 1, f"the scheduler at {client.scheduler.address}")
            yield client
        finally:
            if not self._keep_open:
                self.close()

    def _start(self):
        import dask
        from distributed import Client, LocalCluster

        address = self.address or dask.config.get("scheduler-address", None)
        if address:
            kwargs = {"scheduler_file": address} if os.path.isfile(address) else {"address": address}
            try:
                client = Client(**kwargs, timeout=self.worker_timeout, set_as_default=False)
            except (OSError, asyncio.TimeoutError, TimeoutError) as exc:
                raise WorkerError(
                    f"cannot connect to the Dask scheduler at {address!r} within {self.worker_timeout:g} s: {exc}"
                ) from exc
            return client, None, None
        quiet = _Quiet()  # a private cluster's INFO chatter is not the user's business
        try:
            cluster = LocalCluster(
                n_workers=self.workers or _default_workers(),
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                # no dashboard; the scheduler's small HTTP server on a free loopback port, never :8787
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
                silence_logs=logging.WARNING,
            )
        except BaseException:
            quiet.restore()
            raise
        try:
            client = Client(cluster, set_as_default=False)
        except BaseException:
            _shutdown(None, cluster, quiet)
            raise
        return client, cluster, quiet

    def _wait_for_workers(self, client, n, where):
        try:
            client.wait_for_workers(n, timeout=self.worker_timeout)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            have = len(client.nthreads())
            raise WorkerError(
                f"Dask executor: only {have} of {n} worker(s) joined {where} within {self.worker_timeout:g} s"
            ) from exc

    # -- the executor seam -------------------------------------------------------------------
    def imap(self, func, items):
        """Run ``func`` on every item as one Dask task each; yield ``(index, result)`` as tasks finish.

        At most two tasks per worker are submitted and not yet handed back
        (fewer under a tight memory budget of the run), so neither the items
        nor the results pile up in the client; the pipeline joins each result
        as it arrives.

        Parameters
        ----------
        func : callable
            What to run on one item (florin passes the per-item steps).
        items : iterable
            What the collection ships: lazy tile references that the task reads
            itself, tiles, or regions.

        Yields
        ------
        tuple
            ``(index, func(items[index]))``, computed on the cluster, in the order tasks finish.
        """
        from florin import _run

        items = list(items)
        if not items:
            return
        with self._client() as client:
            workers = max(1, len(client.nthreads()))
            bound = _run.max_in_flight(2 * workers)
            prefix = "florin-" + florin_steps.describe(func, "item").replace(", ", "-")
            run_id = uuid.uuid4().hex[:12]
            done = queue.SimpleQueue()
            futures = {}
            todo = iter(range(len(items)))

            def submit_more():
                while len(futures) < bound:
                    i = next(todo, None)
                    if i is None:
                        return
                    arg = _scatter_large(client, [items[i]])[0]
                    future = client.submit(func, arg, key=f"{prefix}-{run_id}-{i}", pure=False)
                    future.add_done_callback(lambda _f, i=i: done.put(i))
                    futures[i] = future

            try:
                submit_more()
                idle_since = None
                while futures:
                    try:
                        i = done.get(timeout=POLL_SECONDS)
                    except queue.Empty:
                        idle_since = self._check_alive(client, futures, items, idle_since)
                        continue
                    future = futures[i]
                    if future.status in ("pending", "lost"):
                        # its result was lost with a worker (or it went back to waiting): Dask recomputes it
                        future.add_done_callback(lambda _f, i=i: done.put(i))
                        continue
                    if future.status != "finished":
                        raise self._failure(futures, i, items, func)
                    result = future.result()
                    del futures[i]
                    future.release()
                    submit_more()
                    yield i, result
                    del result
            except BaseException:
                client.cancel(list(futures.values()))  # stop the other tasks
                raise
            finally:
                futures.clear()

    def _check_alive(self, client, futures, items, idle_since):
        """Fail instead of waiting forever when the cluster lost all its workers."""
        try:
            alive = client.status == "running" and len(client.nthreads()) > 0
        except Exception:  # the scheduler itself is unreachable
            alive = False
        if alive:
            return None
        now = time.monotonic()
        if idle_since is None:
            return now
        if now - idle_since > self.worker_timeout:
            pending = next((i for i, f in futures.items() if f.status == "pending"), next(iter(futures), 0))
            raise WorkerError(
                f"Dask executor: no worker connected to the scheduler for {self.worker_timeout:g} s while "
                f"{sum(f.status == 'pending' for f in futures.values())} item(s) were still to run, "
                f"e.g. the {_label(items[pending])}",
                operator=None,
                origin=_origin(items[pending]),
            )
        return idle_since

    def _failure(self, futures, i, items, func):
        from distributed import KilledWorker

        future, item = futures[i], items[i]
        label = _label(item)
        steps = florin_steps.describe(func, florin_steps.name(func))
        try:
            exc = future.exception()
        except (concurrent.futures.CancelledError, asyncio.CancelledError) as cancelled:
            return WorkerError(
                f"Dask executor: the task running `{steps}` on the {label} was cancelled "
                f"(scheduler lost or shut down: {cancelled})",
                operator=steps,
                origin=_origin(item),
            )
        if isinstance(exc, FlorinError):
            # Raised by a step on the worker; it already names the operator and the tile.
            return exc.with_traceback(future.traceback())
        if isinstance(exc, KilledWorker):
            # Dask cannot tell which of the tasks a dying worker held killed it: name them all.
            held = [
                _label(items[j])
                for j, f in futures.items()
                if f is not future and f.status == "error" and isinstance(f.exception(), KilledWorker)
            ]
            others = f" (it also held: {', '.join(held)})" if held else ""
            error = WorkerError(
                f"Dask executor: a worker died while running `{steps}` on the {label}{others}; "
                f"Dask gave up after retrying: {exc}",
                operator=steps,
                origin=_origin(item),
            )
        else:
            error = PipelineError(
                f"Dask executor: `{steps}` failed on the {label}: {type(exc).__name__}: {exc}",
                operator=steps,
                origin=_origin(item),
            )
        error.__cause__ = exc
        return error

    def __repr__(self):
        options = [f"{k}={getattr(self, k)!r}" for k in ("address", "workers") if getattr(self, k) is not None]
        inner = super().__repr__()[len(type(self).__name__) + 1 : -1]
        return f"{type(self).__name__}({', '.join([inner, *options]) if inner else ', '.join(options)})"


def _shutdown(client, cluster, quiet=None):
    if client is not None:
        with contextlib.suppress(Exception):
            client.close()
    if cluster is not None:
        with contextlib.suppress(Exception):
            cluster.close()
    if quiet is not None:
        quiet.restore()


class _Quiet:
    """Raise the ``distributed`` loggers to WARNING while a private cluster lives."""

    def __init__(self):
        self.logger = logging.getLogger("distributed")
        self.old = self.logger.level
        if self.logger.getEffectiveLevel() < logging.WARNING:
            self.logger.setLevel(logging.WARNING)

    def restore(self):
        self.logger.setLevel(self.old)


def _scatter_large(client, items):
    """Scatter in-memory items above :data:`SCATTER_BYTES`; keep light (lazy) ones inline."""
    heavy = [i for i, item in enumerate(items) if _nbytes(item) > SCATTER_BYTES]
    if not heavy:
        return items
    scattered = client.scatter([items[i] for i in heavy], hash=False)
    args = list(items)
    for i, future in zip(heavy, scattered, strict=True):
        args[i] = future
    return args


def _nbytes(item) -> int:
    # Lazy tile references (florin.tiling.TileRef) have no nbytes: they travel as file
    # references and the task reads its own slice on the worker.
    nbytes = getattr(item, "nbytes", None)
    return int(nbytes) if isinstance(nbytes, int | np.integer) else 0


def _origin(item):
    info = tilemeta.info_of(item)
    if info is None and isinstance(getattr(item, "info", None), tilemeta.TileInfo):
        info = item.info  # a lazy tile reference (florin.tiling.TileRef)
    if info is None and isinstance(item, tuple | list):
        for part in item:
            info = part if isinstance(part, tilemeta.TileInfo) else tilemeta.info_of(part)
            if info is not None:
                break
    return tuple(info.origin) if info is not None else None


def _label(item) -> str:
    origin = _origin(item)
    if origin is not None:
        return f"tile at origin {origin}"
    label = getattr(item, "label", None)
    if label is not None:
        return f"region {label}"
    return "item"
