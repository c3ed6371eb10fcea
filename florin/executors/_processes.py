"""The Multiprocess executor: items in pathos (``multiprocess``) worker processes."""

from __future__ import annotations

import atexit
import collections
import concurrent.futures as cf
import contextlib
import os
import signal
import sys
import threading
import time

import multiprocess as multiprocessing
from multiprocess import forkserver, resource_tracker
from multiprocess.connection import wait

from florin import _signals
from florin.errors import ParameterError, WorkerError
from florin.executors import _common, _shm
from florin.executors._common import _describe_steps, _kernel_threads_for, _nested, _some, _worker_count, cpu_count
from florin.executors._mpi import _shutdown_spawn_pools
from florin.executors._wire import _pool_imap, _run_chunk, _WorkerDied
from florin.pipelines import Pipeline


def _fork_is_safe() -> bool:
    """Whether forking this process gives working children.

    Not after GNU OpenMP has started (numba's ``omp`` threading layer: forked
    children abort), nor while other Python threads run (locks they hold stay
    locked in the child).
    """
    if not hasattr(os, "fork") or sys.platform == "darwin":
        return False
    if threading.active_count() > 1:
        return False
    parallel = sys.modules.get("numba.np.ufunc.parallel")  # not loaded: numba's threads never started
    if parallel is not None:
        try:
            if parallel._is_initialized and sys.modules["numba"].threading_layer() == "omp":
                return False
        except Exception:
            return False
    return True


_PRELOAD = ["florin.executors", "florin.tiling", "florin.thresholding", "florin.morphology"]


def _mp_context(start_method):
    """A context of ``multiprocess``, pathos' fork of :mod:`multiprocessing`."""
    if start_method is None:
        methods = multiprocessing.get_all_start_methods()
        if "fork" in methods and _fork_is_safe():
            start_method = "fork"
        elif "forkserver" in methods:
            start_method = "forkserver"
        else:
            start_method = "spawn"
    ctx = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        # The server imports florin once; each worker is forked from it.
        ctx.set_forkserver_preload(_PRELOAD)
    return ctx


@contextlib.contextmanager
def _main_not_reimported(start_method):
    """Start spawn/forkserver workers without re-running the user's script in them.

    multiprocessing makes such workers import ``__main__`` (so an unguarded
    script, like the seed's examples, would run again in every worker). florin
    pickles everything it ships with cloudpickle, which carries ``__main__``'s
    functions by value, so the workers do not need the script.
    """
    main = sys.modules.get("__main__")
    if start_method == "fork" or main is None:
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.update(saved)


