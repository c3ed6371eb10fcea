"""``python -m florin.run PIPELINE INPUT``: run a serialized pipeline (as in the seed's SLURM example)."""

import sys

from florin.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
