"""Processes starting together on a cold numba cache compile each kernel once (florin/_kernels/_jit.py, issue 15 item 6).

pytest-xdist workers, MPI ranks and process-pool workers start at the same time; without a lock between them each
would compile the same kernels (tens of seconds of CPU on a fresh install) and the last to finish would overwrite
the others' cache entries.
"""

import os
import subprocess
import sys
import time

KERNEL = '''
from florin._kernels._jit import jit


@jit
def busy(n):
    total = 0.0
    for i in range(n):
        if i % 3 == 0:
            total += i * 0.5
        elif i % 3 == 1:
            total -= i / 7
        else:
            total *= 0.999
    return total
'''

WORKER = '''
import os
import sys
import time

sys.path.insert(0, sys.argv[1])
import kernel_for_test

open(sys.argv[2], "w").close()  # imported: ready
while not os.path.exists(sys.argv[3]):
    time.sleep(0.002)
value = kernel_for_test.busy(10)
stats = kernel_for_test.busy.stats
print(sum(stats.cache_misses.values()), sum(stats.cache_hits.values()), repr(value))
'''


def test_two_processes_on_a_cold_cache_compile_a_kernel_once(tmp_path):
    (tmp_path / "kernel_for_test.py").write_text(KERNEL)
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), str(tmp_path / f"ready{i}"), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(2)]
    deadline = time.monotonic() + 300
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.01)
    go.touch()  # both call the kernel now
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    rows = [out.split() for out, _ in outputs]
    misses = sorted(int(r[0]) for r in rows)
    hits = sorted(int(r[1]) for r in rows)
    assert misses == [0, 1] and hits == [0, 1], outputs  # one compiled, the other loaded its machine code
    plain = {}
    exec(KERNEL.replace("from florin._kernels._jit import jit", "jit = lambda f: f"), plain)
    assert [r[2] for r in rows] == [repr(plain["busy"](10))] * 2, outputs
