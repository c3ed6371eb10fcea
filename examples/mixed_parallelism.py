"""The seed's "Mixed Parallelism" example, end to end under ``mpiexec``.

NDNT on the tiles is vectorized, heavy work: it runs over MPI ranks. Object
classification is light: it runs in threads. Every rank runs this script
(SPMD); the ``florin.MPI`` sub-pipeline shares the tiles among the ranks, the
implicit join reassembles the mask, and the ``florin.Multithread``
sub-pipeline classifies the objects concurrently. Rank 0 also runs the serial
pipeline and checks that this gave exactly the same class volume.

Outputs in OUTPUT_DIR (default ``mixed-parallelism-output``): ``volume.tif``
(input), ``segmented.tiff`` (binary mask), ``labeled.tiff`` (class id per
voxel: 1 cell, 2 vasculature) and ``summary.json``.

Run: ``mpiexec -n 2 python examples/mixed_parallelism.py [OUTPUT_DIR]``
"""

import json
import os
import sys
import time

import numpy as np
from mpi4py import MPI as mpi

import florin
import florin.conncomp as conncomp
import florin.morphology as morphology
import florin.thresholding as thresholding
from florin.data import phantom

SHAPE = (32, 128, 128)
SEED = 0
CELL = dict(area=(150, 4000), depth=(4, 16), height=(7, 26), width=(7, 26))  # florin.data.PHANTOM_CLASSES


def main(out_dir="mixed-parallelism-output"):
    comm = mpi.COMM_WORLD
    volume = os.path.join(out_dir, "volume.tif")
    segmented_path = os.path.join(out_dir, "segmented.tiff")
    labeled_path = os.path.join(out_dir, "labeled.tiff")
    sample = phantom(SHAPE, seed=SEED)  # deterministic: the same on every rank
    if comm.rank == 0:
        os.makedirs(out_dir, exist_ok=True)
        florin.io.write(volume, florin.as_volume(sample.image, spacing=(1.0, 0.5, 0.5), units="um"), overwrite=True)
    comm.Barrier()  # the input exists before any rank reads it

    # [pipeline]
    # Set up a serial pipeline
    pipeline = florin.Serial(
        # Load in the volume from file
        florin.load(volume),
        # Tile the volume into overlapping 64 x 64 x 10 subvolumes
        florin.tile(shape=(10, 64, 64), stride=(10, 32, 32)),
        florin.MPI(
            # Threshold with NDNT
            thresholding.ndnt(shape=(10, 64, 64), threshold=0.3),
            # Clean up a little bit
            morphology.binary_opening(),
        ),
        # Save the output to a TIFF stack
        florin.save(segmented_path, overwrite=True),
        # Find connected components
        conncomp.label(),
        morphology.remove_small_holes(max_size=19),
        conncomp.regionprops(),
        # Classify the connected components by their volume and dimensions, in threads
        florin.Multithread(
            florin.classify(
                florin.bounds_classifier("cell", **CELL),
                florin.bounds_classifier("vasculature"),
            ),
        ),
        # Reconstruct the labeled volume
        florin.reconstruct(),
        # Write out the labeled volume
        florin.save(labeled_path, overwrite=True),
    )

    # Run the pipeline (on every rank)
    start = time.perf_counter()
    labeled = pipeline()
    # [/pipeline]
    elapsed = time.perf_counter() - start

    if comm.rank != 0:
        return None
    serial = florin.Serial(
        florin.load(volume),
        florin.tile(shape=(10, 64, 64), stride=(10, 32, 32)),
        thresholding.ndnt(shape=(10, 64, 64), threshold=0.3),
        morphology.binary_opening(),
        florin.join(),  # end of the tiled part (the MPI pipeline above ends it implicitly)
        conncomp.label(),
        morphology.remove_small_holes(max_size=19),
        conncomp.regionprops(),
        florin.classify(florin.bounds_classifier("cell", **CELL), florin.bounds_classifier("vasculature")),
        florin.reconstruct(),
    )()
    classes = np.asarray(labeled)
    truth = sample.labels > 0
    dice = 2 * np.logical_and(classes > 0, truth).sum() / ((classes > 0).sum() + truth.sum())
    summary = {
        "phantom": {"shape": list(SHAPE), "seed": SEED},
        "ranks": comm.size,
        "outputs": {"segmented": "segmented.tiff", "labeled": "labeled.tiff"},
        "dice": float(dice),
        "equal_to_serial": bool(np.array_equal(classes, np.asarray(serial))),
        "seconds": elapsed,
    }
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(
        f"{comm.size} ranks: labeled {classes.shape} volume in {elapsed:.2f} s; "
        f"Dice {dice:.3f}; identical to Serial: {summary['equal_to_serial']}"
    )
    return summary


if __name__ == "__main__":
    main(*sys.argv[1:])
