"""Tests of the one numba threading guard shared by all kernels (florin._kernels._threads)."""

import os
import subprocess
import sys
import textwrap


def test_ndnt_and_label_in_threads_with_workqueue_layer_equal_serial():
    """NDNT and label launched concurrently must not abort numba's non-thread-safe workqueue layer.

    With one lock per kernel module this aborted the process ("Concurrent access").
    """
    script = textwrap.dedent(
        """
        import numpy as np, numba, florin
        from florin import conncomp, thresholding
        img = np.random.default_rng(0).integers(0, 1000, (32, 256, 256)).astype(np.uint16)
        def run(executor):
            steps = executor(thresholding.ndnt(shape=(3, 9, 9), threads=2), conncomp.label())
            return florin.Serial(florin.tile(shape=(8, 128, 128)), steps)(img)
        got = run(lambda *s: florin.Multithread(*s, workers=2))
        want = run(florin.Serial)
        np.testing.assert_array_equal(got.values, want.values)
        assert int(want.values.max()) > 1
        assert numba.threading_layer() == "workqueue", numba.threading_layer()
        """
    )
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
