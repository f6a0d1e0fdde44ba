"""``python -m nica``: the command line (see :mod:`nica.cli`)."""

import sys

from nica.cli import main

if __name__ == "__main__":
    sys.exit(main())