class Multiprocess(Pipeline):
    """Pipeline that maps its steps over items in worker processes.

    The workers are processes of pathos (its ``multiprocess`` package), kept
    between maps, each fed tasks over its own pipe. They receive the steps
    (pickled with cloudpickle: lambdas and closures work) and their own tiles
    only: for a file-backed volume a tile reference, so the worker reads just
    its slice; for an in-memory volume a view of it in shared memory. florin
    waits on the workers' pipes and exit sentinels together, so a worker that
    dies fails the run at once with a :class:`~florin.errors.WorkerError`
    (a ``multiprocess.Pool`` would wait forever for the dead worker's task).

    Parameters
    ----------
    *steps : callable
        The steps applied to every item (see :class:`florin.Pipeline`).
    workers : int, optional
        Number of worker processes; default one per CPU core. Each worker's
        numba kernels use ``cpu_count // workers`` threads (at least 1).
    processes : int, optional
        Deprecated name of ``workers`` (a
        :class:`~florin.errors.FlorinDeprecationWarning`); ``.processes`` reads
        ``workers``.
    start_method : {'fork', 'forkserver', 'spawn'}, optional
        How workers start. Default: ``fork`` where it is safe (Linux, no
        OpenMP runtime started in this process yet), else ``forkserver``
        (POSIX) or ``spawn``.

    Examples
    --------
    >>> import numpy as np
    >>> import florin
    >>> from florin.morphology import binary_opening
    >>> mask = np.zeros((6, 8), bool); mask[1:5, 1:7] = True
    >>> pipe = florin.Serial(florin.tile(shape=(3, 4)), florin.Multiprocess(binary_opening(), workers=2))
    >>> bool((pipe(mask).values == binary_opening(mask).values).all())
    True
    """

    name = "multiprocess"

    #: Deprecated constructor names and the option they stand for (pipeline files write only the new one).
    deprecated_options = {"processes": "workers"}

    def __init__(self, *steps, workers=None, start_method=None, processes=None):
        super().__init__(*steps)
        self.workers = _worker_count("Multiprocess", workers, processes=processes)
        if start_method is not None:
            valid = multiprocessing.get_all_start_methods()
            if start_method not in valid:
                raise ParameterError(f"start_method must be one of {', '.join(valid)} (or None), got {start_method!r}")
        self.start_method = start_method

    @property
    def processes(self):
        """The worker count under its old name (``workers``)."""
        return self.workers

    def imap(self, func, items):
        """Yield ``(index, result)`` as worker processes send results back (see :func:`_wire._pool_imap`)."""
        items = list(items)
        if not items:
            return
        if _nested():  # already inside a worker: no process trees
            for i, item in enumerate(items):
                yield i, func(item)
            return
        size = self.workers or cpu_count()
        workers = min(size, len(items))
        pool = _process_pool(size, self.start_method)  # this thread's until the map ends
        try:
            yield from self._imap_on(pool, func, items, workers, _kernel_threads_for(size))
        finally:
            pool.lock.release()

    @staticmethod
    def _imap_on(pool, func, items, workers, kernel_threads):
        def on_broken(exc, unfinished):
            dead = pool.dead()
            _discard_process_pool(pool)
            raise WorkerError(
                f"a worker process of Multiprocess died{_exit_status(dead)} while running "
                f"({_describe_steps(func)}) on {_some(unfinished)}; the run was stopped. "
                "A worker dies when it is killed (e.g. by the out-of-memory killer: try fewer processes "
                "or smaller tiles), crashes in compiled code, or calls os._exit()"
            ) from exc

        shared = _shm._share_tiles(items, pool)
        ok = False
        try:
            shipped = shared[1] if shared is not None else items
            yield from _pool_imap(pool.submit, func, shipped, workers, kernel_threads, on_broken, wait=pool.wait)
            ok = True
        finally:
            if not ok:  # a failure, an interrupt or a consumer that stopped early: stop the work still running
                _discard_process_pool(pool)
            if shared is not None:
                _shm._give_back(shared[0], pool)


_FORGET_KEPT = b""  # the control message; every task payload is a non-empty pickle


