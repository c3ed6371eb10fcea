"""One helper that runs the same pipelines under every installed executor.

``assert_executors_agree(cases, tmp_path)`` runs each case with ``florin.Serial``
and then with every executor in the registry (Multithread, Multiprocess, any
plugin executor such as florin-dask) in this process, and with ``florin.MPI``
in real MPI jobs (subprocesses with a hard timeout):

* ``spmd-2`` / ``spmd-3``: ``mpiexec -n 2|3 python _mpi_runner.py`` (every rank
  runs the script; every rank's result is checked),
* ``spawn``: ``python _mpi_runner.py`` (an MPIPoolExecutor spawns 2 workers),
* ``futures-3``: ``mpiexec -n 3 python -m mpi4py.futures _mpi_runner.py``.

A case is ``build(executor) -> pipeline`` plus its input: ``executor(*steps)``
makes the nested parallel pipeline, so the same ``build`` describes the
pipeline under every executor. Results must equal Serial's exactly (values,
dtype, dims, coords; region tables row for row).

Import it from any test module: ``from executor_helpers import assert_executors_agree``.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import xarray as xr

import florin
from florin.registry import get_registry

RUNNER = Path(__file__).parent / "executors" / "_mpi_runner.py"

#: Options each built-in executor runs with in the helper (2 workers: the CI machine has 2 cores).
OPTIONS = {"multithread": {"workers": 2}, "multiprocess": {"workers": 2}, "mpi": {"workers": 2}}

#: The MPI launches, by name: (mpiexec ranks or None, run under ``-m mpi4py.futures``).
MPI_LAUNCHES = {"spmd-2": (2, False), "spmd-3": (3, False), "spawn": (None, False), "futures-3": (3, True)}

#: Hard limit for one MPI job (they start 2-3 Python processes on a shared machine).
MPI_TIMEOUT = 240


def mpi_available() -> str | None:
    """Why MPI jobs cannot run here, or None when they can."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install '.[mpi]')"
    if shutil.which("mpiexec") is None:
        return "mpiexec is not on PATH (pip install '.[mpi]' brings the mpich wheel)"
    return None


def executor(name, **options):
    """``make(*steps)`` for the registered executor ``name`` with the helper's options."""
    cls = get_registry().executor(name)
    return functools.partial(cls, **{**OPTIONS.get(name, {}), **options})


def in_process_executors() -> dict:
    """Every registered executor except Serial and MPI (MPI runs in real MPI jobs)."""
    return {name: executor(name) for name in get_registry().executors if name not in ("serial", "mpi")}


def assert_same(result, expected, where=""):
    """Exact equality of two pipeline results."""
    if isinstance(result, BaseException):
        raise AssertionError(f"{where}: raised {type(result).__name__}: {result}") from result
    if isinstance(expected, xr.DataArray):
        assert isinstance(result, xr.DataArray), f"{where}: got {type(result).__name__}, expected a DataArray"
        assert result.dtype == expected.dtype, f"{where}: dtype {result.dtype} != {expected.dtype}"
        assert result.dims == expected.dims, f"{where}: dims {result.dims} != {expected.dims}"
        np.testing.assert_array_equal(result.values, expected.values, err_msg=where)
        for name, coord in expected.coords.items():
            np.testing.assert_array_equal(result.coords[name].values, coord.values, err_msg=f"{where}: coord {name}")
        return
    to_frame = getattr(expected, "to_dataframe", None)
    if callable(to_frame):
        import pandas as pd

        pd.testing.assert_frame_equal(result.to_dataframe(), expected.to_dataframe(), obj=where or "regions")
        return
    if isinstance(expected, list | tuple):
        assert len(result) == len(expected), where
        for i, (r, e) in enumerate(zip(result, expected, strict=True)):
            assert_same(r, e, f"{where}[{i}]")
        return
    assert result == expected, where


