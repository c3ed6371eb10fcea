"""Real MPI jobs: SPMD semantics (every rank continues identically, rank 0 writes) and the install."""

import os
import shutil
import sys
import textwrap

import pytest
from executor_helpers import MPI_TIMEOUT, mpi_available, run_job

pytestmark = [pytest.mark.mpi, pytest.mark.skipif(mpi_available() is not None, reason=str(mpi_available()))]


def test_mpiexec_from_the_mpi_extra_runs():
    mpiexec = shutil.which("mpiexec")
    proc = run_job([mpiexec, "--version"], timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr
    proc = run_job([mpiexec, "-n", "2", sys.executable, "-c",
                    "from mpi4py import MPI; print(MPI.COMM_WORLD.Get_size())"], timeout=MPI_TIMEOUT)
    assert proc.returncode == 0 and "".join(proc.stdout.split()) == "22", proc.stderr  # both ranks, any order


SPMD_SCRIPT = textwrap.dedent(
    """
    import os
    import sys

    import numpy as np

    import florin
    import florin.morphology as morphology
    from florin import _run
    from florin.executors import mpi_mode

    rank = int(os.environ["PMI_RANK"])
    out = sys.argv[1]
    image = np.zeros((9, 11), bool)
    image[::3, ::4] = True
    pipe = florin.Serial(
        florin.tile(shape=(4, 4)),
        florin.MPI(morphology.binary_dilation()),
        florin.save(out),  # overwrite=False: a second writer would fail
    )
    early = "early.npy"
    florin.io.write(early, np.arange(3))  # after florin.MPI(...) was built: rank 0 only
    result = pipe(image)
    again = florin.Serial(florin.tile(shape=(3, 5)), florin.MPI(np.logical_not))(result)
    with open(f"rank{rank}.txt", "w") as f:
        f.write(f"{_run.is_writer()} {mpi_mode()} {int(result.values.sum())} {int(again.values.sum())}")
    """
)


@pytest.mark.parametrize("ranks", [2, 3])
def test_spmd_every_rank_continues_identically_and_only_rank_0_writes(tmp_path, ranks):
    import numpy as np

    import florin
    import florin.morphology as morphology

    script = tmp_path / "spmd.py"
    script.write_text(SPMD_SCRIPT)
    proc = run_job(["mpiexec", "-n", str(ranks), sys.executable, str(script), "out.npy"], cwd=tmp_path,
                   env={**os.environ, "NUMBA_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    image = np.zeros((9, 11), bool)
    image[::3, ::4] = True
    expected = int(morphology.binary_dilation(image).values.sum())
    lines = [(tmp_path / f"rank{r}.txt").read_text().split() for r in range(ranks)]
    assert lines[0] == ["True", "spmd", str(expected), str(99 - expected)]
    for line in lines[1:]:
        assert line == ["False", "spmd", str(expected), str(99 - expected)]
    np.testing.assert_array_equal(florin.io.read(tmp_path / "out.npy").values,
                                  morphology.binary_dilation(image).values)
    assert (tmp_path / "early.npy").exists()
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p or p.startswith(".")]