class _ProcessPool:
    """Worker processes started by pathos' ``multiprocess``, one pipe each.

    The parent hands each task to a chosen worker over that worker's pipe and
    waits on the pipes and on the processes' sentinels at once, so a worker
    that dies is noticed the moment it exits (a ``multiprocess.Pool`` would
    wait forever for its task). There are no queue threads or shared queue
    locks: a task costs one send and one receive.
    """

    _PREFETCH_BYTES = 16 << 10  # a second task is queued in a busy worker's pipe only if this small

    def __init__(self, size, start_method):
        ctx = _mp_context(start_method)
        self.start_method = ctx.get_start_method()
        resource_tracker.ensure_running()  # workers share it (shared-memory volumes)
        self.workers = []
        self.backlog = collections.deque()  # (payload, future) no worker could take yet
        self.lock = threading.Lock()  # held by the thread whose map uses the pool
        self.block = None  # the kept shared-memory block of in-memory volumes
        try:
            with _main_not_reimported(self.start_method):
                if self.start_method == "forkserver":
                    forkserver.ensure_running()  # before signals are blocked below: the server must not inherit that
                for _ in range(size):
                    conn, child = ctx.Pipe(duplex=True)
                    inherited = ()
                    if self.start_method == "fork":
                        # A forked worker holds copies of the parent's pipe ends; it closes them, else
                        # no worker would see end-of-file when the parent closes its pipes.
                        inherited = (conn, *(w.conn for w in self.workers),
                                     *(w.conn for pool in _process_pools.values() for w in pool.workers))
                    proc = ctx.Process(target=_worker_main, args=(child, inherited), daemon=True,
                                       name="florin-worker")
                    with _signals.blocked():  # the worker unblocks them once its own handlers are set
                        proc.start()
                    child.close()
                    self.workers.append(_Worker(proc, conn))
        except BaseException:
            self.terminate()
            raise

    # -- the parent's side of a map ---------------------------------------------------------------
    def take_block(self, nbytes):
        """A shared-memory block of at least ``nbytes`` and whether it is the kept one; see :func:`_shm._give_back`."""
        if nbytes > _shm._KEEP_MAX_BYTES:
            return _shm._new_block(nbytes), False
        if self.block is None or self.block.size < nbytes:
            old, self.block = self.block, None
            if old is not None:
                for w in self.workers:  # idle workers would hold the old block's memory until their next task
                    with contextlib.suppress(OSError):
                        w.conn.send_bytes(_FORGET_KEPT)
                _shm._release_block(old)
            self.block = _shm._new_block(nbytes)
        return self.block, True

    def submit(self, payload) -> cf.Future:
        """Queue ``payload`` for :func:`_run_chunk` in a worker; the future completes in :meth:`wait`."""
        fut = cf.Future()
        fut.set_running_or_notify_cancel()
        self.backlog.append((payload, fut))
        self._dispatch()
        return fut

    def _dispatch(self):
        while self.backlog:
            payload = self.backlog[0][0]
            idle = [w for w in self.workers if not w.tasks]
            small = len(payload) <= self._PREFETCH_BYTES
            # A large payload goes to an idle worker only: sending blocks until the worker reads it.
            worker = idle[0] if idle else (min(self.workers, key=lambda w: len(w.tasks)) if small else None)
            if worker is None or len(worker.tasks) >= 2:
                return
            payload, fut = self.backlog.popleft()
            try:
                worker.conn.send_bytes(payload)
            except OSError as exc:  # the worker is gone; its sentinel tells wait()
                fut.set_exception(_WorkerDied(f"cannot send a task: {exc}"))
                continue
            worker.tasks.append(fut)

    def wait(self, futures) -> set:
        """Block until one of ``futures`` is done; receives results and notices dead workers."""
        while True:
            done = {f for f in futures if f.done()}
            if done:
                return done
            busy = {w.conn: w for w in self.workers if w.tasks}
            if not busy:
                raise _WorkerDied("no worker holds the remaining tasks")  # a florin bug; never hang on it
            dead = self.dead()
            if dead:  # an idle worker died: the pool is broken (and its sentinel would wake us at once)
                raise _WorkerDied(f"worker {dead[0].pid} exited")
            sentinels = {w.proc.sentinel: w for w in self.workers}
            ready = wait([*busy, *sentinels])
            for obj in ready:  # results first: a worker may send its result and then exit
                worker = busy.get(obj)
                if worker is not None:
                    try:
                        data = worker.conn.recv_bytes()
                    except (EOFError, OSError):
                        continue  # it died: its sentinel reports it
                    worker.tasks.popleft().set_result(data)
            for obj in ready:
                worker = sentinels.get(obj)
                if worker is not None:
                    self._died(worker)
            self._dispatch()

    def _died(self, worker):
        with contextlib.suppress(EOFError, OSError):  # results it sent before it exited still count
            while worker.tasks and worker.conn.poll():
                data = worker.conn.recv_bytes()  # before popping: EOF leaves the task to fail below
                worker.tasks.popleft().set_result(data)
        worker.proc.join(timeout=1)
        while worker.tasks:
            worker.tasks.popleft().set_exception(_WorkerDied(f"worker {worker.proc.pid} exited"))

    def dead(self) -> list:
        """The worker processes that exited (any exit while the pool runs is a death)."""
        return [w.proc for w in self.workers if w.proc.exitcode is not None]

    # -- stopping -----------------------------------------------------------------------------
    def close(self, timeout=5.0) -> None:
        """Let the workers exit (end of their pipe); stop those still running after ``timeout`` seconds."""
        self._release()
        for w in self.workers:
            with contextlib.suppress(Exception):
                w.conn.close()
        deadline = time.monotonic() + timeout
        for w in self.workers:
            with contextlib.suppress(Exception):
                w.proc.join(max(0.0, deadline - time.monotonic()))
        self.terminate()

    def _release(self):
        block, self.block = self.block, None
        if block is not None:
            _shm._release_block(block)

    def terminate(self) -> None:
        """Stop the workers now; queued work is dropped."""
        self._release()
        for w in self.workers:
            with contextlib.suppress(Exception):
                if w.proc.exitcode is None:
                    w.proc.kill()
        for w in self.workers:
            with contextlib.suppress(Exception):
                w.proc.join(timeout=5)
            with contextlib.suppress(Exception):
                w.conn.close()
        for _, fut in self.backlog:
            fut.set_exception(_WorkerDied("the pool was stopped"))
        self.backlog.clear()


