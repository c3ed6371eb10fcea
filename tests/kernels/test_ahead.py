"""Compiling kernels ahead in a background process on a cold cache (florin/_kernels/_ahead.py, issue 15 item 5)."""

import os
import subprocess
import sys

import pytest

from florin._kernels._ahead import compile_ahead

KERNEL = '''
import os
import time

from florin._kernels._jit import jit


@jit
def add_one(x):
    return x + 1


def warm():
    add_one(1)


def crash():
    raise RuntimeError("the background compile fails")


def linger():
    with open(os.environ["LINGER_PID"], "w") as f:
        f.write(str(os.getpid()))
    time.sleep(600)
'''

RUN = '''
import os
import sys

import kernel_for_test
from florin._kernels._ahead import compile_ahead

with compile_ahead("kernel_for_test:" + sys.argv[1], kernels=[kernel_for_test.add_one]) as proc:
    started = proc is not None
    if started and sys.argv[2] == "wait":
        proc.wait(timeout=300)
    value = kernel_for_test.add_one(41)
stats = kernel_for_test.add_one.stats
print(started, None if proc is None else proc.poll(), value, sum(stats.cache_misses.values()),
      sum(stats.cache_hits.values()))
'''


def _run(tmp_path, cache, target, how="wait", *, extra_env=None, prelude=""):
    (tmp_path / "kernel_for_test.py").write_text(KERNEL)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
           **(extra_env or {})}
    proc = subprocess.run([sys.executable, "-c", prelude + RUN, target, how], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_the_background_process_fills_the_cache_and_a_warm_cache_starts_none(tmp_path):
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    started, code, value, misses, hits = _run(tmp_path, cache, "warm")
    # the background process compiled add_one; this process loaded it from the cache
    assert (started, code, value, misses, hits) == ("True", "0", "42", "0", "1")
    assert _run(tmp_path, cache, "warm")[:2] == ["False", "None"]


def test_a_crash_in_the_background_compile_does_not_break_the_run(tmp_path):
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    started, code, value, misses, hits = _run(tmp_path, cache, "crash")
    assert (started, code, value, misses, hits) == ("True", "1", "42", "1", "0")  # compiled here instead


def test_the_background_process_is_stopped_with_the_run(tmp_path):
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    pid_file = tmp_path / "linger.pid"
    started, code, value, *_ = _run(tmp_path, cache, "linger", "nowait", extra_env={"LINGER_PID": str(pid_file)})
    assert (started, value) == ("True", "42")
    assert code != "None"  # it had exited when the block ended
    if pid_file.exists():  # it got as far as starting: that pid is gone now
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid_file.read_text()), 0)


def test_no_background_compile_without_a_writable_cache(tmp_path):
    cache = tmp_path / "read-only-cache"
    cache.mkdir()
    prelude = (
        "import numba.core.caching as caching\n"
        "def not_writable(self):\n"
        "    raise PermissionError(13, 'Permission denied', self.get_cache_path())\n"
        "caching._CacheLocator.ensure_cache_path = not_writable\n"
    )
    started, code, value, *_ = _run(tmp_path, cache, "warm", prelude=prelude)
    assert (started, code, value) == ("False", "None", "42")
    assert not any(cache.iterdir())


def test_a_target_that_is_not_module_colon_function_is_refused():
    with pytest.raises(ValueError, match="target must be 'module:function'"):
        with compile_ahead("kernel_for_test.warm", kernels=[]):
            pass
