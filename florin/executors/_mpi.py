"""The MPI executor: items over MPI ranks (SPMD under mpiexec, an mpi4py.futures pool, or spawned workers)."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time

import cloudpickle

from florin import _run
from florin.errors import WorkerError
from florin.executors import _common
from florin.executors._common import (
    _describe_steps,
    _in_worker,
    _kernel_threads,
    _kernel_threads_for,
    _nested,
    _some,
    _worker_count,
    cpu_count,
)
from florin.executors._wire import (
    _capture,
    _collect,
    _dumps,
    _dumps_fast,
    _pool_imap,
    _rebuild,
    _run_chunk,
    _to_wire,
)
from florin.pipelines import Pipeline

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
        mpi.pickle.__init__(cloudpickle.dumps, cloudpickle.loads)
        _mpi_state["configured"] = True
    return mpi


def _pool_executor():
    """mpi4py.futures' ``MPIPoolExecutor``, after :func:`_mpi` configured the pickling."""
    _mpi()
    from mpi4py.futures import MPIPoolExecutor

    return MPIPoolExecutor


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
    if _common._process_worker:
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
        _run.set_agreement(lambda thunk: _agree(comm, thunk))
        _install_abort_hook(mpi)
        _mpi_state["spmd"] = (comm, gather_comm)
        return _mpi_state["spmd"]


def _agree(comm, thunk):
    """Run ``thunk`` on rank 0 and give every rank its result, or raise its error on every rank."""
    if _nested():  # inside an item: one rank only, nobody to agree with
        return thunk()
    if comm.Get_rank() == 0:
        try:
            outcome = (True, thunk())
        except Exception as exc:
            comm.bcast((False, _capture(exc)), root=0)
            raise
        comm.bcast(outcome, root=0)
        return outcome[1]
    ok, value = comm.bcast(None, root=0)
    if not ok:
        raise _rebuild(value)
    return value


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
    pool = _spawn_pools.get(max_workers)
    if pool is None:
        if not _spawn_pools:
            atexit.register(_shutdown_spawn_pools)
        pool = _spawn_pools[max_workers] = _pool_executor()(max_workers=max_workers, main=False)
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
    workers : int, optional
        Most workers (ranks) to use. Default: all ranks (SPMD, shared pool), or
        ``$MPI4PY_FUTURES_MAX_WORKERS`` or one per CPU core (spawn).
    max_workers : int, optional
        Deprecated name of ``workers`` (a
        :class:`~florin.errors.FlorinDeprecationWarning`); ``.max_workers``
        reads ``workers``.

    Examples
    --------
    >>> import florin
    >>> from florin.morphology import binary_opening
    >>> florin.MPI(binary_opening(), workers=2)
    MPI(binary_opening())
    """

    name = "mpi"

    #: Deprecated constructor names and the option they stand for (pipeline files write only the new one).
    deprecated_options = {"max_workers": "workers"}

    def __init__(self, *steps, workers=None, max_workers=None):
        super().__init__(*steps)
        self.workers = _worker_count("MPI", workers, max_workers=max_workers)
        # Under mpiexec, enter SPMD mode as soon as the pipeline is built, so that
        # ranks other than 0 skip writes anywhere in the script.
        if _launched_by_mpiexec() and not _nested() and mpi_mode() == "spmd":
            _enter_spmd()

    @property
    def max_workers(self):
        """The worker count under its old name (``workers``)."""
        return self.workers

    def maps_blocks(self) -> bool:
        """Not in SPMD mode: every rank has its own scratch directory, so each runs a planned step's blocks itself."""
        return mpi_mode() != "spmd"

    def imap(self, func, items):
        """Yield ``(index, result)``: as pool workers send them back, or (SPMD) once every rank has them all."""
        items = list(items)
        if not items:
            return
        if _nested():  # inside a worker, or inside an item of an SPMD map
            for i, item in enumerate(items):
                yield i, func(item)
            return
        mode = mpi_mode()
        if mode == "spmd":
            # Every rank goes on with every result (they all run the rest of the script): gathered, then yielded.
            yield from enumerate(self._spmd_map(func, items))
            return
        if mode == "shared":
            pool_executor = _pool_executor()
            size = _mpi().COMM_WORLD.Get_size()
            workers = min(self.workers or size - 1, size - 1, len(items))
            with pool_executor(main=False) as pool:
                yield from self._pool_imap(pool, func, items, workers, _kernel_threads_for(_local_ranks(size)))
            return
        _mpi()
        max_workers = self.workers or _default_spawn_workers()
        pool = _spawn_pool(max_workers)
        try:
            yield from self._pool_imap(pool, func, items, min(max_workers, len(items)), _kernel_threads_for(max_workers))
        except WorkerError:
            _spawn_pools.pop(max_workers, None)
            raise

    @staticmethod
    def _pool_imap(pool, func, items, workers, kernel_threads):
        def on_broken(exc, unfinished):
            raise WorkerError(
                f"an MPI worker failed while running ({_describe_steps(func)}) on {_some(unfinished)}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

        submit = lambda payload: pool.submit(_run_chunk, payload)  # noqa: E731
        return _pool_imap(submit, func, items, workers, kernel_threads, on_broken)

    def _spmd_map(self, func, items):
        comm, gather_comm = _enter_spmd()
        size, rank = comm.Get_size(), comm.Get_rank()
        workers = min(self.workers or size, size)
        local = []
        token = _in_worker.set(True)
        try:
            with _kernel_threads(_kernel_threads_for(_mpi_state["local_size"])):
                for i in range(rank, len(items), workers) if rank < workers else ():
                    try:
                        local.append((i, True, _to_wire(func(items[i]))))
                    except Exception as exc:
                        local.append((i, False, _capture(exc, items[i])))
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
            _collect(part, results, errors)
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
    mpi = _mpi()
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