class _Worker:
    __slots__ = ("proc", "conn", "tasks")

    def __init__(self, proc, conn):
        self.proc, self.conn, self.tasks = proc, conn, collections.deque()


def _worker_main(conn, inherited=()) -> None:
    """A worker process: run the chunks that arrive on ``conn`` until the parent closes it or dies."""
    _common._process_worker = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops the workers
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the CLI's handler a forked worker inherits: end quietly
    _signals.forget()  # nor the record of a signal the parent received before it forked this worker
    # Started with both signals blocked (see _signals.blocked): one that arrived since is delivered now, quietly.
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _signals.SIGNALS)
    for other in inherited:
        other.close()
    for pool in _process_pools.values():  # forked: the parent's kept blocks are not this worker's to hold
        with contextlib.suppress(Exception):
            pool.block.close()
    parent = os.getppid()
    while True:
        try:
            while not conn.poll(1.0):
                if os.getppid() != parent:  # the parent (or the forkserver) is gone: nobody will read
                    return
            payload = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if payload == _FORGET_KEPT:  # no reply
            _shm._forget_kept()
            continue
        result = _run_chunk(payload)
        try:
            conn.send_bytes(result)
        except (EOFError, OSError):  # the parent stopped or was killed: nobody reads the result
            return


# Worker pools are kept between maps (as pathos keeps its pools): workers start,
# import florin and load the compiled kernels once, not on every map.
_process_pools: dict = {}
_pools_lock = threading.Lock()
_atexit_registered = False


def _process_pool(size, start_method) -> _ProcessPool:
    """The kept pool of ``size`` workers, its ``lock`` acquired: release it when the map ends.

    A second thread mapping on the same pool waits for the first (the workers
    are busy anyway). With ``start_method=None`` the method is chosen when the
    pool is created (:func:`_mp_context`) and the pool is reused whatever
    happens later in this process: its workers were started safely.
    """
    global _atexit_registered
    key = (size, start_method)
    while True:
        with _pools_lock:
            pool = _process_pools.get(key)
            if pool is None:
                if not _atexit_registered:
                    atexit.register(shutdown_pools)  # before interpreter teardown, not during it
                    _atexit_registered = True
                pool = _process_pools[key] = _ProcessPool(size, start_method)
        pool.lock.acquire()
        if _process_pools.get(key) is pool and not pool.dead():
            return pool
        pool.lock.release()  # discarded or broken while this thread waited
        if _process_pools.get(key) is pool:
            _discard_process_pool(pool)


def _discard_process_pool(pool):
    with _pools_lock:
        for key, cached in list(_process_pools.items()):
            if cached is pool:
                del _process_pools[key]
    pool.terminate()


def shutdown_pools() -> None:
    """Stop the worker processes florin keeps between maps (they also stop at exit)."""
    with _pools_lock:
        pools = list(_process_pools.values())
        _process_pools.clear()
    for pool in pools:
        with contextlib.suppress(Exception):
            pool.close()

    _shutdown_spawn_pools()


def _exit_status(processes) -> str:
    codes = []
    for proc in processes:
        try:
            code = proc.exitcode
        except Exception:
            continue
        if code is None or code == 0:
            continue
        if code < 0:
            try:
                codes.append(f"killed by {signal.Signals(-code).name}")
            except ValueError:
                codes.append(f"killed by signal {-code}")
        else:
            codes.append(f"exit code {code}")
    return f" ({', '.join(dict.fromkeys(codes))})" if codes else ""
