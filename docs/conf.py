"""Sphinx configuration of nica's documentation.

Build (no network needed; 10-20 seconds on two cores)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Everything is generated from the sources at build time and nothing is written into ``docs/``:
the API page uses autodoc directly (no autosummary stub files); the examples gallery is made
from the scripts' docstrings and the committed figures under ``docs/images/examples/`` (nothing
is executed) and the command-line page from ``nica <command> --help``, both by the small local
extension ``_ext/nica_docs.py``.
"""

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # the checkout's nica, installed or not
sys.path.insert(0, str(DOCS / "_ext"))

# autodoc imports nica, hence JAX: keep it on the CPU and quiet, and never open a window.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import nica  # noqa: E402

# -- project -----------------------------------------------------------------------------------

project = "nica"
author = "the nica developers"
copyright = "2026, the nica developers"
release = nica.__version__
version = ".".join(release.split(".")[:2])

# -- extensions --------------------------------------------------------------------------------
# No sphinx.ext.intersphinx: the build must not touch the network.

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",  # summary tables only; autosummary_generate is off
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "nica_docs",  # docs/_ext/nica_docs.py: `nica-cli-help` and `nica-examples`
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "images", "**/.ipynb_checkpoints"]
templates_path = []

# autodoc / autosummary / numpydoc
autosummary_generate = False  # no stub files written into docs/
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
numpydoc_show_class_members = False  # methods are listed explicitly in api.rst
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()  # tests/test_docs.py does the checks we rely on

# MyST (docs/benchmarks.md and docs/scaling.md are Markdown)
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3  # [text](#a-heading) links inside a Markdown page resolve

# Nitpicky for nica's own names only: a reference to a nica object that does not exist (a
# renamed function, a typo in a docstring) fails the -W build.  With intersphinx off, references
# to NumPy, JAX, optax or scikit-learn objects cannot resolve; they render as plain text.
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", r"(?!nica(\.|$)).*")]

# -- HTML --------------------------------------------------------------------------------------

html_theme = "alabaster"  # ships with Sphinx: no extra dependency
html_title = f"nica {release}"
html_static_path = []
html_theme_options = {
    "description": "Nonlinear ICA and exact-likelihood density estimation with the relative "
    "gradient, in JAX",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "230px",
}
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}
html_show_sourcelink = False
