"""Local Sphinx helpers that keep pages in step with the code they describe.

``.. nica-cli-help:: [COMMAND]``
    The ``--help`` text of ``nica`` (or of ``nica COMMAND``), rendered from
    :func:`nica.cli.build_parser` at build time.

``.. nica-registry:: MODULE``
    The names registered in ``nica.MODULE`` (``activations``, ``priors``, ``objectives``,
    ``gradients``), each with the first line of its class's docstring: the docs' lists of names
    read the registry, as the command line's choices do.

The examples gallery (sphinx-gallery, configured in ``conf.py``)
    :func:`gallery_argv` runs every script with ``--quick --out-dir FOLDER``,
    :func:`written_png_scraper` shows the PNGs it wrote there, :class:`ExampleOrder` orders the
    scripts, and :func:`add_example_links` puts under each name of the API page the examples
    that use it.
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

HELP_WIDTH = "96"  # argparse wraps to $COLUMNS; fixed so the page does not depend on a terminal


# ---------------------------------------------------------------------------------------------
# nica-cli-help


def _subcommands(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


class NicaCliHelp(SphinxDirective):
    optional_arguments = 1
    has_content = False

    def run(self):
        from nica.cli import build_parser

        parser = build_parser()
        if self.arguments:
            name = self.arguments[0]
            commands = _subcommands(parser)
            if name not in commands:
                raise self.error(f"nica has no command {name!r}; it has {sorted(commands)}.")
            parser = commands[name]
        previous = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = HELP_WIDTH
        try:
            text = parser.format_help()
        finally:
            if previous is None:
                del os.environ["COLUMNS"]
            else:
                os.environ["COLUMNS"] = previous
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


# ---------------------------------------------------------------------------------------------
# nica-registry

REGISTRIES = ("activations", "priors", "objectives", "gradients")


class NicaRegistry(SphinxDirective):
    required_arguments = 1
    has_content = False

    def run(self):
        import importlib

        from docutils.statemachine import StringList

        name = self.arguments[0]
        if name not in REGISTRIES:
            raise self.error(f"nica-registry takes one of {REGISTRIES}; got {name!r}.")
        module = importlib.import_module(f"nica.{name}")
        lines = []
        for registered in module.names():
            if registered.endswith("_example"):  # registered by a docstring example of the same build
                continue
            component = module.get(registered)
            cls = type(component)
            summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            lines.append(f"* ``{registered!r}``: :class:`~nica.{name}.{cls.__name__}` -- {summary}")
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=f"nica-registry {name}"), self.content_offset, container)
        return container.children


# ---------------------------------------------------------------------------------------------
# the examples gallery (sphinx-gallery): the scripts' arguments, their figures, their order

GALLERY_ARGS_ENV = "NICA_GALLERY_ARGS"  # e.g. NICA_GALLERY_ARGS="" for the scripts' full runs
ARGS_STAMP = Path("auto_examples") / "_written" / "ARGS"  # the arguments of the last full build
EXAMPLE_ORDER = ("linear_ica", "toy_densities", "nonlinear_walkthrough", "identifiability_walkthrough", "real_signals")


class ExampleOrder:
    """Sort key of the gallery: the examples from the simplest to the most involved."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        stem = Path(filename).stem
        rank = EXAMPLE_ORDER.index(stem) if stem in EXAMPLE_ORDER else len(EXAMPLE_ORDER)
        return rank, stem

    def __repr__(self):  # sphinx-gallery compares configurations by repr
        return f"ExampleOrder({EXAMPLE_ORDER})"


def _written_dir(script_vars):
    """The folder an example writes its PNGs to during the build (``--out-dir``)."""
    target = Path(script_vars["target_file"])
    return target.parent / "_written" / Path(script_vars["src_file"]).stem


def gallery_args():
    """The examples' arguments in this build, ``--out-dir`` aside (``--quick`` by default)."""
    return os.environ.get(GALLERY_ARGS_ENV, "--quick")


