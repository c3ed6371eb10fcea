"""`mpiexec -n N florin run ... --executor mpi` runs as one MPI job and equals the serial run."""

import shutil
import sys

import numpy as np
import pytest
from executor_helpers import MPI_TIMEOUT, mpi_available, run_job

import florin
import florin.morphology as morphology
import florin.thresholding as thresholding
from florin.data import phantom

pytestmark = [pytest.mark.mpi, pytest.mark.skipif(mpi_available() is not None, reason=str(mpi_available()))]


def test_mpi_florin_run_equals_serial(tmp_path):
    image = tmp_path / "in.tif"
    florin.io.write(image, phantom((16, 64, 64), seed=5).image)
    pipe = florin.Serial(
        florin.load(),
        florin.tile(shape=(8, 32, 32), stride=(8, 24, 24)),
        florin.Serial(thresholding.ndnt(shape=(5, 15, 15), threshold=0.3), morphology.binary_opening()),
    )
    toml = tmp_path / "pipe.toml"
    toml.write_text(pipe.to_toml())
    serial, mpi = tmp_path / "serial.tif", tmp_path / "mpi.tif"
    proc = run_job([sys.executable, "-m", "florin", "run", str(toml), str(image), "-o", str(serial)], timeout=300)
    assert proc.returncode == 0, proc.stderr
    proc = run_job([shutil.which("mpiexec"), "-n", "2", sys.executable, "-m", "florin", "run", str(toml), str(image),
                    "-o", str(mpi), "--executor", "mpi"], timeout=MPI_TIMEOUT, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(florin.io.read(mpi).values, florin.io.read(serial).values)
    assert florin.io.read(serial).values.any()
