"""The seed's "florinate in-line" example on a generated phantom.

A function you cannot (or do not want to) decorate is wrapped where the
pipeline is built: ``florin.florinate(scale)(scalar=2.0)``. Here it scales the
whole volume before tiling. ``functools.partial`` binds the *last* arguments
of a function whose image comes last: the script also shows that case.

(The seed's version also called the undecorated ``scale(scalar=2.0)`` after
tiling, which raises ``TypeError`` because ``scale`` itself needs an image;
only the florinated call belongs in the pipeline.)

Outputs in OUTPUT_DIR (default ``florinate-inline-output``): ``volume.tif``,
``segmented.tiff`` and ``summary.json``.

Run: ``python examples/florinate_inline.py [OUTPUT_DIR]``
"""

import functools
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
# Create the custom function
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


# [image-last]
def clip(low, high, image):
    """A function that takes the image last: bind with functools.partial."""
    return np.clip(image, low, high)
# [/image-last]


def main(out_dir="florinate-inline-output"):
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
        # Add the custom function to the pipeline and wrap it in ``florinate``
        florin.florinate(scale)(scalar=2.0),
        # An image-last function: functools.partial binds the leading arguments
        functools.partial(clip, 0, 2 * 65535),
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
        "outputs": {"segmented": "segmented.tiff"},
        "dice": float(dice),
    }
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"Dice vs. ground truth {dice:.3f}")
    return summary


if __name__ == "__main__":
    main(*sys.argv[1:])
