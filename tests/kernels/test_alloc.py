"""Tests of the kernels' one allocator of large arrays (florin._kernels._alloc)."""

import sys

import numpy as np
import pytest

from florin._kernels import _alloc
from florin._kernels.label import label
from florin._kernels.sizes import remove_small_objects


def _vmflags(address):
    """The VmFlags of the mapping of this process that holds ``address``."""
    with open("/proc/self/smaps") as f:
        inside = False
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(v, 16) for v in head.split("-"))
                inside = lo <= address < hi
            elif inside and head == "VmFlags:":
                return line.split()[1:]
    raise AssertionError(f"no mapping holds {address:#x}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/smaps and MADV_NOHUGEPAGE are Linux's")
def test_large_arrays_are_mapped_without_huge_pages_and_small_ones_are_numpy_empty(monkeypatch):
    monkeypatch.setattr(_alloc, "SMALL_PAGES_MIN_BYTES", 1 << 20)
    big = _alloc.empty((4, 256, 256), np.uint32)  # 1 MiB
    assert big.shape == (4, 256, 256) and big.dtype == np.uint32 and big.flags.c_contiguous and big.flags.writeable
    assert "nh" in _vmflags(big.ctypes.data)
    big[...] = 3
    assert int(big.sum()) == 3 * big.size
    small = _alloc.empty(1000, np.int64)
    assert small.shape == (1000,) and small.base is None  # numpy's own allocation


def test_kernel_outputs_in_small_pages_equal_numpy_ones(monkeypatch):
    """label and remove_small_objects write every voxel of the arrays they allocate (nothing left uninitialised)."""
    rng = np.random.default_rng(1)
    mask = rng.random((6, 40, 50)) < 0.4
    want_labels, want_n = label(mask, 1)
    want_kept = remove_small_objects(mask, 5, 1)
    monkeypatch.setattr(_alloc, "SMALL_PAGES_MIN_BYTES", 1)
    got_labels, got_n = label(mask, 1)
    assert not got_labels.flags.owndata  # the mapping owns the memory
    np.testing.assert_array_equal(got_labels, want_labels)
    assert got_n == want_n
    np.testing.assert_array_equal(remove_small_objects(mask, 5, 1), want_kept)
