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

from florin.executors._common import cpu_count
from florin.executors._mpi import MPI, mpi_mode
from florin.executors._multithread import Multithread
from florin.executors._processes import Multiprocess, shutdown_pools
from florin.executors._wire import RemoteException, RemoteTraceback

__all__ = [
    "MPI", "Multiprocess", "Multithread", "RemoteException", "RemoteTraceback", "cpu_count", "mpi_mode", "shutdown_pools",
]

for _obj in (MPI, Multiprocess, Multithread, RemoteException, RemoteTraceback, cpu_count, mpi_mode, shutdown_pools):
    _obj.__module__ = __name__  # documented, and shown in reprs and tracebacks, where users import them from
del _obj
