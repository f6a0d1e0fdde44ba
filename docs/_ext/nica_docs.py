"""Two small directives that keep pages in step with the code they describe.

``.. nica-cli-help:: [COMMAND]``
    The ``--help`` text of ``nica`` (or of ``nica COMMAND``), rendered from
    :func:`nica.cli.build_parser` at build time.

``.. nica-examples::``
    The examples gallery: one section per script in ``examples/``, made of the script's module
    docstring (title, description, the command that runs it), the figures it names that are
    committed under ``docs/images/examples/``, and its source.  Nothing is executed.  The
    directive's content may list script names (without ``.py``) to put first; the others follow
    alphabetically.  A figure named in a docstring but not committed is a build warning.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import os
import re
from pathlib import Path

from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

HELP_WIDTH = "96"  # argparse wraps to $COLUMNS; fixed so the page does not depend on a terminal
FIGURE = re.compile(r"``([\w.-]+\.png)``")


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
# nica-examples


def example_scripts(examples_dir: Path, first=()):
    """The scripts of ``examples_dir``: those named in ``first`` in that order, then the rest."""
    scripts = {path.stem: path for path in sorted(examples_dir.glob("*.py"))}
    order = [name for name in first if name in scripts]
    return [scripts[name] for name in order + sorted(set(scripts) - set(order))]


def example_figures(docstring: str):
    """PNG file names that an example's docstring names (``name.png``), in order, once each."""
    return list(dict.fromkeys(FIGURE.findall(docstring)))


def _docstring(path: Path):
    """``(docstring, last line of the docstring)`` of a script."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree)
    if not doc:
        raise ValueError(f"{path} has no module docstring; the examples gallery is made from it")
    return inspect.cleandoc(doc), tree.body[0].end_lineno


class NicaExamples(SphinxDirective):
    has_content = True

    def run(self):
        docs = Path(self.env.srcdir)
        here = Path(self.env.doc2path(self.env.docname)).parent
        examples = docs.parent / "examples"
        figures_dir = docs / "images" / "examples"
        first = [line.strip() for line in self.content if line.strip()]
        scripts = example_scripts(examples, first)

        lines, thumbnails = [], []
        for script in scripts:
            self.env.note_dependency(str(script))
            doc, doc_end = _docstring(script)
            title, _, body = doc.partition("\n")
            title = title.strip().rstrip(".")
            label = f"example-{script.stem}"
            figures = []
            for name in example_figures(doc):
                if (figures_dir / name).is_file():
                    figures.append(os.path.relpath(figures_dir / name, here))
                else:
                    logger.warning(
                        f"examples/{script.name} names the figure {name}, which is not committed "
                        f"under docs/images/examples/ (run the script to make it)",
                        location=(self.env.docname, self.lineno),
                    )
            if figures:
                thumbnails.append((figures[0], label, title))
            lines += [f".. _{label}:", "", title, "-" * len(title), ""]
            lines += body.strip("\n").splitlines() + [""]
            for figure in figures:
                lines += [f".. figure:: {figure}", f"   :alt: {Path(figure).name}", ""]
            source = os.path.relpath(script, here)  # the code, without the docstring shown above
            lines += [f".. literalinclude:: {source}", "   :language: python",
                      f"   :lines: {doc_end + 1}-", f"   :caption: examples/{script.name}", ""]

        if thumbnails:
            header = [".. list-table::", "   :class: nica-gallery", ""]
            cells = []
            for figure, label, title in thumbnails:
                cells.append([f".. image:: {figure}", "   :width: 100%",
                              f"   :target: #{nodes.make_id(label)}", f"   :alt: {title}", "",
                              f":ref:`{label}`"])
            while len(cells) % 3:
                cells.append([".."])
            rows = []
            for start in range(0, len(cells), 3):
                for column, cell in enumerate(cells[start:start + 3]):
                    bullet = "   * - " if column == 0 else "     - "
                    rows.append(bullet + cell[0])
                    rows += ["       " + line if line else "" for line in cell[1:]]
            lines = header + rows + [""] + lines

        self.state_machine.insert_input(lines, f"<nica-examples in {self.env.docname}>")
        return []


def setup(app):
    app.add_directive("nica-cli-help", NicaCliHelp)
    app.add_directive("nica-examples", NicaExamples)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
