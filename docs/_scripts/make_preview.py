"""Make the demo preview image of the README and the docs (``docs/_static/demo-preview.png``).

Runs exactly the README's command-line example in a temporary directory::

    florin demo DIR
    florin preview DIR/volume.tif --labels DIR/labeled.tiff -o OUTPUT_PNG

(``florin demo`` draws the same picture as its ``preview.png``; the test suite checks that.)

    python docs/_scripts/make_preview.py [OUTPUT_PNG]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT = os.path.join(ROOT, "docs", "_static", "demo-preview.png")


def _florin(*args):
    subprocess.run([sys.executable, "-m", "florin", *args], check=True)


def main(path=DEFAULT):
    path = os.path.abspath(path)
    with tempfile.TemporaryDirectory() as tmp:
        demo = os.path.join(tmp, "florin-demo")
        _florin("demo", demo)
        _florin("preview", os.path.join(demo, "volume.tif"), "--labels", os.path.join(demo, "labeled.tiff"),
                "-o", path, "--overwrite")
    print(f"wrote {path}")


if __name__ == "__main__":
    main(*sys.argv[1:])
