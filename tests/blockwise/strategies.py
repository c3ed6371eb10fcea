"""Random masks and random box partitions for the blockwise tests."""

import numpy as np
from hypothesis import strategies as st


@st.composite
def partitions(draw, shape):
    """Boxes partitioning ``shape``: recursive random cuts (grids and irregular splits)."""

    def split(box, depth):
        axes = [a for a, s in enumerate(box) if s.stop - s.start > 1]
        if not axes or depth > 4 or not draw(st.booleans()):
            return [box]
        a = draw(st.sampled_from(axes))
        cut = draw(st.integers(box[a].start + 1, box[a].stop - 1))
        lo = box[:a] + (slice(box[a].start, cut),) + box[a + 1 :]
        hi = box[:a] + (slice(cut, box[a].stop),) + box[a + 1 :]
        return split(lo, depth + 1) + split(hi, depth + 1)

    blocks = split(tuple(slice(0, s) for s in shape), 0)
    return draw(st.permutations(blocks))


@st.composite
def masks(draw, ndim):
    """A random boolean mask of ``ndim`` dimensions and varying density."""
    shape = tuple(draw(st.lists(st.integers(1, 9 if ndim == 2 else 6), min_size=ndim, max_size=ndim)))
    seed = draw(st.integers(0, 2**32 - 1))
    density = draw(st.sampled_from([0.2, 0.4, 0.5, 0.6, 0.8]))
    return np.random.default_rng(seed).random(shape) < density
