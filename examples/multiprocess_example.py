"""The seed's "Multiprocessing" example on a generated phantom volume.

The weak-classification pipeline with its two per-item parts in worker
processes (pathos): tiles and objects are shipped to the workers, results
come back and are joined. The result is identical to the serial pipeline's.

Segments the phantom with tiled NDNT, finds connected components, measures
them, classifies each object as a ``cell`` or ``vasculature`` from its size
and writes the class-label volume. Outputs in OUTPUT_DIR (default
``multiprocess-example-output``): ``volume.tif`` (input), ``segmented.tiff``
(binary mask), ``labeled.tiff`` (class id per voxel: 1 cell, 2 vasculature),
and ``summary.json``.

Run: ``python examples/multiprocess_example.py [OUTPUT_DIR]``
"""

import json
import os
import sys

import numpy as np

import florin
import florin.conncomp as conncomp
import florin.morphology as morphology
import florin.thresholding as thresholding
from florin.data import phantom

SHAPE = (32, 128, 128)  # small but with ~20 objects of both classes; try (64, 256, 256)
SEED = 0


def main(out_dir="multiprocess-example-output"):
    os.makedirs(out_dir, exist_ok=True)
    sample = phantom(SHAPE, seed=SEED)
    volume = os.path.join(out_dir, "volume.tif")
    florin.io.write(volume, florin.as_volume(sample.image, spacing=(1.0, 0.5, 0.5), units="um"), overwrite=True)
    segmented_path = os.path.join(out_dir, "segmented.tiff")
    labeled_path = os.path.join(out_dir, "labeled.tiff")

    # [pipeline]
    # Set up a serial pipeline
    pipeline = florin.Serial(
        # Load in the volume from file
        florin.load(volume),
        # Tile the volume into overlapping 64 x 64 x 10 subvolumes
        florin.tile(shape=(10, 64, 64), stride=(10, 32, 32)),
        # (workers=2: two worker processes; the default is one per CPU)
        florin.Multiprocess(
            # Threshold with NDNT
            thresholding.ndnt(shape=(10, 64, 64), threshold=0.3),
            # Clean up a little bit
            morphology.binary_opening(),
            workers=2,
        ),
        # Save the output to a TIFF stack
        florin.save(segmented_path, overwrite=True),
        # Find connected components
        conncomp.label(),
        morphology.remove_small_holes(max_size=19),
        conncomp.regionprops(),
        # Classify the connected components by their volume and dimensions
        # (bounds fitted to the phantom's objects: florin.data.PHANTOM_CLASSES)
        florin.Multiprocess(
            florin.classify(
                florin.bounds_classifier(
                    "cell",
                    area=(150, 4000),
                    depth=(4, 16),
                    height=(7, 26),
                    width=(7, 26),
                ),
                florin.bounds_classifier("vasculature"),
            ),
        ),
        # Reconstruct the labeled volume
        florin.reconstruct(),
        # Write out the labeled volume
        florin.save(labeled_path, overwrite=True),
    )

    # Run the pipeline
    labeled = pipeline()
    # [/pipeline]

    classes = labeled.values
    truth = sample.labels > 0
    dice = 2 * np.logical_and(classes > 0, truth).sum() / ((classes > 0).sum() + truth.sum())
    voxels = {name: int((classes == cid).sum()) for cid, name in sample.class_names.items()}
    summary = {
        "phantom": {"shape": list(SHAPE), "seed": SEED},
        "outputs": {"segmented": "segmented.tiff", "labeled": "labeled.tiff"},
        "dice": float(dice),
    }
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"labeled {labeled.shape} volume; foreground Dice vs. ground truth: {dice:.3f}; voxels per class: {voxels}")
    return summary


if __name__ == "__main__":
    main(*sys.argv[1:])
