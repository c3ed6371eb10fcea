"""The seed's "Single-Argument Functions" example on a generated phantom.

A function that takes only the image needs no preparation: pass it to the
pipeline as it is, without calling it. Here ``np.squeeze`` drops the
singleton channel axis of a ``(channel, z, y, x)`` acquisition so that the
3-D tiling and NDNT that follow see a ``(z, y, x)`` volume.

(The seed squeezes *after* tiling; a step inside the tiled part of a pipeline
must keep the tile's shape, so the squeeze belongs right after loading.)

Outputs in OUTPUT_DIR (default ``single-argument-output``): ``volume.npy`` (a
``(1, z, y, x)`` input), ``segmented.tiff`` and ``summary.json``.

Run: ``python examples/single_argument.py [OUTPUT_DIR]``
"""

import json
import os
import sys

import numpy as np

import florin
import florin.morphology as morphology
import florin.thresholding as thresholding
from florin.data import phantom

SHAPE = (32, 128, 128)
SEED = 0


def main(out_dir="single-argument-output"):
    os.makedirs(out_dir, exist_ok=True)
    sample = phantom(SHAPE, seed=SEED)
    volume = os.path.join(out_dir, "volume.npy")
    one_channel = florin.as_volume(sample.image[np.newaxis], dims=("c", "z", "y", "x"))
    florin.io.write(volume, one_channel, overwrite=True)
    segmented_path = os.path.join(out_dir, "segmented.tiff")

    # [pipeline]
    # Set up a serial pipeline
    pipeline = florin.Serial(
        # Load in the (1, z, y, x) volume from file
        florin.load(volume),
        # Remove any axes with shape 1. Simply pass np.squeeze without invoking
        np.squeeze,
        # Tile the volume into overlapping 64 x 64 x 10 subvolumes
        florin.tile(shape=(10, 64, 64), stride=(10, 32, 32)),
        # Threshold with NDNT
        thresholding.ndnt(shape=(10, 64, 64), threshold=0.3),
        # Clean up a little bit
        morphology.binary_opening(),
        # Save the output to a TIFF stack
        florin.save(segmented_path, overwrite=True),
    )

    # Run the pipeline
    segmented = pipeline()
    # [/pipeline]

    mask, truth = segmented.values, sample.labels > 0
    dice = 2 * np.logical_and(mask, truth).sum() / (mask.sum() + truth.sum())
    summary = {
        "phantom": {"shape": list(SHAPE), "seed": SEED},
        "input_shape": list(one_channel.shape),
        "outputs": {"segmented": "segmented.tiff"},
        "dims": list(segmented.dims),
        "dice": float(dice),
    }
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"{one_channel.shape} input -> {segmented.dims} {segmented.shape} mask; Dice vs. ground truth {dice:.3f}")
    return summary


if __name__ == "__main__":
    main(*sys.argv[1:])
