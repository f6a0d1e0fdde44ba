"""Sphinx configuration of nica's documentation.

Build (no network needed; about a minute on two cores, most of it running the examples)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

- Theme: pydata-sphinx-theme (navigation bar, search, light/dark switch, scrolling code blocks).
- Maths: MathJax 3 shipped inside the ``sphinx-mathjax-offline`` package and copied into
  ``_static/mathjax``, so ``:math:`` (reST) and ``$...$`` (MyST) are typeset without a network.
- Examples: a sphinx-gallery made from ``examples/*.py``.  Every script is run once at build
  time with its ``--quick`` settings (``NICA_GALLERY_ARGS`` replaces them); the numbers it prints
  and the figures it writes appear on its page.  sphinx-gallery writes its pages to
  ``docs/auto_examples/`` and its backreferences to ``docs/gen_modules/`` (both ignored by git)
  and runs a script again only when it, or ``NICA_GALLERY_ARGS``, changed.  The API page lists
  under each name the examples that use it (``_ext/nica_docs.py``).
- API: autodoc directly (no autosummary stub files); the command-line page comes from
  ``nica <command> --help`` (``_ext/nica_docs.py``).
"""

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # the checkout's nica, installed or not
sys.path.insert(0, str(DOCS / "_ext"))

# autodoc and the examples import nica, hence JAX: keep it on the CPU and quiet, and never open
# a window.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

from nica_docs import gallery_args_changed  # noqa: E402

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
    "sphinx-mathjax-offline",  # the package's MathJax 3 into _static/mathjax, used by mathjax
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "nica_docs",  # docs/_ext/nica_docs.py: `nica-cli-help`, the gallery's argv and figures
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "images", "**/.ipynb_checkpoints", "auto_examples/*.ipynb", "auto_examples/*.py"]
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

# MathJax: sphinx-mathjax-offline points mathjax_path at its bundled MathJax 3 (tex-chtml.js),
# so the configuration is MathJax 3's.  These are the classes MyST asks MathJax to typeset
# (``math`` is what both :math: and $...$ become).
mathjax3_config = {
    "options": {"processHtmlClass": "tex2jax_process|mathjax_process|math|output_area"},
}

# MyST (docs/benchmarks.md and docs/scaling.md are Markdown)
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3  # [text](#a-heading) links inside a Markdown page resolve

# Nitpicky for nica's own names only: a reference to a nica object that does not exist (a
# renamed function, a typo in a docstring) fails the -W build.  With intersphinx off, references
# to NumPy, JAX, optax or scikit-learn objects cannot resolve; they render as plain text.
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", r"(?!nica(\.|$)).*")]

# -- the examples gallery ------------------------------------------------------------------------

sphinx_gallery_conf = {
    "examples_dirs": ["../examples"],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r".*",  # run every script, not only plot_*.py
    "within_subsection_order": "nica_docs.ExampleOrder",  # simple to involved, see _ext
    # Each script runs as ``script.py --quick --out-dir <folder>``; the PNGs it writes there are
    # shown after its code (instead of the figures it leaves open: matplotlib's scraper is off).
    "reset_argv": "nica_docs.gallery_argv",
    "run_stale_examples": gallery_args_changed(DOCS),  # a switch to or from --quick runs all
    "image_scrapers": ("nica_docs.written_png_scraper",),
    "backreferences_dir": "gen_modules/backreferences",
    "doc_module": ("nica",),
    "remove_config_comments": True,
    "show_memory": False,
    # Each page says how long its script ran; no summary page (its table loads CDN assets).
    "write_computation_times": False,
    "abort_on_example_error": False,  # a failing example fails the -W build at its end
}

# -- HTML --------------------------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"nica {release}"
html_static_path = []
html_theme_options = {
    "logo": {"text": f"nica {release}"},
    "navbar_align": "left",
    "header_links_before_dropdown": 6,
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
    # A version switcher needs a JSON list of the published versions ("switcher" and
    # "navbar_persistent"); add one when the docs are published in several versions.
}
# The left sidebar lists a section's own pages; only the gallery has any, so the single pages
# get the width instead of an empty "Section Navigation".
html_sidebars = {path.stem: [] for path in [*DOCS.glob("*.rst"), *DOCS.glob("*.md")]}
html_show_sourcelink = False
