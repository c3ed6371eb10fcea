"""What travels between the parent and process or MPI workers: tasks, results, exceptions.

A task is a chunk of items and the pickled steps; :func:`_run_chunk` runs it in
a worker and :func:`_pool_map` hands chunks to a pool and gathers the results.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import pickle
import traceback
import uuid

import cloudpickle
import numpy as np
import xarray as xr

from florin import _run
from florin.errors import PipelineError, WorkerError, _rebuild_pipeline_error
from florin.executors import _common, _shm
from florin.executors._common import _chunks, _in_worker, _kernel_threads, _label


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
    return cloudpickle.dumps(obj)


def _dumps_fast(obj) -> bytes:
    """Pickle with the standard pickler (about twice as fast on arrays), cloudpickle if it must."""
    try:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return _dumps(obj)
    # Workers do not import the user's script: what it defines must travel by value.
    return _dumps(obj) if b"__main__" in data else data


def _loads(data):

    return pickle.loads(data)


def _round_trips(obj):
    """``obj`` pickled, if it also unpickles (an exception may pickle but not rebuild), else None."""
    try:
        data = _dumps(obj)
        _loads(data)
        return data
    except Exception:
        return None


def _portable(exc) -> bytes:
    """``exc`` pickled so that it unpickles (or a :class:`RemoteException` with its type and message)."""
    data = _round_trips(exc)
    if data is None:
        data = _dumps(RemoteException(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"))
    return data


def _standing_in(exc, item):
    """A :class:`PipelineError` for a worker's exception that cannot travel, naming its operator and tile origin.

    The operator and origin come from the exception (``_call_step`` notes them on
    any florin error a step raises) or, for the origin, from the item.
    """
    operator = getattr(exc, "operator", None)
    origin = getattr(exc, "origin", None)
    if origin is None:
        info = _common._tile_info(item)
        origin = info.origin if info is not None else None
    if isinstance(exc, PipelineError):
        # A florin error whose chained cause could not travel: itself again, without that cause.
        again = _round_trips(_rebuild_pipeline_error(type(exc), str(exc), operator, origin))
        if again is not None:
            return again
        message = str(exc)
    else:
        step = f"step `{operator}`" if operator else "a step"
        where = f" on the tile at origin {tuple(origin)}" if origin is not None else ""
        message = f"{step} failed{where}: {type(exc).__module__}.{type(exc).__qualname__}: {exc}"
    return _dumps(PipelineError(message + " (its exception could not be sent from the worker; "
                                "the worker's traceback follows)", operator=operator, origin=origin))


def _capture(exc, item=None) -> tuple:
    """A worker's exception as ``(exception, cause, traceback text)``, each picklable.

    An exception that cannot travel becomes a :class:`~florin.errors.PipelineError`
    naming the operator and the origin of ``item``'s tile; its cause a
    :class:`RemoteException`; the traceback text always travels.
    """
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    cause = exc.__cause__
    data = _round_trips(exc)
    if data is None:
        data = _standing_in(exc, item)
    return (data, _portable(cause) if cause is not None else None, tb)


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
    _common._process_worker = True
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
                    out.append((index, False, _capture(exc, item)))
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
        if _shm._attached:
            _shm._detach_blocks()


def _collect(data, results: list, errors: dict) -> None:
    """Sort a worker's pickled ``(index, ok, value)`` list into ``results`` and ``errors``."""
    for index, ok, value in _loads(data):
        if ok:
            results[index] = _from_wire(value)
        else:
            errors[index] = value


class _WorkerDied(Exception):
    """A pool broke: a worker process exited while the map needed it."""


def _raise_first(errors: dict, items):
    index = min(errors, key=lambda i: (i is None, i if i is not None else 0))
    raise _rebuild(errors[index])


def _pool_imap(submit, func, items, workers, kernel_threads, on_broken, chunksize=None, wait=None):
    """Map ``func`` over ``items`` with ``submit(bytes) -> Future`` (process or MPI pool); yield ``(index, result)``.

    Results are yielded chunk by chunk as workers send them back. At most two
    chunks per worker are in flight (fewer items per chunk when the run's
    memory budget is tight, see :func:`florin._run.max_in_flight`), so neither
    a large in-memory volume nor the results are held all at once. The first
    failure stops the run. ``wait(futures)`` returns the done ones (default
    :func:`concurrent.futures.wait`); a future that fails means a worker died,
    and ``on_broken`` ends the run.
    """
    n = len(items)
    if chunksize is None:
        default = max(1, math.ceil(n / (16 * max(1, workers))))
        chunksize = max(1, min(default, _run.max_in_flight(2 * workers * default) // (2 * max(1, workers))))
    chunks = _chunks(n, workers, chunksize)
    token = uuid.uuid4().hex
    func_data = _dumps(func)
    pending = {}
    todo = iter(chunks)

    def submit_next():
        rng = next(todo, None)
        if rng is None:
            return False
        chunk = [(i, items[i]) for i in rng]
        pending[submit(_dumps_fast((token, func_data, chunk, kernel_threads)))] = rng
        return True

    if wait is None:
        wait = lambda fs: cf.wait(fs, return_when=cf.FIRST_COMPLETED)[0]  # noqa: E731
    try:
        for _ in range(2 * workers):
            if not submit_next():
                break
        while pending:
            try:
                done = wait(list(pending))
            except _WorkerDied as exc:  # the pool broke outside any one task
                on_broken(exc, [_label(items[i], i) for r in pending.values() for i in r])
                raise  # on_broken raises; this is a safety net
            errors = {}
            ready = []
            for fut in sorted(done, key=lambda f: pending[f].start):
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
                        ready.append((index, _from_wire(value)))
                    else:
                        errors[index] = value
                del data
            if errors:
                _raise_first(errors, items)
            while len(pending) < 2 * workers and submit_next():
                pass
            while ready:
                yield ready.pop(0)
    finally:
        for fut in pending:  # a failure or a consumer that stopped: cancel what has not started
            fut.cancel()


def _pool_map(submit, func, items, workers, kernel_threads, on_broken, chunksize=None, wait=None):
    """:func:`_pool_imap` as a list of the results in item order."""
    results = [None] * len(items)
    for index, result in _pool_imap(submit, func, items, workers, kernel_threads, on_broken, chunksize, wait):
        results[index] = result
    return results
