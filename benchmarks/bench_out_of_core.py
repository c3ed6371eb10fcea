"""Benchmark: out-of-core segmentation of a 4 GiB HDF5 volume with bounded memory.

Generates a (512, 2048, 2048) uint16 HDF5 volume (4 GiB; written chunk by chunk
through ``florin.io.create``, never held in memory), then runs the tiled
pipeline::

    florin.Serial(
        florin.load("volume.h5"),
        florin.tile(shape=TILE),
        EXECUTOR(thresholding.ndnt(shape=(8, 64, 64), threshold=0.25), morphology.binary_opening(),
                 florin.save("segmented.h5")),
    )

under ``florin.Serial`` and ``florin.Multiprocess(workers=2)``. Each tile is
read from the input by the process that works on it (the volume ships as a
file reference), and ``save`` at the end of the tiled pipeline writes each
tile's core into the HDF5 output, so neither the input nor the 2 GiB mask is
ever in memory. Each executor runs in a fresh Python process, so runs do not
influence each other. Printed per executor: wall time of the pipeline call,
throughput, and the peak memory of that process and all its workers, sampled
every 50 ms by a thread of the benchmark (outside the measured processes):
the summed RSS (pages shared between processes counted once per process, an
over-estimate) and the summed PSS (shared pages split between their processes:
the physical memory the tree uses). Goal: peak RSS sum <= 1 GiB.

The output is checked against the whole-volume result on a block in the middle
of the volume (computed with enough context around it) and, with ``--small``,
everywhere.

    python benchmarks/bench_out_of_core.py [--small] [--dir DIR] [--keep] [--executors serial,multiprocess]
                                           [--processes N] [--json PATH]

``--small`` runs on (64, 512, 512) (32 MiB) for a quick check, ``--gib N`` on (128 N, 2048, 2048).

``--executors seed`` runs the seed documentation's weak-classification pipeline instead (Multiprocess
variant, tiles (32, 256, 256), NDNT, opening, save, label, remove_small_holes, regionprops, classify,
reconstruct, save; HDF5 in and out). ``--cap MIB`` runs each executor's process tree inside a fresh
cgroup v1 memory group of that size (root; see ``_cgroup.py``) and prints the kernel's peak charge, the
peak of rss + shmem (what the run holds: the figure to compare between volume sizes, given as the peak in
the summary line) and the peak of rss + shmem + mapped memory. For the issue's figure::

    python benchmarks/bench_out_of_core.py --gib 4 --executors seed --cap 1536

``--small`` runs on (64, 512, 512) (32 MiB) for a quick check. The generated
files go to a temporary directory under ``--dir`` (default: the system's
temporary directory, e.g. /tmp) and are deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import psutil

import florin
import florin.conncomp as conncomp
import florin.morphology as morphology
import florin.thresholding as thresholding
from florin.io import create, read

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cgroup  # noqa: E402

FULL = (512, 2048, 2048)
SMALL = (64, 512, 512)
TILE = (32, 512, 512)
SMALL_TILE = (16, 128, 128)
NDNT_SHAPE = (8, 64, 64)
THRESHOLD = 0.25
GOAL_MIB = 1024


class PeakMemory:
    """Peak memory of a process tree: summed RSS and summed PSS, sampled by a thread.

    RSS counts pages shared between processes (libraries, pages inherited
    through fork) once per process, so its sum over-estimates what the tree
    uses; PSS splits each shared page between the processes sharing it, so its
    sum is the physical memory of the tree.
    """

    def __init__(self, pid=None, interval=0.05):
        self.interval = interval
        self.rss = self.pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._root = psutil.Process(pid)

    def sample(self):
        rss = pss = 0
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for proc in procs:
            try:
                info = proc.memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
        self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def slab(z0, shape, seed=0):
    """Planes ``z0 : z0 + shape[0]`` of the synthetic volume: uneven background, noise, dark blobs."""
    nz, ny, nx = shape
    rng = np.random.default_rng(seed + z0)
    y = np.arange(ny, dtype=np.float32)[:, None]
    x = np.arange(nx, dtype=np.float32)[None, :]
    image = rng.integers(0, 3000, size=shape, dtype=np.uint16)
    image += (28000 + 4 * x + 2 * y).astype(np.uint16)  # background ramp
    sz = np.sin(np.arange(z0, z0 + nz, dtype=np.float32) / 7.0)[:, None, None]
    blobs = (sz * (np.sin(y / 23.0) * np.sin(x / 29.0))) > 0.55
    np.subtract(image, 14000, out=image, where=blobs)  # dark objects
    return image


def generate(path, shape):
    """Write the volume chunk by chunk (a few planes at a time) through florin.io.create."""
    step = max(1, (32 * 2**20) // (shape[1] * shape[2] * 2))
    with create(path, shape, np.uint16, chunks=(32, 128, 128), compression=None) as out:
        for z0 in range(0, shape[0], step):
            n = min(step, shape[0] - z0)
            out[z0 : z0 + n] = slab(z0, (n, *shape[1:]))


def steps():
    return [thresholding.ndnt(shape=NDNT_SHAPE, threshold=THRESHOLD), morphology.binary_opening()]


SEED_TILE = (32, 256, 256)


def seed_pipeline(src, out, tile, processes, labeled):
    """The seed documentation's weak-classification pipeline, Multiprocess variant, HDF5 in and out."""
    return florin.Serial(
        florin.load(src),
        florin.tile(shape=tile),
        florin.Multiprocess(thresholding.ndnt(shape=(10, 64, 64), threshold=0.3), morphology.binary_opening(),
                            workers=processes),
        florin.save(out),
        conncomp.label(),
        morphology.remove_small_holes(min_size=20),
        conncomp.regionprops(),
        florin.Multiprocess(florin.classify(
            florin.bounds_classifier("cell", area=(100, 300), depth=(10, 25), width=(50, 100), height=(50, 100)),
            florin.bounds_classifier("vasculature"),
        ), workers=processes),
        florin.reconstruct(),
        florin.save(labeled),
    )


