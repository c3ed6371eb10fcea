"""Make the demo preview image of the README and the docs (``docs/_static/demo-preview.png``).

Runs exactly the README's command-line example::

    florin demo DIR
    florin preview DIR/volume.tif --labels DIR/labeled.tiff -o OUTPUT_PNG

in a temporary directory. Where the CLI lacks ``demo`` or ``preview``, it runs
the weak-classification example (or the first example) instead and draws the
orthogonal mid-slices with matplotlib.

    python docs/_scripts/make_preview.py [OUTPUT_PNG]
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT = os.path.join(ROOT, "docs", "_static", "demo-preview.png")


def _run_example(out_dir):
    objects = all(importlib.util.find_spec(m) for m in ("florin.conncomp", "florin.reconstruction"))
    script = "weak_classification.py" if objects else "first_example.py"
    subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), out_dir], check=True)
    result = "labeled.tiff" if objects else "segmented.tiff"
    return os.path.join(out_dir, "volume.tif"), os.path.join(out_dir, result)


def _matplotlib_preview(path, volume, labels, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    data, lab = np.asarray(volume, dtype=float), np.asarray(labels)
    cz, cy, cx = (n // 2 for n in data.shape)
    panels = [(f"z={cz}", data[cz], lab[cz]), (f"y={cy}", data[:, cy], lab[:, cy]), (f"x={cx}", data[:, :, cx],
                                                                                     lab[:, :, cx])]
    colors = [(0, 0, 0, 0), (0.9, 0.3, 0.2, 0.5), (0.2, 0.5, 0.95, 0.5)]
    cmap = ListedColormap(colors[: int(lab.max()) + 1])
    lo, hi = np.percentile(data, [1, 99])
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    for ax, (name, image, overlay) in zip(axes, panels, strict=True):
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.imshow(overlay, cmap=cmap, vmin=0, vmax=len(colors) - 1, interpolation="nearest")
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "florin", *args], check=False).returncode == 0


def main(path=DEFAULT):
    import florin

    path = os.path.abspath(path)
    with tempfile.TemporaryDirectory() as tmp:
        demo = os.path.join(tmp, "florin-demo")
        if _cli("demo", demo) and _cli("preview", os.path.join(demo, "volume.tif"), "--labels",
                                       os.path.join(demo, "labeled.tiff"), "-o", path, "--overwrite"):
            print(f"wrote {path}")
            return
        volume_path, result_path = _run_example(tmp)
        volume, result = florin.io.read(volume_path), florin.io.read(result_path)
        labels = np.asarray(result).astype(np.uint8)
        classes = result.attrs.get("classes")
        title = ("phantom with classes: " + ", ".join(f"{v}" for v in classes.values())) if classes else (
            "phantom with NDNT segmentation")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if importlib.util.find_spec("florin.preview"):
            from florin.preview import save_preview

            if os.path.exists(path):
                os.remove(path)
            save_preview(path, volume, labels, title=title, dpi=80)
        else:
            _matplotlib_preview(path, volume, labels, title)
    print(f"wrote {path}")


if __name__ == "__main__":
    main(*sys.argv[1:])
