"""Fixtures of the florin-napari tests (run under a display: ``xvfb-run -a python -m pytest plugins/florin-napari``).

``make_napari_viewer`` comes from napari's pytest plugin (with pytest-qt).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import florin

# numba's OpenMP threads wait passively between kernels, as in the core suite (see the root conftest.py): spinning
# they take the CPU that other processes of the test (workers, the display server) need.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def phantom():
    """A small seeded phantom volume (uint16) with anisotropic voxels in um."""
    from florin.data import phantom as make

    image = make((16, 64, 80), seed=3).image
    return florin.as_volume(image, spacing=(2.0, 0.5, 0.5), units="um")


@pytest.fixture(scope="session")
def labels_volume(phantom):
    """Instance labels of the phantom (uint16) with the phantom's voxel size."""
    from scipy import ndimage

    mask = np.asarray(phantom) < np.percentile(np.asarray(phantom), 20)
    return florin.as_volume(ndimage.label(mask)[0].astype(np.uint16), spacing=(2.0, 0.5, 0.5), units="um")