def run_here(name, src, out, tile, processes, memory=None):
    """The timed run, in this process (the benchmark starts one fresh process per executor)."""
    if name == "seed":
        pipe = seed_pipeline(src, out, tile, processes, out.replace(".h5", "-labeled.h5"))
        start = time.perf_counter()
        result = pipe(memory=memory) if memory else pipe()
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "lazy": True, "shape": list(read(out).shape)}
    if name == "serial":
        executor = florin.Serial
        florin.Serial(*steps())(slab(0, (8, 64, 64)))  # load the compiled kernels outside the timing
    else:
        multiprocess = florin.Multiprocess

        def executor(*s):
            return multiprocess(*s, workers=processes)

    pipe = florin.Serial(florin.load(src), florin.tile(shape=tile), executor(*steps(), florin.save(out)))
    start = time.perf_counter()
    result = pipe()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "lazy": florin.io.lazy.is_lazy(result), "shape": list(result.shape)}


def run(name, src, out, tile, processes, cap=None, memory=None):
    """Run one executor in a fresh process; sample the memory of its process tree from here.

    With ``cap`` (bytes), the process tree runs inside a fresh cgroup v1 memory group of that size.
    """
    cmd = [sys.executable, os.path.abspath(__file__), "--_run", name, src, out, ",".join(map(str, tile)),
           "--processes", str(processes)]
    if memory:
        cmd += ["--memory", memory]
    if cap is None:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with PeakMemory(proc.pid) as mem:
            stdout, stderr = proc.communicate()
        returncode, limit = proc.returncode, None
    else:
        with _cgroup.MemoryCap(cap) as limit:
            done = limit.run(cmd, capture_output=True, text=True)
        stdout, stderr, returncode, mem = done.stdout, done.stderr, done.returncode, None
        print(f"{'':>16}  {limit.report()}")
    if returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"{name} run failed (exit {returncode}{', killed by the OOM killer' if returncode == -9 else ''}):\n{tail}")
    info = json.loads(stdout.strip().splitlines()[-1])
    if limit is not None:
        info["cgroup"] = {"cap_mib": limit.limit / 2**20, "max_usage_mib": limit.max_usage / 2**20,
                          "peak_anonymous_mib": limit.peak_anonymous / 2**20,
                          "peak_unreclaimable_mib": limit.peak_unreclaimable / 2**20, "oom_kills": limit.oom_kills}
    return info, mem


