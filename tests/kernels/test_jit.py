"""The jit alias (florin/_kernels/_jit.py): the cold-start message and a read-only numba cache (issue 15 item 5)."""

import os
import subprocess
import sys

import numpy as np

from florin.thresholding import ndnt

KERNEL = '''
from florin._kernels._jit import jit


@jit
def add_one(x):
    return x + 1
'''

PIPELINE = '''
import florin
import kernel_for_test
from florin.thresholding import ndnt


@florin.florinate
def bump(image):
    return image + kernel_for_test.add_one(0)


pipeline = florin.Serial(florin.load(), ndnt(shape=(3, 3), threshold=0.2), bump())
'''

# A cache directory numba cannot write, whoever runs the tests (root writes into a mode-555 directory, so numba's
# own writability check is made to fail the way it fails for an ordinary user on a read-only install).
READ_ONLY = '''
import sys
import numba.core.caching as caching


def not_writable(self):
    raise PermissionError(13, "Permission denied", self.get_cache_path())


caching._CacheLocator.ensure_cache_path = not_writable
from florin.cli import main

sys.exit(main(sys.argv[1:]))
'''


def _florin_run(tmp_path, cache_dir, *, read_only=False):
    (tmp_path / "kernel_for_test.py").write_text(KERNEL)
    (tmp_path / "pipe.py").write_text(PIPELINE)
    image = np.arange(64, dtype=np.uint8).reshape(8, 8)
    np.save(tmp_path / "in.npy", image)
    out = tmp_path / "out.npy"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    args = ["run", str(tmp_path / "pipe.py"), str(tmp_path / "in.npy"), "-o", str(out), "--overwrite"]
    command = [sys.executable, "-c", READ_ONLY, *args] if read_only else [sys.executable, "-m", "florin", *args]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    expected = ndnt(image, shape=(3, 3), threshold=0.2).values + 1
    np.testing.assert_array_equal(np.load(out), expected)
    return proc.stderr


def test_a_cold_cache_says_compiling_kernels_once_and_a_warm_one_says_nothing(tmp_path):
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    first = _florin_run(tmp_path, cache)
    assert first.count("compiling kernels (first run only)") == 1, first
    second = _florin_run(tmp_path, cache)
    assert "compiling kernels" not in second, second


def test_a_read_only_numba_cache_runs_without_the_cache(tmp_path):
    cache = tmp_path / "read-only-cache"
    cache.mkdir()
    cache.chmod(0o555)
    try:
        stderr = _florin_run(tmp_path, cache, read_only=True)
    finally:
        cache.chmod(0o755)
    assert "cache directory is not writable" in stderr and "NUMBA_CACHE_DIR" in stderr, stderr
    assert not any(cache.iterdir())