def gallery_args_changed(srcdir):
    """Whether the last successful build ran the examples with other arguments.

    sphinx-gallery runs a script again only when its source changed; conf.py sets
    ``run_stale_examples`` from this, so that switching between ``--quick`` and the full runs
    does not leave the other mode's output on the pages.
    """
    stamp = Path(srcdir) / ARGS_STAMP
    return not stamp.is_file() or stamp.read_text(encoding="utf-8") != gallery_args()


def _stamp_gallery_args(app, exception):
    """``build-finished``: remember the examples' arguments of a build that succeeded."""
    stamp = Path(app.srcdir) / ARGS_STAMP
    if exception is None and stamp.parent.is_dir():
        stamp.write_text(gallery_args(), encoding="utf-8")


def gallery_argv(gallery_conf, script_vars):
    """``sys.argv[1:]`` of an example run by sphinx-gallery: ``--quick --out-dir FOLDER``.

    ``$NICA_GALLERY_ARGS`` replaces ``--quick`` (an empty value: the full runs).  sphinx-gallery
    deliberately runs a script without ``__file__`` and with an empty ``__doc__``; the examples
    find the repository from the first and take their ``--help`` text from the second, so they
    get both as they are when run as scripts.
    """
    out = _written_dir(script_vars)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    src = Path(script_vars["src_file"])
    script_vars["example_globals"]["__file__"] = str(src)
    script_vars["example_globals"]["__doc__"] = ast.get_docstring(
        ast.parse(src.read_text(encoding="utf-8")), clean=False
    )
    args = shlex.split(gallery_args())
    # relative to the folder the script runs in (sphinx-gallery's working directory), so that
    # what it prints does not show the build machine's paths
    return [*args, "--out-dir", os.path.relpath(out, src.parent)]


def written_png_scraper(block, block_vars, gallery_conf):
    """Image scraper: the PNGs the example wrote to its ``--out-dir`` since the last block.

    The examples save their figures (and most close them), so this scraper replaces
    sphinx-gallery's matplotlib one: it shows the files the script wrote, in the order it wrote
    them, one figure under the other (the examples' figures are wide), and closes the figures
    the script left open rather than showing them a second time.
    """
    from sphinx_gallery.scrapers import figure_rst

    out = _written_dir(block_vars)
    shown = block_vars.setdefault("nica_pngs_shown", set())
    new = sorted(
        (path for path in out.glob("*.png") if path.name not in shown),
        key=lambda path: (path.stat().st_mtime_ns, path.name),
    )
    rst = ""
    for png, target in zip(new, block_vars["image_path_iterator"]):
        shutil.copyfile(png, target)
        shown.add(png.name)
        rst += figure_rst([target], gallery_conf["src_dir"], fig_titles=png.name)
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
    return rst


# ---------------------------------------------------------------------------------------------
# the API page: under each name, the examples that use it


def _backreferences(app):
    """The file in which sphinx-gallery lists, per qualified name, the examples that use it."""
    conf = app.config.sphinx_gallery_conf
    return Path(app.srcdir, conf["backreferences_dir"], "backreferences_all.json")


@functools.lru_cache(maxsize=4)
def _examples_by_name(path, mtime_ns):
    """``{qualified name: [example, ...]}`` as the file at ``path`` was at ``mtime_ns``."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def add_example_links(app, what, name, obj, options, lines):
    """``autodoc-process-docstring``: a mini-gallery of the examples that use ``name``.

    Appended only where an example uses the name (a heading over an empty gallery would be
    noise); sphinx-gallery finds the uses when it runs the examples, before any page is read.
    The page is read again whenever those uses change.
    """
    if what not in ("class", "function", "method", "module") or not name.startswith("nica"):
        return
    path = _backreferences(app)
    if not path.is_file():
        return
    app.env.note_dependency(str(path))
    if name in _examples_by_name(str(path), path.stat().st_mtime_ns):
        lines += ["", f".. rubric:: Examples using ``{name}``", "", f".. minigallery:: {name}", ""]


def setup(app):
    app.add_directive("nica-cli-help", NicaCliHelp)
    app.add_directive("nica-registry", NicaRegistry)
    app.connect("autodoc-process-docstring", add_example_links, priority=600)  # after numpydoc
    app.connect("build-finished", _stamp_gallery_args)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
