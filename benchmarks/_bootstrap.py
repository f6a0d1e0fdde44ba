"""Makes ``python benchmarks/NAME.py`` import its siblings as the package ``benchmarks``.

A script run by its path has this folder, not the repository root, on ``sys.path``; each script
imports this module first in that case (``if __package__ in (None, ""): import _bootstrap``).
The root is appended, not prepended, so that ``nica`` is imported from where it was before.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.append(ROOT)
