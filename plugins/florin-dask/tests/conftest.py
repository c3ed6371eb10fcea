"""Real Dask clusters for the tests, all on 127.0.0.1.

``subprocess_cluster`` starts ``dask scheduler`` and ``dask worker`` as separate
processes (random free ports, their own process groups) and kills them at
teardown; every wait has a timeout so that a broken cluster fails the test
instead of hanging it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

HOST = "127.0.0.1"
START_TIMEOUT = 90

# numba's OpenMP threads wait passively between kernels, as in the core suite (see the root conftest.py): spinning
# they take the CPU that other processes of the test (the cluster's workers) need.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _spawn(args, env, log):
    return subprocess.Popen(
        [sys.executable, "-m", "dask", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,  # its own process group: teardown kills the worker's children too
    )


def _kill(proc, timeout=10):
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)


@contextlib.contextmanager
def subprocess_cluster(tmp_path, n_workers=2, *, nanny=True, scheduler_env=None):
    """``dask scheduler`` + ``n_workers`` ``dask worker`` processes; yields the scheduler address."""
    from distributed import Client

    port = free_port()
    address = f"tcp://{HOST}:{port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs, logs = [], []

    def spawn(args, name, extra_env=None):
        log = open(tmp_path / f"{name}-{port}.log", "w")  # noqa: SIM115 (closed at teardown)
        logs.append(log)
        procs.append(_spawn(args, {**env, **(extra_env or {})}, log))

    try:
        spawn(["scheduler", "--host", HOST, "--port", str(port), "--no-dashboard"], "scheduler", scheduler_env)
        for i in range(n_workers):
            args = [
                "worker",
                address,
                "--host",
                HOST,
                "--nthreads",
                "1",
                "--name",
                f"w{i}",
                "--no-dashboard",
                "--death-timeout",
                "60",
                "--memory-limit",
                "0",
            ]
            spawn(args + ([] if nanny else ["--no-nanny"]), f"worker{i}")
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                try:
                    with Client(address, timeout=5, set_as_default=False) as client:
                        client.wait_for_workers(n_workers, timeout=max(1, deadline - time.monotonic()))
                    break
                except OSError:
                    if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                        raise
                    time.sleep(0.5)
        except Exception as exc:
            for log in logs:
                log.flush()
            text = "\n".join(f"--- {log.name}\n" + open(log.name).read()[-3000:] for log in logs)
            raise RuntimeError(f"the subprocess Dask cluster did not start ({exc}); logs:\n{text}") from exc
        yield address
    finally:
        for proc in reversed(procs):
            _kill(proc)
        for log in logs:
            log.close()


@pytest.fixture(scope="module")
def local_client():
    """A real LocalCluster with 2 worker processes (1 thread each) and a client to it."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host=HOST, dashboard_address=None)
    client = Client(cluster, set_as_default=False)
    try:
        client.wait_for_workers(2, timeout=START_TIMEOUT)
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture(scope="module")
def scheduler_address(tmp_path_factory):
    """A ``dask scheduler`` with two ``dask worker`` processes, shared by a test module."""
    with subprocess_cluster(tmp_path_factory.mktemp("dask"), n_workers=2) as address:
        yield address


@pytest.fixture(scope="module")
def volume():
    """A seeded phantom: dark cells and vessels on an uneven background (uint16)."""
    from florin.data import phantom

    return phantom((20, 96, 128), seed=3).image


@pytest.fixture
def mask(volume):
    return volume < np.percentile(volume, 30)
