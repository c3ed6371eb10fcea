"""Segmenting a volume larger than memory, from HDF5 to HDF5.

The input is built slab by slab into a chunked HDF5 dataset (each slab is an
independent phantom), so it never has to fit in memory. ``florin.load`` opens
it lazily: nothing is read until ``florin.tile`` cuts a tile, and each worker
process reads only its own tile from the file. Each worker writes the
cores of its processed tiles straight into the HDF5 output, so the mask is
never in memory either.

The defaults are small so the test suite stays fast; ``--slabs 64 --size 1024``
gives a 2 GiB ``uint16`` volume: memory stays bounded by the tiles in flight
(about ``processes x (tile + halo)``), whatever the size of the volume.

Outputs in OUTPUT_DIR (default ``large-volume-output``): ``volume.h5``
(datasets ``image`` and ``labels``, the ground truth), ``segmented.h5``
(dataset ``mask``) and ``summary.json``.

Run: ``python examples/large_volume_hdf5.py [OUTPUT_DIR] [--slabs N] [--size N]``
"""

import argparse
import json
import os
import time

import h5py
import numpy as np

import florin
import florin.morphology as morphology
import florin.thresholding as thresholding
from florin.data import phantom

SLAB = 16  # z extent of one phantom slab


def make_volume(path, slabs, size):
    """Write ``slabs`` phantom slabs of (16, size, size) into a chunked HDF5 file."""
    shape = (slabs * SLAB, size, size)
    with h5py.File(path, "w") as f:
        image = f.create_dataset("image", shape, np.uint16, chunks=(SLAB, 128, 128), compression="lzf")
        labels = f.create_dataset("labels", shape, np.uint32, chunks=(SLAB, 128, 128), compression="lzf")
        for k in range(slabs):
            slab = phantom((SLAB, size, size), seed=k)
            image[k * SLAB : (k + 1) * SLAB] = slab.image
            labels[k * SLAB : (k + 1) * SLAB] = slab.labels
    return shape


def main(out_dir="large-volume-output", slabs=4, size=256, processes=2):
    os.makedirs(out_dir, exist_ok=True)
    volume = os.path.join(out_dir, "volume.h5")
    output = os.path.join(out_dir, "segmented.h5")
    shape = make_volume(volume, slabs, size)

    # [pipeline]
    pipeline = florin.Serial(
        # Open the dataset lazily: nothing is read yet
        florin.load(volume, key="image"),
        # Tiles of 16 x 128 x 128; each worker reads its own tile (plus halo) from the file
        florin.tile(shape=(16, 128, 128), stride=(16, 128, 128)),
        florin.Multiprocess(
            # NDNT over a 9 x 33 x 33 neighbourhood, then a clean-up, per tile
            thresholding.ndnt(shape=(9, 33, 33), threshold=0.3),
            morphology.binary_opening(),
            # Last step of the tiled pipeline: each worker writes its tile's core into
            # the HDF5 output as soon as it is done, so the mask is never in memory
            florin.save(output, key="mask", overwrite=True),
            workers=processes,
        ),
    )
    start = time.perf_counter()
    segmented = pipeline()  # the output, opened lazily
    # [/pipeline]
    elapsed = time.perf_counter() - start

    # Score slab by slab so that the check, too, runs in bounded memory.
    inter = total = 0
    with h5py.File(volume, "r") as fin, h5py.File(output, "r") as fout:
        mask_ds = fout["mask"]
        out_shape = mask_ds.shape
        for k in range(slabs):
            sl = slice(k * SLAB, (k + 1) * SLAB)
            mask, truth = mask_ds[sl] > 0, fin["labels"][sl] > 0
            inter += int(np.logical_and(mask, truth).sum())
            total += int(mask.sum() + truth.sum())
    dice = 2 * inter / total
    summary = {
        "shape": list(shape),
        "result_shape": list(segmented.shape),
        "output_shape": list(out_shape),
        "outputs": {"segmented": "segmented.h5"},
        "dice": dice,
        "seconds": elapsed,
    }
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"{shape} uint16 volume ({np.prod(shape) * 2 / 2**20:.0f} MiB) in {elapsed:.1f} s; Dice {dice:.3f}")
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", default="large-volume-output")
    parser.add_argument("--slabs", type=int, default=4, help="number of 16-slice slabs (default 4)")
    parser.add_argument("--size", type=int, default=256, help="y and x extent (default 256)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    args = parser.parse_args()
    main(args.out_dir, args.slabs, args.size, args.processes)
