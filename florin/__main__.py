"""``python -m florin``: the florin command line."""

import sys

from florin.cli import main

if __name__ == "__main__":
    sys.exit(main())
