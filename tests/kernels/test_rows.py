"""Tests of the shared row multi-index helpers (florin._kernels._rows)."""

import itertools

import numpy as np

from florin._kernels._rows import next_row, row_index


def test_row_index_and_next_row_walk_the_rows_in_c_order():
    lead_shape = np.array([2, 1, 3], np.int64)
    rows = list(itertools.product(range(2), range(1), range(3)))
    for r, want in enumerate(rows):
        assert tuple(row_index(lead_shape, r)) == want
    idx = row_index(lead_shape, 0)
    for want in rows[1:] + rows[:1]:  # the last row wraps to the first
        next_row(idx, lead_shape)
        assert tuple(idx) == want
