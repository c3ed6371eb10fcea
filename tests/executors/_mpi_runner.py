"""Run pickled test pipelines in an MPI job (used by tests/executor_helpers.py).

Usage: ``[mpiexec -n N] python [-m mpi4py.futures] _mpi_runner.py JOBDIR``

``JOBDIR/cases.pkl`` holds ``{name: (pipeline, data)}``. Each rank that runs
this script writes ``JOBDIR/<name>.rank<R>.pkl`` with its result (written with
pickle directly, not florin.io, so that every SPMD rank's result is checked),
or the exception it raised.
"""

import os
import sys


def main(job):
    import cloudpickle

    rank = int(os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))
    with open(os.path.join(job, "cases.pkl"), "rb") as f:
        cases = cloudpickle.load(f)
    for name, (pipeline, data) in cases.items():
        try:
            result = pipeline(data)
        except Exception as exc:  # recorded, the test decides
            result = exc
        with open(os.path.join(job, f"{name}.rank{rank}.pkl"), "wb") as f:
            cloudpickle.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
