"""Parallel executors: :class:`Multithread`, :class:`Multiprocess` and :class:`MPI`.

An executor is a :class:`~florin.pipelines.Pipeline` that overrides one method,
:meth:`~florin.pipelines.Pipeline.map`: how the per-item steps are applied to
the items of a collection (the tiles of a volume, the regions of a labelled
volume). Everything else (tiling, halos, the implicit join) is the pipeline's,
so every executor returns exactly what :class:`~florin.Serial` returns.

What travels between processes
------------------------------
Process and MPI workers receive, per task, the pickled steps (cloudpickle, so
lambdas and closures work; florin operators pickle by reference) and a chunk of
items:

* a file-backed volume's tiles as :class:`florin.tiling.TileRef` references,
  so that each worker reads only its own slice;
* under :class:`Multiprocess`, an in-memory volume is copied once into shared
  memory and its tiles travel as references to that block (one block is kept
  and reused by the next maps: a fresh block costs more in page faults than
  the copy itself);
* otherwise the cut tiles (only the tile's voxels are copied).

Workers send back the tiles' cores only; boolean results (masks) travel as one
bit per voxel.

Faults
------
An exception in any item is raised in the caller: steps that fail are reported
as :class:`~florin.errors.PipelineError` naming the operator and the tile
origin, and the worker's exception and its traceback are chained
(``__cause__``). A worker process that dies (killed, ``os._exit``, segfault)
makes the run fail at once with a :class:`~florin.errors.WorkerError`; under
MPI a dead rank aborts the whole MPI job, as MPI does.

Numba kernels
-------------
Kernels such as NDNT are multithreaded themselves. Inside a worker the kernels
get ``cpu_count // workers`` threads (at least 1), so ``N`` workers do not start
``N x cpu_count`` threads.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures as cf
import contextlib
import contextvars
import math
import numbers
import os
import sys
import threading
import traceback
import uuid

import numpy as np
import xarray as xr

from florin import _run, tilemeta
from florin.errors import ParameterError, WorkerError
from florin.pipelines import Pipeline

__all__ = [
    "MPI", "Multiprocess", "Multithread", "RemoteException", "RemoteTraceback", "cpu_count", "mpi_mode", "shutdown_pools",
]


# -- helpers shared by every executor ---------------------------------------------------------
def _check_count(name, value):
    """``None`` (one per CPU core) or an integer >= 1, else a ParameterError naming ``name``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ParameterError(f"{name} must be an integer >= 1 (or None for one per CPU core), got {value!r}")
    return int(value)