def check(src, out, shape, small):
    """Compare the output with the whole-volume result (everywhere with --small, else a middle block)."""
    vol, seg = read(src), read(out)
    if small:
        expected = florin.Serial(*steps())(vol.values).values
        return bool(np.array_equal(seg.values, expected))
    halo = np.array(NDNT_SHAPE) // 2 + 1
    block = np.array([32, 256, 256])
    lo = np.array(shape) // 2 - block // 2
    ctx_lo, ctx_hi = np.maximum(lo - 2 * halo, 0), np.minimum(lo + block + 2 * halo, shape)
    context = vol[tuple(slice(a, b) for a, b in zip(ctx_lo, ctx_hi, strict=True))].values
    # NDNT's default window would depend on the volume's shape; ours is fixed, so a sub-volume gives
    # the same decisions wherever the whole window fits inside it (the block, with its context).
    local = florin.Serial(*steps())(context).values
    inner = tuple(slice(a - c, a - c + n) for a, c, n in zip(lo, ctx_lo, block, strict=True))
    want = tuple(slice(a, a + n) for a, n in zip(lo, block, strict=True))
    return bool(np.array_equal(seg[want].values, local[inner]))


def identical(a, b):
    """Whether two outputs hold the same voxels (compared a few planes at a time)."""
    va, vb = read(a), read(b)
    if va.shape != vb.shape or va.dtype != vb.dtype:
        return False
    step = max(1, (256 * 2**20) // max(1, int(np.prod(va.shape[1:])) * va.dtype.itemsize))
    return all(np.array_equal(va[z : z + step].values, vb[z : z + step].values) for z in range(0, va.shape[0], step))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help=f"run on {SMALL} instead of {FULL}")
    parser.add_argument("--dir", default=None, help="where to put the generated files (default: system temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated input and outputs")
    parser.add_argument("--executors", default="serial,multiprocess", help="comma-separated: serial, multiprocess")
    parser.add_argument("--processes", type=int, default=2, help="worker processes for Multiprocess (default 2)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--gib", type=float, default=None,
                        help="volume size in GiB: (128 * GIB, 2048, 2048) planes (default: 4, or the --small shape)")
    parser.add_argument("--cap", default=None, metavar="SIZE",
                        help="run each executor under a cgroup v1 memory limit of SIZE MiB (root only), e.g. 1536")
    parser.add_argument("--memory", default=None, help="memory= budget passed to the seed pipeline run, e.g. 1GiB")
    parser.add_argument("--input", default=None, help="reuse this generated input instead of generating one")
    parser.add_argument("--_run", nargs=4, metavar=("EXECUTOR", "SRC", "OUT", "TILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._run:
        name, src, out, tile = args._run
        info = run_here(name, src, out, tuple(int(t) for t in tile.split(",")), args.processes, args.memory)
        print(json.dumps(info))
        return 0

    shape = SMALL if args.small else FULL
    if args.gib:
        shape = (int(round(128 * args.gib)), 2048, 2048)
    tile = SMALL_TILE if args.small else TILE
    cap = None
    if args.cap:
        if not _cgroup.available():
            parser.error("--cap needs a writable cgroup v1 memory hierarchy at /sys/fs/cgroup/memory (run as root)")
        cap = float(args.cap) * 2**20
    workdir = tempfile.mkdtemp(prefix="florin-bench-ooc-", dir=args.dir)
    src = os.path.join(workdir, "volume.h5")
    if args.input:
        src = args.input
        shape = tuple(read(src).shape)
    gib = np.prod(shape) * 2 / 2**30
    print(f"volume {shape} uint16 = {gib:.2f} GiB in {workdir}; tiles {tile}; "
          f"ndnt(shape={NDNT_SHAPE}, threshold={THRESHOLD}) + binary_opening(); {psutil.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.2f}")
    results, outputs = [], {}
    try:
        start = time.perf_counter()
        if not args.input:
            generate(src, shape)
        print(f"generated the input chunk by chunk in {time.perf_counter() - start:.1f} s, "
              f"{os.path.getsize(src) / 2**30:.2f} GiB on disk")
        for name in [n.strip().lower() for n in args.executors.split(",") if n.strip()]:
            if name == "serial":
                label = "Serial"
            elif name == "multiprocess":
                if "multiprocess" not in florin.registry.get_registry().executors:
                    print("Multiprocess: not available; skipped")
                    continue
                label = f"Multiprocess({args.processes})"
            elif name == "seed":
                label = f"seed/MP({args.processes})"
            else:
                parser.error(f"unknown executor {name!r}; use serial, multiprocess or seed")
            out = os.path.join(workdir, f"segmented-{name}.h5")
            info, mem = run(name, src, out, SEED_TILE if name == "seed" else tile, args.processes, cap, args.memory)
            # the seed pipeline's first save holds ndnt(shape=(10, 64, 64), threshold=0.3) + opening: checked by
            # comparing with the uncapped run (run it without --cap on the same --input)
            ok = (name == "seed" or check(src, out, shape, args.small)) and info["lazy"] and tuple(info["shape"]) == shape
            seconds = info["seconds"]
            if mem is None:
                rss = pss = info["cgroup"]["peak_anonymous_mib"]
            else:
                rss, pss = mem.rss / 2**20, mem.pss / 2**20
            entry = {
                "name": label,
                "seconds": round(seconds, 2),
                "peak_rss_mib": round(rss, 1),
                "peak_pss_mib": round(pss, 1),
                "input_mib_per_s": round(np.prod(shape) * 2 / 2**20 / seconds, 1),
                "output_gib_on_disk": round(os.path.getsize(out) / 2**30, 3),
                "correct": ok,
                "meets_goal": rss <= GOAL_MIB,
                **({"cgroup": info["cgroup"]} if "cgroup" in info else {}),
            }
            results.append(entry)
            held = (f"peak rss+shmem of the cgroup {rss:5.0f} MiB " if mem is None
                    else f"peak memory of the process tree: RSS sum {rss:5.0f} MiB, PSS sum {pss:5.0f} MiB ")
            print(f"{label:>16}: {seconds:7.1f} s  {entry['input_mib_per_s']:6.1f} MiB/s  {held}"
                  f"(goal RSS <= {GOAL_MIB} MiB: {'met' if entry['meets_goal'] else 'NOT met'})  "
                  f"output {entry['output_gib_on_disk']:.3f} GiB  check {'ok' if ok else 'FAILED'}")
            if name != "seed":  # other steps, so another result
                outputs[label] = out
        if len(outputs) > 1:
            (first, ref), *others = outputs.items()
            for label, out in others:
                same = identical(ref, out)
                print(f"{label} output identical to {first}'s, voxel for voxel: {'yes' if same else 'NO'}")
                for entry in results:
                    if entry["name"] == label:
                        entry["identical_to_" + first.lower()] = same
                        entry["correct"] = entry["correct"] and same
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({
                "benchmark": "out_of_core",
                "title": f"Out-of-core NDNT + opening, {gib:.2f} GiB uint16 HDF5 -> HDF5",
                "config": {"shape": list(shape), "tile": list(tile), "ndnt_shape": list(NDNT_SHAPE),
                           "threshold": THRESHOLD, "cpus": psutil.cpu_count(), "goal_peak_rss_mib": GOAL_MIB},
                "results": results,
            }, f, indent=2)
    return 0 if all(r["correct"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
