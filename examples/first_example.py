"""The seed's "A First Example" on a generated phantom volume.

Writes ``volume.tif`` (the phantom), ``segmented.tiff`` (the binary
segmentation) and ``summary.json`` into the output directory (default:
``demo-output``) and prints how well the segmentation matches the phantom's
ground truth.

Run: ``python examples/first_example.py [OUTPUT_DIR]``

The part between the ``[pipeline]`` markers is what the docs show; it runs as
shown, on its own.
"""

import json

# [pipeline]
import os
import sys
import time

import numpy as np

import florin
import florin.morphology as morphology
import florin.thresholding as thresholding
from florin.data import phantom

out_dir = sys.argv[1] if len(sys.argv) > 1 else "demo-output"
os.makedirs(out_dir, exist_ok=True)
# The seed example reads an X-ray volume; a generated phantom (dark cells and vessels) stands in for it
sample = phantom((32, 128, 128), seed=0)  # small and quick; try (64, 256, 256)
volume_path = os.path.join(out_dir, "volume.tif")
florin.io.write(volume_path, florin.as_volume(sample.image, spacing=(1.0, 0.5, 0.5), units="um"), overwrite=True)

# Set up a serial pipeline (the seed's example, with its `thresshold` typo fixed)
pipeline = florin.Serial(
    # Load in the volume from file
    florin.load(volume_path),
    # Tile the volume into overlapping 64 x 64 x 10 subvolumes
    florin.tile(shape=(10, 64, 64), stride=(10, 32, 32)),
    # Threshold with NDNT
    thresholding.ndnt(shape=(10, 64, 64), threshold=0.3),
    # Clean up a little bit
    morphology.binary_opening(),
    # Save the output to a TIFF stack
    florin.save(os.path.join(out_dir, "segmented.tiff"), overwrite=True),
)
# Run the pipeline
start = time.perf_counter()
segmented = pipeline()
# [/pipeline]
elapsed = time.perf_counter() - start

truth = sample.labels > 0
mask = segmented.values
dice = 2 * np.logical_and(mask, truth).sum() / (mask.sum() + truth.sum())
summary = {
    "phantom": {"shape": list(sample.image.shape), "seed": 0},
    "outputs": {"segmented": "segmented.tiff"},
    "dice": float(dice),
    "seconds": elapsed,
}
with open(os.path.join(out_dir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
print(f"segmented {segmented.shape} volume in {elapsed:.2f} s; foreground Dice vs. ground truth: {dice:.3f}")
print(f"outputs: {volume_path}, {os.path.join(out_dir, 'segmented.tiff')}")