def run_job(cmd, *, timeout=MPI_TIMEOUT, **kwargs) -> subprocess.CompletedProcess:
    """Run an MPI job in its own session; on timeout kill all of it and fail.

    Its own session because MPICH's process manager kills the whole process
    group when a rank dies, which would otherwise include pytest.
    """
    import signal

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"MPI job {' '.join(map(str, cmd))} did not finish within {timeout} s:\n{out}\n{err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def run_mpi(cases, tmp_path, launch, *, timeout=MPI_TIMEOUT) -> dict:
    """Run ``{name: (pipeline, data)}`` in one MPI job; ``{name: [result per rank]}``."""
    ranks, futures = MPI_LAUNCHES[launch]
    job = Path(tmp_path) / f"mpi-{launch}"
    job.mkdir(parents=True, exist_ok=True)
    with open(job / "cases.pkl", "wb") as f:
        cloudpickle.dump(cases, f)
    cmd = [sys.executable]
    if futures:
        cmd += ["-m", "mpi4py.futures"]
    cmd += [str(RUNNER), str(job)]
    if ranks is not None:
        cmd = ["mpiexec", "-n", str(ranks), *cmd]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*_test_dirs(), os.environ.get("PYTHONPATH", "")])}
    env.setdefault("NUMBA_NUM_THREADS", "1")  # 2-3 ranks share the machine's cores
    proc = run_job(cmd, timeout=timeout, env=env, cwd=job)
    assert proc.returncode == 0, f"MPI job {launch} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    results = {}
    n = ranks if (ranks and not futures) else 1
    for name in cases:
        results[name] = []
        for rank in range(n):
            with open(job / f"{name}.rank{rank}.pkl", "rb") as f:
                results[name].append(cloudpickle.load(f))
    return results


def _test_dirs():
    here = Path(__file__).parent
    return [str(here), str(here / "executors"), *(str(p) for p in sys.path if p.startswith(str(here)))]


def assert_executors_agree(cases, tmp_path, *, mpi=tuple(MPI_LAUNCHES), executors=None):
    """Run every case under every executor and assert each result equals Serial's.

    Parameters
    ----------
    cases : dict
        ``{name: (build, data)}``; ``build(make)`` returns the pipeline whose
        parallel parts are made by ``make(*steps)``; ``data`` is its input.
    tmp_path : path
        Where MPI jobs keep their files.
    mpi : tuple of str
        Which MPI launches to run (keys of :data:`MPI_LAUNCHES`); skipped, with
        a note, when MPI is not installed.
    executors : dict, optional
        ``{name: make}`` to run in this process; default every registered one.

    Returns
    -------
    dict
        ``{case: {executor: result}}`` (Serial's under ``'serial'``).
    """
    executors = in_process_executors() if executors is None else executors
    out = {}
    for case, (build, data) in cases.items():
        expected = build(florin.Serial)(data)
        out[case] = {"serial": expected}
        for name, make in executors.items():
            result = build(make)(data)
            assert_same(result, expected, f"{case} under {name}")
            out[case][name] = result
    if mpi and "mpi" in get_registry().executors:
        why = mpi_available()
        if why is not None:
            pytest.skip(f"MPI part not run: {why}")
        make = executor("mpi")
        jobs = {case: (build(make), data) for case, (build, data) in cases.items()}
        for launch in mpi:
            for case, per_rank in run_mpi(jobs, tmp_path, launch).items():
                for rank, result in enumerate(per_rank):
                    assert_same(result, out[case]["serial"], f"{case} under MPI {launch} (rank {rank})")
                out[case][f"mpi-{launch}"] = per_rank[0]
    return out


# -- which process ran what an executor mapped (test-only hook) ---------------------------------------
class _Logged:
    """What a :func:`logging_executor` maps: runs ``func`` and appends its name to this process's log file."""

    def __init__(self, func, folder):
        self.func, self.folder, self.parent = func, str(folder), os.getpid()
        self.steps = getattr(func, "steps", None)  # executors name the steps in errors

    def __call__(self, item):
        result = self.func(item)
        name = getattr(getattr(self.func, "func", self.func), "__name__", type(self.func).__name__)
        where = "parent" if os.getpid() == self.parent else "worker"
        with open(os.path.join(self.folder, f"{where}-{os.getpid()}.log"), "a") as f:
            f.write(name + "\n")
        return result


def logging_executor(cls, folder):
    """A subclass of the executor class ``cls`` whose every map logs which process ran which function.

    Each call of a mapped function appends the function's name (a block
    function's ``__name__`` for :mod:`florin.blockwise`'s partials) to
    ``folder/worker-PID.log``, or ``folder/parent-PID.log`` when it ran in the
    process that started the map. :func:`logged_calls` reads them back.
    """
    def imap(self, func, items):
        return cls.imap(self, _Logged(func, folder), items)

    return type(f"Logging{cls.__name__}", (cls,), {"imap": imap, "__module__": __name__})


def logged_calls(folder) -> dict:
    """``{'parent': set of names, 'worker': set of names, 'worker_pids': set of pids}`` from the logs."""
    calls = {"parent": set(), "worker": set(), "worker_pids": set()}
    for log in Path(folder).glob("*.log"):
        where, pid = log.stem.split("-")
        calls[where] |= set(log.read_text().split())
        if where == "worker":
            calls["worker_pids"].add(int(pid))
    return calls
