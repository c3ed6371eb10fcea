"""Run a command under a real memory cap: a cgroup v1 memory limit (root only).

The cap covers the whole process tree (children join their parent's cgroup) and
everything the kernel charges to it: anonymous memory, shared memory (``/dev/shm``
segments of the Multiprocess executor), and page cache. Page cache is reclaimed
under pressure, so ``memory.max_usage_in_bytes`` climbs to the cap on any run that
reads or writes more than the cap. Two peaks are sampled from ``memory.stat`` while
the run goes: ``rss + shmem`` (anonymous and shared memory: what the run holds, which
cannot be reclaimed without swapping; the figure to compare across volume sizes) and
``rss + shmem + mapped_file`` (also the file pages mapped by the run's memory maps,
which the kernel reclaims under pressure, so on a run through large memory maps it
climbs towards the cap whatever the run holds). Swap is capped too
(``memory.memsw.limit_in_bytes``, where the kernel has it), so the limit cannot be
dodged by swapping out.

    >>> with MemoryCap(1.5 * 2**30) as cap:                      # doctest: +SKIP
    ...     rc = cap.run([sys.executable, "script.py"])
    >>> cap.report()                                             # doctest: +SKIP
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

ROOT = "/sys/fs/cgroup/memory"


def available():
    """Whether a cgroup v1 memory hierarchy exists and this process may create groups in it."""
    return os.path.isdir(ROOT) and os.access(ROOT, os.W_OK)


class MemoryCap:
    """A fresh cgroup v1 memory group with ``limit`` bytes, removed on exit."""

    def __init__(self, limit, *, name=None, interval=0.05):
        self.limit = int(limit)
        self.path = os.path.join(ROOT, name or f"florin-bench-{os.getpid()}-{time.monotonic_ns()}")
        self.interval = interval
        self.peak_unreclaimable = self.peak_anonymous = 0
        self.max_usage = self.failcnt = self.oom_kills = 0

    def _write(self, name, value):
        with open(os.path.join(self.path, name), "w") as f:
            f.write(str(value))

    def _read(self, name):
        with open(os.path.join(self.path, name)) as f:
            return f.read()

    def __enter__(self):
        os.mkdir(self.path)
        self._write("memory.limit_in_bytes", self.limit)
        if os.path.exists(os.path.join(self.path, "memory.memsw.limit_in_bytes")):
            self._write("memory.memsw.limit_in_bytes", self.limit)
        return self

    def __exit__(self, *exc):
        for _ in range(50):  # the group can only be removed once its last task is gone
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.1)

    def _stat(self):
        """``(rss + shmem, rss + shmem + mapped_file)`` of the group, in bytes."""
        fields = dict(line.split() for line in self._read("memory.stat").splitlines())
        anonymous = int(fields.get("total_rss", 0)) + int(fields.get("total_shmem", 0))
        return anonymous, anonymous + int(fields.get("total_mapped_file", 0))

    def _sample(self, stop):
        while not stop.is_set():
            try:
                anonymous, mapped = self._stat()
            except OSError:
                return
            self.peak_anonymous = max(self.peak_anonymous, anonymous)
            self.peak_unreclaimable = max(self.peak_unreclaimable, mapped)
            time.sleep(self.interval)

    def run(self, cmd, **kwargs):
        """Run ``cmd`` inside the group (it joins before exec) and return its ``CompletedProcess``."""
        procs = os.path.join(self.path, "cgroup.procs")

        def join():
            with open(procs, "w") as f:
                f.write(str(os.getpid()))

        stop = threading.Event()
        sampler = threading.Thread(target=self._sample, args=(stop,), daemon=True)
        sampler.start()
        try:
            result = subprocess.run(cmd, preexec_fn=join, **kwargs)
        finally:
            stop.set()
            sampler.join()
        self.max_usage = int(self._read("memory.max_usage_in_bytes"))
        self.failcnt = int(self._read("memory.failcnt"))
        oom = dict(line.split() for line in self._read("memory.oom_control").splitlines())
        self.oom_kills = int(oom.get("oom_kill", 0))
        return result

    def report(self):
        """One line: the cap, the kernel's peak charge, the peaks of held and of mapped memory, OOM kills."""
        mib = 2**20
        return (f"cgroup v1 cap {self.limit / mib:.0f} MiB: max usage {self.max_usage / mib:.0f} MiB "
                f"(incl. page cache), peak rss+shmem {self.peak_anonymous / mib:.0f} MiB, "
                f"peak rss+shmem+mapped {self.peak_unreclaimable / mib:.0f} MiB, OOM kills {self.oom_kills}")
