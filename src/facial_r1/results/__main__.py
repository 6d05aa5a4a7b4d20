"""``python -m facial_r1.results``: :func:`facial_r1.results.cli.main`."""

import sys

from facial_r1.results.cli import main

if __name__ == "__main__":
    sys.exit(main())
