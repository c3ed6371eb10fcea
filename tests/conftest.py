"""Shared fixtures."""

import numpy as np
import pytest

from florin.registry import reset_registry


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def fresh_registry():
    """Reload plugins before and after a test that changes what is installed."""
    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def volume(rng):
    """A small 3-D volume with dark blobs on a bright, uneven background."""
    z, y, x = np.mgrid[:12, :40, :48]
    image = 150 + 0.5 * x + rng.normal(0, 4, size=x.shape)
    for cz, cy, cx in [(6, 10, 12), (5, 28, 30), (7, 20, 40)]:
        image[(z - cz) ** 2 / 9 + (y - cy) ** 2 / 16 + (x - cx) ** 2 / 16 <= 1] -= 80
    return image.astype(np.float32)
