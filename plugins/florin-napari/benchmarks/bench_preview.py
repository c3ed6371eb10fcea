"""How long the NDNT widget's preview of one slice takes (``florin_napari._core.preview_plane``).

One 512 x 512 slice (z = 50) of a 100 x 512 x 512 uint16 volume, in memory and as a layer the reader opened
(a lazy TIFF), with 65 x 65 and 65 x 65 x 65 windows, with and without the opening: best of ``--repeat`` runs, next to
the NDNT of the whole z-context the preview used to compute (``context``). ``--cold`` also times the first preview of
a fresh process (numba loads the kernels from its cache on their first call), without and after ``warm_up``.

    python plugins/florin-napari/benchmarks/bench_preview.py [--cold] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from functools import partial

SHAPE = (100, 512, 512)
Z = 50
CASES = [((1, 65, 65), False), ((1, 65, 65), True), ((65, 65, 65), False), ((65, 65, 65), True)]

_COLD = """
import sys, time
import numpy as np
from florin_napari._core import NDNTSettings, preview_plane, warm_up
volume = np.random.default_rng(0).integers(0, 4000, {shape}, dtype=np.uint16)
warm = 0.0
if {warm}:
    t = time.perf_counter()
    for _ in warm_up(volume.dtype):
        pass
    warm = time.perf_counter() - t
settings = NDNTSettings(shape={window}, threshold=0.3, opening={opening})
t = time.perf_counter()
preview_plane(volume, settings, ({z}, 0, 0))
print(f"{{warm:.3f}} {{time.perf_counter() - t:.3f}}")
"""


def _volume():
    import numpy as np

    return np.random.default_rng(0).integers(0, 4000, SHAPE, dtype=np.uint16)


def _best(f, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def _context(pipeline, volume, lo, hi):
    """The preview as it was computed before: the steps on the whole z-context, plane ``Z`` kept."""
    import numpy as np

    return np.asarray(pipeline(np.asarray(volume[lo:hi])))[Z - lo]


def warm(repeat):
    from florin_napari._core import NDNTSettings, preview_plane
    from florin_napari._layers import lazy_array

    import florin
    import florin.io

    volume = _volume()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "volume.tif")
        florin.io.write(path, volume)
        layers = {"in memory": volume, "reader layer": lazy_array(florin.io.read(path))}
        print(f"{'window':>14} {'opening':>8} {'layer':>13} {'preview s':>10} {'context s':>10}")
        for window, opening in CASES:
            settings = NDNTSettings(shape=window, threshold=0.3, opening=opening)
            pipeline = florin.Serial(*settings.steps())
            reach = settings.context(SHAPE)[0]
            lo, hi = max(0, Z - reach), min(SHAPE[0], Z + reach + 1)
            for name, data in layers.items():
                preview_plane(data, settings, (Z, 0, 0))  # kernels loaded
                new = _best(partial(preview_plane, data, settings, (Z, 0, 0)), repeat)
                old = _best(partial(_context, pipeline, volume, lo, hi), repeat)
                label = "x".join(map(str, window))
                print(f"{label:>14} {str(opening):>8} {name:>13} {new:>10.3f} {old:>10.3f}")


def cold():
    print(f"{'window':>14} {'opening':>8} {'warm-up s':>10} {'first preview s':>16}")
    for window, opening in CASES:
        for warmed in (False, True):
            code = _COLD.format(shape=SHAPE, warm=warmed, window=window, opening=opening, z=Z)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            warm_s, first = out.split()
            label = "x".join(map(str, window))
            print(f"{label:>14} {str(opening):>8} {warm_s if warmed else '-':>10} {first:>16}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="also time the first preview of fresh processes")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
    warm(args.repeat)
    if args.cold:
        cold()


if __name__ == "__main__":
    main()