def cpu_count() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _kernel_threads_for(workers) -> int:
    return max(1, cpu_count() // max(1, workers))


@contextlib.contextmanager
def _kernel_threads(n):
    """Run with ``n`` numba threads in this thread (numba's setting is thread-local)."""
    numba = sys.modules.get("numba")
    if n is None or numba is None:
        yield
        return
    try:
        n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
        old = numba.get_num_threads()
        if n != old:
            numba.set_num_threads(n)
    except Exception:  # numba without a threading layer: leave it alone
        yield
        return
    try:
        yield
    finally:
        if n != old:
            numba.set_num_threads(old)


# True inside a process or MPI worker, and on an MPI rank while it runs its
# share of an SPMD map: nested process/MPI maps then run in place (no
# process trees, no collective calls from inside an item).
_in_worker = contextvars.ContextVar("florin_in_worker", default=False)
_process_worker = False


def _nested() -> bool:
    return _process_worker or _in_worker.get()


def _label(item, index) -> str:
    info = getattr(item, "info", None)
    if not isinstance(info, tilemeta.TileInfo):
        info = tilemeta.info_of(item) if isinstance(item, xr.DataArray) else None
    if info is None and hasattr(item, "resolve") and hasattr(item, "tile"):
        info = tilemeta.info_of(item.tile)
    return f"tile at origin {info.origin}" if info is not None else f"item {index}"


def _describe_steps(func) -> str:
    from florin.operators import step_name

    steps = getattr(func, "steps", None)
    if not steps:
        return "the steps"
    return ", ".join(step_name(s) for s in steps)


def _chunks(n, workers, chunksize=None):
    """Index ranges: one item each for few items (tiles), about 16 chunks per worker for many (regions)."""
    if chunksize is None:
        chunksize = max(1, math.ceil(n / (16 * max(1, workers))))
    return [range(i, min(n, i + chunksize)) for i in range(0, n, chunksize)]


# -- shipping errors across processes -------------------------------------------------------------
class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in a worker process or rank."""

    def __init__(self, tb):
        super().__init__(tb)
        self.tb = tb

    def __str__(self):
        return f'\n"""\n{self.tb}"""'


class RemoteException(Exception):
    """Stands for a worker's exception that could not be pickled (its type and message)."""


def _dumps(obj) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(obj)


def _dumps_fast(obj) -> bytes:
    """Pickle with the standard pickler (about twice as fast on arrays), cloudpickle if it must."""
    import pickle

    try:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return _dumps(obj)
    # Workers do not import the user's script: what it defines must travel by value.
    return _dumps(obj) if b"__main__" in data else data


def _loads(data):
    import pickle

    import cloudpickle  # noqa: F401  (what cloudpickle-made pickles need)

    return pickle.loads(data)


def _portable(exc) -> bytes:
    """``exc`` pickled so that it unpickles (or a stand-in that does)."""
    try:
        data = _dumps(exc)
        _loads(data)
        return data
    except Exception:
        return _dumps(RemoteException(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"))


def _capture(exc) -> tuple:
    """A worker's exception as ``(exception, cause, traceback text)``, each picklable."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    cause = exc.__cause__
    return (_portable(exc), _portable(cause) if cause is not None else None, tb)


def _rebuild(captured) -> BaseException:
    """The exception of :func:`_capture`, its cause and the remote traceback chained."""
    exc_data, cause_data, tb = captured
    exc = _loads(exc_data)
    remote = RemoteTraceback(tb)
    if cause_data is not None:
        cause = _loads(cause_data)
        cause.__cause__ = remote
        exc.__cause__ = cause
    else:
        exc.__cause__ = remote
    return exc


# -- results on the wire ---------------------------------------------------------------------------
_PACK_MIN_BYTES = 1 << 16


class _PackedMask:
    """A boolean DataArray result travelling as one bit per voxel.

    Masks are what tiled pipelines mostly return; packing them makes the
    bytes a worker sends, and the parent receives and copies, 8 times fewer.
    """

    __slots__ = ("bits", "shape", "dims", "coords", "attrs", "name")

    def __init__(self, array):
        self.bits = np.packbits(np.asarray(array.values), axis=None)
        self.shape, self.dims, self.attrs, self.name = array.shape, array.dims, dict(array.attrs), array.name
        self.coords = {k: v.variable for k, v in array.coords.items()}

    def unpack(self) -> xr.DataArray:
        data = np.unpackbits(self.bits, count=math.prod(self.shape)).view(bool).reshape(self.shape)
        return xr.DataArray(data, dims=self.dims, coords=self.coords, attrs=self.attrs, name=self.name)


def _to_wire(value):
    if (isinstance(value, xr.DataArray) and value.dtype == bool and value.size >= _PACK_MIN_BYTES
            and isinstance(value.variable._data, np.ndarray)):
        return _PackedMask(value)
    return value


def _from_wire(value):
    return value.unpack() if isinstance(value, _PackedMask) else value


# -- what process and MPI workers run --------------------------------------------------------------
_func_cache: dict = {}


def _run_chunk(payload: bytes) -> bytes:
    """Worker side: run the steps on a chunk of items; results (or the failure) as bytes.

    ``payload`` is ``(token, steps, [(index, item)...], kernel_threads)`` pickled.
    Returns a pickled list of ``(index, ok, value)``; ``value`` is the result, or
    the captured exception; processing stops at the first failure.
    """
    global _process_worker
    _process_worker = True
    out = []
    try:
        token, func_data, chunk, threads = _loads(payload)
        func = _func_cache.get(token)
        if func is None:
            func = _loads(func_data)
            _func_cache.clear()  # keep only the pipeline of the current map
            _func_cache[token] = func
    except Exception as exc:
        err = WorkerError(f"a worker could not unpickle the pipeline's steps or items: {type(exc).__name__}: {exc}")
        err.__cause__ = exc
        return _dumps([(None, False, _capture(err))])
    token_ctx = _in_worker.set(True)
    try:
        with _kernel_threads(threads):
            for index, item in chunk:
                try:
                    out.append((index, True, _to_wire(func(item))))
                except Exception as exc:
                    out.append((index, False, _capture(exc)))
                    break
    finally:
        _in_worker.reset(token_ctx)
    try:
        return _dumps_fast(out)
    except Exception as exc:  # a result that cannot travel back
        err = WorkerError(f"the result of {_label(chunk[0][1], chunk[0][0])} cannot be pickled: {exc}")
        return _dumps([(chunk[0][0], False, _capture(err))])
    finally:
        del out, chunk
        if _attached:
            _detach_blocks()


def _raise_first(errors: dict, items):
    index = min(errors, key=lambda i: (i is None, i if i is not None else 0))
    raise _rebuild(errors[index])


def _pool_map(submit, func, items, workers, kernel_threads, on_broken, chunksize=None, wait=None):
    """Map ``func`` over ``items`` with ``submit(bytes) -> Future`` (process or MPI pool).

    At most two chunks per worker are in flight, so a large in-memory volume is
    not pickled all at once. The first failure stops the run. ``wait(futures)``
    returns the done ones (default :func:`concurrent.futures.wait`); a future
    that fails means a worker died, and ``on_broken`` ends the run.
    """
    n = len(items)
    results = [None] * n
    chunks = _chunks(n, workers, chunksize)
    token = uuid.uuid4().hex
    func_data = _dumps(func)
    pending = {}
    errors = {}
    todo = iter(chunks)

    def submit_next():
        rng = next(todo, None)
        if rng is None:
            return False
        chunk = [(i, items[i]) for i in rng]
        pending[submit(_dumps_fast((token, func_data, chunk, kernel_threads)))] = rng
        return True

    for _ in range(2 * workers):
        if not submit_next():
            break
    if wait is None:
        wait = lambda fs: cf.wait(fs, return_when=cf.FIRST_COMPLETED)[0]  # noqa: E731
    while pending:
        try:
            done = wait(list(pending))
        except _WorkerDied as exc:  # the pool broke outside any one task
            on_broken(exc, [_label(items[i], i) for r in pending.values() for i in r])
            raise  # on_broken raises; this is a safety net
        for fut in done:
            rng = pending.pop(fut)
            try:
                data = fut.result()
            except cf.CancelledError:
                continue
            except Exception as exc:  # the pool broke: a worker died
                unfinished = [i for r in [rng, *pending.values()] for i in r]
                on_broken(exc, [_label(items[i], i) for i in unfinished])
                raise  # on_broken raises; this is a safety net
            for index, ok, value in _loads(data):
                if ok:
                    results[index] = _from_wire(value)
                else:
                    errors[index] = value
        if errors:
            for fut in pending:
                fut.cancel()
            _raise_first(errors, items)
        while len(pending) < 2 * workers and submit_next():
            pass
    return results


# -- Multithread -----------------------------------------------------------------------------------
class Multithread(Pipeline):
    """Pipeline that maps its steps over items in threads of this process.

    numba kernels (NDNT) release the GIL, as do many NumPy routines, so threads
    run tiles concurrently without copying any data (steps that hold the GIL
    run one thread at a time: use :class:`Multiprocess` for those).

    Parameters
    ----------
    *steps : callable
        The steps applied to every item (see :class:`florin.Pipeline`).
    threads : int, optional
        Number of threads; default one per CPU core. Each thread's numba
        kernels use ``cpu_count // threads`` threads (at least 1).

    Examples
    --------
    >>> import numpy as np
    >>> import florin
    >>> from florin.morphology import binary_opening
    >>> mask = np.zeros((6, 8), bool); mask[1:5, 1:7] = True
    >>> out = florin.Serial(florin.tile(shape=(3, 4)), florin.Multithread(binary_opening(), threads=2))(mask)
    >>> bool((out.values == binary_opening(mask).values).all())
    True
    """

    name = "multithread"
    in_process = True  # items run in this process: progress advances per item

    def __init__(self, *steps, threads=None):
        super().__init__(*steps)
        self.threads = _check_count("threads", threads)

    def map(self, func, items):
        items = list(items)
        if not items:
            return []
        workers = min(self.threads or cpu_count(), len(items))
        kernel_threads = _kernel_threads_for(workers)

        def run(item):
            with _kernel_threads(kernel_threads):
                return func(item)

        results = [None] * len(items)
        errors = {}
        with cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="florin") as pool:
            futures = {pool.submit(contextvars.copy_context().run, run, item): i for i, item in enumerate(items)}
            try:
                for fut in cf.as_completed(futures):
                    i = futures[fut]
                    try:
                        results[i] = fut.result()
                    except Exception as exc:
                        errors[i] = exc
                        break
            except BaseException:  # interrupted: do not start what is still queued
                for fut in futures:
                    fut.cancel()
                raise
            if errors:
                for fut in futures:
                    fut.cancel()
        if errors:
            raise errors[min(errors)]
        return results


# -- Multiprocess ----------------------------------------------------------------------------------
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
    if "numba" in sys.modules:
        try:
            from numba.np.ufunc import parallel

            if parallel._is_initialized and sys.modules["numba"].threading_layer() == "omp":
                return False
        except Exception:
            return False
    return True


_PRELOAD = ["florin.executors", "florin.tiling", "florin.thresholding", "florin.morphology"]


def _mp_context(start_method):
    """A context of ``multiprocess``, pathos' fork of :mod:`multiprocessing`."""
    import multiprocess as multiprocessing

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
    processes : int, optional
        Number of worker processes; default one per CPU core. Each worker's
        numba kernels use ``cpu_count // processes`` threads (at least 1).
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
    >>> pipe = florin.Serial(florin.tile(shape=(3, 4)), florin.Multiprocess(binary_opening(), processes=2))
    >>> bool((pipe(mask).values == binary_opening(mask).values).all())
    True
    """

    name = "multiprocess"

    def __init__(self, *steps, processes=None, start_method=None):
        super().__init__(*steps)
        self.processes = _check_count("processes", processes)
        if start_method is not None:
            import multiprocess

            valid = multiprocess.get_all_start_methods()
            if start_method not in valid:
                raise ParameterError(f"start_method must be one of {', '.join(valid)} (or None), got {start_method!r}")
        self.start_method = start_method

    def map(self, func, items):
        items = list(items)
        if not items:
            return []
        if _nested():  # already inside a worker: no process trees
            return [func(item) for item in items]
        size = self.processes or cpu_count()
        workers = min(size, len(items))
        pool = _process_pool(size, self.start_method)  # this thread's until the map ends
        try:
            return self._map_on(pool, func, items, workers, _kernel_threads_for(size))
        finally:
            pool.lock.release()

    @staticmethod
    def _map_on(pool, func, items, workers, kernel_threads):
        def on_broken(exc, unfinished):
            dead = pool.dead()
            _discard_process_pool(pool)
            raise WorkerError(
                f"a worker process of Multiprocess died{_exit_status(dead)} while running "
                f"({_describe_steps(func)}) on {_some(unfinished)}; the run was stopped. "
                "A worker dies when it is killed (e.g. by the out-of-memory killer: try fewer processes "
                "or smaller tiles), crashes in compiled code, or calls os._exit()"
            ) from exc

        shared = _share_tiles(items, pool)
        ok = False
        try:
            shipped = shared[1] if shared is not None else items
            results = _pool_map(pool.submit, func, shipped, workers, kernel_threads, on_broken, wait=pool.wait)
            ok = True
            return results
        finally:
            if not ok:  # a failure or an interrupt: stop the work still running, start afresh next time
                _discard_process_pool(pool)
            if shared is not None:
                _give_back(shared[0], pool)


# -- in-memory volumes travel through shared memory ------------------------------------------------
_SHARED_MIN_BYTES = 1 << 20  # smaller volumes are simply pickled with their tiles


class _SharedTile:
    """A tile of a volume copied once into shared memory: pickles as the block's name and geometry.

    ``keep`` tells the worker to keep the block mapped after its chunk: the
    parent reuses that block, its pool's, for the next maps (:meth:`_ProcessPool.take_block`).
    """

    __slots__ = ("block", "keep", "shape", "dtype", "dims", "coords", "attrs", "name", "info")

    def __init__(self, block, keep, shape, dtype, tile, info):
        self.block, self.keep, self.shape, self.dtype, self.info = block, keep, shape, dtype, info
        self.dims, self.name, self.attrs = tile.dims, tile.name, dict(tile.attrs)
        self.coords = {k: v.variable for k, v in tile.coords.items()}

    def resolve(self):
        """The tile: a read-only view of the shared volume (no copy)."""
        full = np.ndarray(self.shape, np.dtype(self.dtype), buffer=_attach_block(self.block, self.keep).buf)
        full.flags.writeable = False
        tile = xr.DataArray(full[self.info.read_slices], dims=self.dims, coords=self.coords,
                            attrs=self.attrs, name=self.name)
        return tilemeta.attach(tile, self.info)


_attached: dict = {}
_kept_names: set = set()  # blocks this worker keeps mapped between chunks (the parent reuses them)


def _attach_block(name, keep=False):
    from multiprocess import shared_memory  # pathos' multiprocessing

    block = _attached.get(name)
    if block is None:
        if keep:  # the parent replaced its kept block: the old one is no longer used
            _kept_names.clear()
        try:
            block = shared_memory.SharedMemory(name=name, track=False)  # Python >= 3.13
        except TypeError:
            # Registers the name with the parent's resource tracker, which the
            # workers share (started before the pool): a no-op, the parent
            # created and unlinks the block.
            block = shared_memory.SharedMemory(name=name)
        _attached[name] = block
    if keep:
        _kept_names.add(name)
    return block


def _detach_blocks():
    """Unmap shared volumes in a worker once no tile uses them, except the block the parent keeps."""
    for name, block in list(_attached.items()):
        if name in _kept_names:
            continue
        try:
            block.close()
        except BufferError:  # a result still views the block; try after the next chunk
            continue
        del _attached[name]


def _share_tiles(items, pool=None):
    """Put the volume of in-memory tiles into shared memory once; ``(block, refs)`` or None.

    Applies when every item is a tile viewing one C-contiguous array of the
    full volume's shape (what :func:`florin.tile` cuts from an in-memory
    volume). Workers then view their tile in the block instead of unpickling a
    copy, and the parent pickles nothing but references.
    """
    if len(items) < 2 or not all(isinstance(it, xr.DataArray) for it in items):
        return None
    first = items[0].variable._data
    base = first.base if isinstance(first, np.ndarray) else None
    if (not isinstance(base, np.ndarray) or base.dtype.hasobject or not base.flags.c_contiguous
            or base.nbytes < _SHARED_MIN_BYTES):
        return None
    infos = []
    for it in items:
        info, data = tilemeta.info_of(it), it.variable._data
        if info is None or tuple(info.full_shape) != base.shape or not isinstance(data, np.ndarray):
            return None
        expect = base[info.read_slices]
        if (data.base is not base or data.shape != expect.shape or data.strides != expect.strides
                or data.__array_interface__["data"][0] != expect.__array_interface__["data"][0]):
            return None
        infos.append(info)
    if base.nbytes > _available_memory() // 2:  # a copy must not crowd out the workers: pickle tiles instead
        return None
    kept = pool.block.size if pool is not None and pool.block is not None else 0
    if base.nbytes > kept and base.nbytes > _shared_memory_free() + kept:  # the old block is freed first
        # /dev/shm may be small (64 MiB in a default Docker container): writing past it kills the process
        return None
    block, keep = pool.take_block(base.nbytes) if pool is not None else (_new_block(base.nbytes), False)
    try:
        np.ndarray(base.shape, base.dtype, buffer=block.buf)[...] = base
        refs = [_SharedTile(block.name, keep, base.shape, base.dtype.str, it, info)
                for it, info in zip(items, infos, strict=True)]
    except BaseException:
        _give_back(block, pool)
        raise
    return block, refs


# Each pool keeps one block for its next maps: a fresh block costs a page fault
# per 4 KiB on first touch, in the parent and again in every worker, which takes
# longer than copying the volume (about 50 ms against 7 ms for 64 MiB).
_KEEP_MAX_BYTES = 1 << 30  # larger volumes get a block of their own, released after the map


def _new_block(nbytes):
    from multiprocess import shared_memory  # pathos' multiprocessing

    return shared_memory.SharedMemory(create=True, size=nbytes)


def _give_back(block, pool=None):
    """End a map's use of ``block``: a pool's kept block stays for the next map, any other is released."""
    if pool is None or block is not pool.block:
        _release_block(block)


def _available_memory() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:
        return 0


def _shared_memory_free() -> int:
    """Bytes free where shared-memory blocks live (``/dev/shm`` on Linux); unlimited if unknown."""
    import shutil

    try:
        return shutil.disk_usage("/dev/shm").free
    except OSError:
        return sys.maxsize


def _release_block(block):
    with contextlib.suppress(Exception):
        block.close()
    with contextlib.suppress(Exception):
        block.unlink()


_FORGET_KEPT = b""  # the control message; every task payload is a non-empty pickle


class _WorkerDied(Exception):
    """A worker process exited while it had tasks."""


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
        from multiprocess import resource_tracker

        ctx = _mp_context(start_method)
        self.start_method = ctx.get_start_method()
        resource_tracker.ensure_running()  # workers share it (shared-memory volumes)
        self.workers = []
        self.backlog = collections.deque()  # (payload, future) no worker could take yet
        self.lock = threading.Lock()  # held by the thread whose map uses the pool
        self.block = None  # the kept shared-memory block of in-memory volumes
        try:
            with _main_not_reimported(self.start_method):
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
                    proc.start()
                    child.close()
                    self.workers.append(_Worker(proc, conn))
        except BaseException:
            self.terminate()
            raise

    # -- the parent's side of a map ---------------------------------------------------------------
    def take_block(self, nbytes):
        """A shared-memory block of at least ``nbytes`` and whether it is the kept one; see :func:`_give_back`."""
        if nbytes > _KEEP_MAX_BYTES:
            return _new_block(nbytes), False
        if self.block is None or self.block.size < nbytes:
            old, self.block = self.block, None
            if old is not None:
                for w in self.workers:  # idle workers would hold the old block's memory until their next task
                    with contextlib.suppress(OSError):
                        w.conn.send_bytes(_FORGET_KEPT)
                _release_block(old)
            self.block = _new_block(nbytes)
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
        from multiprocess.connection import wait

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
        import time

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
            _release_block(block)

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
    import signal

    global _process_worker
    _process_worker = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops the workers
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
        if payload == _FORGET_KEPT:  # the parent replaced its kept block: unmap the old one (no reply)
            _kept_names.clear()
            _detach_blocks()
            continue
        conn.send_bytes(_run_chunk(payload))


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


def _some(labels, k=4) -> str:
    shown = ", ".join(labels[:k])
    more = f" and {len(labels) - k} more" if len(labels) > k else ""
    return f"one of: {shown}{more}" if len(labels) > 1 else (shown or "an item")


def _exit_status(processes) -> str:
    import signal

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


# -- MPI -------------------------------------------------------------------------------------------
_MPI_ENV = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")
_mpi_state: dict = {}
_spmd_lock = threading.Lock()


def _launched_by_mpiexec() -> bool:
    """Whether this process was started by ``mpiexec``/``srun`` with more than one process."""
    for var in _MPI_ENV:
        try:
            if int(os.environ.get(var, "1")) > 1:
                return True
        except ValueError:
            continue
    return "mpi4py.MPI" in sys.modules


def _mpi():
    """mpi4py's MPI module, configured to pickle with cloudpickle (lambdas, closures)."""
    from mpi4py import MPI as mpi

    if not _mpi_state.get("configured"):
        import cloudpickle

        mpi.pickle.__init__(cloudpickle.dumps, cloudpickle.loads)
        _mpi_state["configured"] = True
    return mpi


def _shared_pool() -> bool:
    """Whether this script runs under ``python -m mpi4py.futures`` (rank 0; other ranks serve)."""
    core = sys.modules.get("mpi4py.futures._core")
    return getattr(core, "SharedPool", None) is not None


def mpi_mode() -> str:
    """How :class:`MPI` maps here: ``'spmd'``, ``'shared'`` or ``'spawn'``.

    * ``'shared'``: ``mpiexec -n N python -m mpi4py.futures script.py``; rank 0
      runs the script, ranks 1..N-1 are the workers of an MPIPoolExecutor.
    * ``'spmd'``: ``mpiexec -n N python script.py`` (N > 1); every rank runs the
      script, items are split by rank and the results gathered on every rank.
    * ``'spawn'``: one process; an MPIPoolExecutor spawns the workers.
    """
    if _shared_pool():
        return "shared"
    if _process_worker:
        return "spawn"  # a spawned worker's COMM_WORLD is its pool, not a job to split
    if _launched_by_mpiexec() and _mpi().COMM_WORLD.Get_size() > 1:
        return "spmd"
    return "spawn"


def _enter_spmd():
    """Once per process in SPMD mode: only rank 0 writes; an uncaught error aborts the job."""
    with _spmd_lock:
        if "spmd" in _mpi_state:
            return _mpi_state["spmd"]
        mpi = _mpi()
        world = mpi.COMM_WORLD
        comm = world.Dup()
        try:
            from mpi4py.util import pkl5

            gather_comm = pkl5.Intracomm(comm)  # no 2 GiB limit on gathered results
        except Exception:
            gather_comm = comm
        local = world.Split_type(mpi.COMM_TYPE_SHARED)
        _mpi_state["local_size"] = local.Get_size()
        local.Free()
        _run.set_writer(world.Get_rank() == 0)
        _install_abort_hook(mpi)
        _mpi_state["spmd"] = (comm, gather_comm)
        return _mpi_state["spmd"]


def _install_abort_hook(mpi):
    """An uncaught exception on one rank must end the job, not leave the others waiting."""
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        try:
            previous(exc_type, exc, tb)
            sys.stderr.flush()
        finally:
            mpi.COMM_WORLD.Abort(1)

    if not getattr(sys.excepthook, "_florin_mpi_abort", False):
        hook._florin_mpi_abort = True
        sys.excepthook = hook


def _local_ranks(default) -> int:
    """Ranks on this node, from the launcher's environment (no collective call)."""
    for var in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"):
        try:
            return max(1, int(os.environ[var]))
        except (KeyError, ValueError):
            continue
    return max(1, default)


_spawn_pools: dict = {}


def _spawn_pool(max_workers):
    """One MPIPoolExecutor per worker count, kept for the life of the process."""
    from mpi4py.futures import MPIPoolExecutor

    pool = _spawn_pools.get(max_workers)
    if pool is None:
        if not _spawn_pools:
            atexit.register(_shutdown_spawn_pools)
        pool = _spawn_pools[max_workers] = MPIPoolExecutor(max_workers=max_workers, main=False)
    return pool


def _shutdown_spawn_pools():
    for pool in list(_spawn_pools.values()):
        with contextlib.suppress(Exception):
            pool.shutdown(wait=True)
    _spawn_pools.clear()


class MPI(Pipeline):
    """Pipeline that maps its steps over items on MPI processes (mpi4py).

    It works in the three ways MPI programs are started:

    * ``mpiexec -n N python script.py`` (SPMD, no dynamic process spawning
      needed): every rank runs the whole script; the items of each map are
      split round-robin over the ranks, and every rank receives all results, so
      all ranks go on identically. Only rank 0 writes files
      (:func:`florin.save` is a no-op on the others), and an uncaught exception
      on any rank aborts the job instead of leaving the others waiting.
    * ``mpiexec -n N python -m mpi4py.futures script.py``: rank 0 runs the
      script, the other N - 1 ranks are the workers.
    * ``python script.py``: an ``mpi4py.futures.MPIPoolExecutor`` spawns the
      workers (needs an MPI with dynamic process management).

    Steps and items are pickled with cloudpickle; a file-backed volume's
    tiles travel as file references and each worker reads its own slice.

    Parameters
    ----------
    *steps : callable
        The steps applied to every item (see :class:`florin.Pipeline`).
    max_workers : int, optional
        Most workers (ranks) to use. Default: all ranks (SPMD, shared pool), or
        ``$MPI4PY_FUTURES_MAX_WORKERS`` or one per CPU core (spawn).

    Examples
    --------
    >>> import florin
    >>> from florin.morphology import binary_opening
    >>> florin.MPI(binary_opening(), max_workers=2)
    MPI(binary_opening())
    """

    name = "mpi"

    def __init__(self, *steps, max_workers=None):
        super().__init__(*steps)
        self.max_workers = _check_count("max_workers", max_workers)
        # Under mpiexec, enter SPMD mode as soon as the pipeline is built, so that
        # ranks other than 0 skip writes anywhere in the script.
        if _launched_by_mpiexec() and not _nested() and mpi_mode() == "spmd":
            _enter_spmd()

    def map(self, func, items):
        items = list(items)
        if not items:
            return []
        if _nested():  # inside a worker, or inside an item of an SPMD map
            return [func(item) for item in items]
        mode = mpi_mode()
        if mode == "spmd":
            return self._spmd_map(func, items)
        if mode == "shared":
            from mpi4py.futures import MPIPoolExecutor

            _mpi()
            size = _mpi().COMM_WORLD.Get_size()
            workers = min(self.max_workers or size - 1, size - 1, len(items))
            with MPIPoolExecutor(main=False) as pool:
                return self._pool_map(pool, func, items, workers, _kernel_threads_for(_local_ranks(size)))
        _mpi()
        max_workers = self.max_workers or _default_spawn_workers()
        pool = _spawn_pool(max_workers)
        try:
            return self._pool_map(pool, func, items, min(max_workers, len(items)), _kernel_threads_for(max_workers))
        except WorkerError:
            _spawn_pools.pop(max_workers, None)
            raise

    @staticmethod
    def _pool_map(pool, func, items, workers, kernel_threads):
        def on_broken(exc, unfinished):
            raise WorkerError(
                f"an MPI worker failed while running ({_describe_steps(func)}) on {_some(unfinished)}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

        submit = lambda payload: pool.submit(_run_chunk, payload)  # noqa: E731
        return _pool_map(submit, func, items, workers, kernel_threads, on_broken)

    def _spmd_map(self, func, items):
        comm, gather_comm = _enter_spmd()
        size, rank = comm.Get_size(), comm.Get_rank()
        workers = min(self.max_workers or size, size)
        local = []
        token = _in_worker.set(True)
        try:
            with _kernel_threads(_kernel_threads_for(_mpi_state["local_size"])):
                for i in range(rank, len(items), workers) if rank < workers else ():
                    try:
                        local.append((i, True, _to_wire(func(items[i]))))
                    except Exception as exc:
                        local.append((i, False, _capture(exc)))
                        local_error = (i, exc)
                        break
                else:
                    local_error = None
        finally:
            _in_worker.reset(token)
        try:
            blob = _dumps_fast(local)
        except Exception as exc:
            err = WorkerError(f"rank {rank} cannot send its results to the other ranks: {exc}")
            blob = _dumps([(local[0][0] if local else None, False, _capture(err))])
        _idle_until_all_arrive(comm)
        results = [None] * len(items)
        errors = {}
        for part in _allgather_bytes(comm, gather_comm, blob):
            for index, ok, value in _loads(part):
                if ok:
                    results[index] = _from_wire(value)
                else:
                    errors[index] = value
        if errors:
            first = min(errors, key=lambda i: (i is None, i or 0))
            if local_error is not None and local_error[0] == first:
                raise local_error[1]  # this rank's own exception, with its live traceback
            raise _rebuild(errors[first])
        return results


def _allgather_bytes(comm, gather_comm, blob):
    """Every rank's ``blob``, on every rank: one raw ``Allgatherv`` (no pickling of the bytes)."""
    sizes = comm.allgather(len(blob))
    if sum(sizes) >= 2**31 - 1:  # beyond 32-bit counts: mpi4py's chunked pickle-5 transport
        return gather_comm.allgather(blob)
    from mpi4py import MPI as mpi

    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    out = bytearray(sum(sizes))
    comm.Allgatherv([blob, mpi.BYTE], [out, (sizes, offsets), mpi.BYTE])
    view = memoryview(out)
    return [view[o:o + n] for o, n in zip(offsets, sizes, strict=True)]


def _idle_until_all_arrive(comm):
    """Wait for every rank without spinning a core (MPI's blocking calls busy-poll).

    Ranks that finish their share early sleep between tests of a non-blocking
    barrier, leaving the cores to the ranks still working (which matters when
    ranks share cores).
    """
    import time

    request = comm.Ibarrier()
    delay = 1e-4
    while not request.Test():
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


def _default_spawn_workers() -> int:
    env = os.environ.get("MPI4PY_FUTURES_MAX_WORKERS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    return cpu_count()

