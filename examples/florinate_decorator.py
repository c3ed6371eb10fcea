"""The seed's "florinate as a decorator" example on a generated phantom.

``@florin.florinate`` turns ``scale(image, scalar=1)`` into an operator
factory: ``scale(scalar=2.0)`` checks and records the parameters when the
pipeline is built, and every tile that comes through is passed as ``image``.
Because NDNT compares each voxel with the mean of its neighbourhood, scaling
the image does not change the segmentation: the script checks that the result
equals the unscaled pipeline's.

Outputs in OUTPUT_DIR (default ``florinate-decorator-output``): ``volume.tif``,
``segmented.tiff`` and ``summary.json``.

Run: ``python examples/florinate_decorator.py [OUTPUT_DIR]``
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


# [function]
# Create the custom function and decorate it with ``florinate``
@florin.florinate
def scale(image, scalar=1):
    """Scale an image's values by some number.

    Parameters
    ----------
    image : array_like
    scalar : int or float

    Returns
    -------
    image * scalar
    """
    return image * scalar
# [/function]


def main(out_dir="florinate-decorator-output"):
    os.makedirs(out_dir, exist_ok=True)
    sample = phantom(SHAPE, seed=SEED)
    volume = os.path.join(out_dir, "volume.tif")
    florin.io.write(volume, sample.image, overwrite=True)
    segmented_path = os.path.join(out_dir, "segmented.tiff")

    # [pipeline]
    # Set up a serial pipeline
    pipeline = florin.Serial(
        # Load in the volume from file
        florin.load(volume),
        # Tile the volume into overlapping 64 x 64 x 10 subvolumes
        florin.tile(shape=(10, 64, 64), stride=(10, 32, 32)),
        # Add the custom function to the pipeline
        scale(scalar=2.0),
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

    unscaled = florin.Serial(
        florin.tile(shape=(10, 64, 64), stride=(10, 32, 32)),
        thresholding.ndnt(shape=(10, 64, 64), threshold=0.3),
        morphology.binary_opening(),
    )(sample.image)
    mask, truth = segmented.values, sample.labels > 0
    dice = 2 * np.logical_and(mask, truth).sum() / (mask.sum() + truth.sum())
    summary = {
        "phantom": {"shape": list(SHAPE), "seed": SEED},
        "outputs": {"segmented": "segmented.tiff"},
        "dice": float(dice),
        "equal_to_unscaled": bool(np.array_equal(mask, unscaled.values)),
    }
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"Dice vs. ground truth {dice:.3f}; same mask as without scaling: {summary['equal_to_unscaled']}")
    return summary


if __name__ == "__main__":
    main(*sys.argv[1:])
