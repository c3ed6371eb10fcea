"""Helpers shared by the tests of labels, regions and classification (conncomp, classification, reconstruction)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage as ndi

import florin


class ThreadMap(florin.Pipeline):
    """A minimal thread executor (stands in when florin.Multithread is not installed)."""

    name = "test-threads"

    def map(self, func, items):
        with ThreadPoolExecutor(3) as pool:
            return list(pool.map(func, items))


def executors(*, processes=True):
    """Executor classes to compare: Serial, a thread map, and the registered parallel ones."""
    found = [florin.Serial, ThreadMap]
    names = ("Multithread", "Multiprocess") if processes else ("Multithread",)
    for name in names:
        try:
            found.append(getattr(florin, name))
        except AttributeError:
            pass
    return found


def scipy_label(mask, connectivity):
    return ndi.label(mask, ndi.generate_binary_structure(mask.ndim, connectivity))


def assert_same_partition(got, want):
    """``got`` and ``want`` label the same components (equal up to renumbering)."""
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got == 0, want == 0)
    fg = want != 0
    pairs = np.unique(np.stack([got[fg].astype(np.int64), want[fg].astype(np.int64)]), axis=1)
    # a bijection between labels: each label of one side pairs with exactly one of the other
    assert len(np.unique(pairs[0])) == pairs.shape[1]
    assert len(np.unique(pairs[1])) == pairs.shape[1]
    n = pairs.shape[1]
    assert set(np.unique(got[fg]).tolist()) == set(range(1, n + 1)), "labels are not 1..N"
