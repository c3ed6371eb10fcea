"""Row multi-indices of N-D arrays viewed as ``(rows, width)``: one helper for every kernel.

The row kernels (labeling, region statistics, min/max filters) view an N-D array
as rows of its last axis; the leading axes ``lead_shape`` number the rows in C
order. These helpers give the multi-index of a row and step it to the next one.
"""

from __future__ import annotations

import numpy as np

from florin._kernels._jit import jit

__all__ = ["next_row", "row_index"]


@jit
def row_index(lead_shape, r):
    """Multi-index over the leading axes ``lead_shape`` of row ``r`` (C order).

    Examples
    --------
    >>> import numpy as np
    >>> row_index(np.array([2, 3]), 4).tolist()
    [1, 1]
    """
    nlead = lead_shape.shape[0]
    idx = np.zeros(nlead, np.int64)
    for a in range(nlead - 1, -1, -1):
        idx[a] = r % lead_shape[a]
        r //= lead_shape[a]
    return idx


@jit
def next_row(idx, lead_shape):
    """Step the row multi-index ``idx`` to the next row, in place (C order; the last row wraps to 0).

    Examples
    --------
    >>> import numpy as np
    >>> idx = np.array([0, 2])
    >>> next_row(idx, np.array([2, 3]))
    >>> idx.tolist()
    [1, 0]
    """
    for a in range(idx.shape[0] - 1, -1, -1):
        idx[a] += 1
        if idx[a] < lead_shape[a]:
            return
        idx[a] = 0
