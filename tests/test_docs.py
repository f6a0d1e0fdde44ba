"""The documentation covers every public name, builds without warnings, and reads as it should.

"Public" means every name in ``nica.__all__`` and, recursively, in the ``__all__`` of every public
submodule it exports, plus the public methods of those classes.  Every function, class and
estimator method needs a numpydoc docstring whose ``Parameters`` section names each argument
(``Attributes`` may name a class's fields) and which has a ``Returns`` section when a value is
returned; other public methods need a docstring.  Every public name and method needs an autodoc
entry on ``docs/api.rst``.  Adding an undocumented public name therefore fails this file; so do
a CLI command missing from ``docs/cli.rst`` and an example script that cannot be a gallery page.

The tests marked ``slow`` build the HTML site once per session with ``sphinx-build -W`` (skipped
when the ``docs`` extra is not installed; the build runs every example with ``--quick``) and check
it: an API entry for every public name, nothing loaded from the network, each gallery page with
its printed output, its figures and a thumbnail, the API page linking to the examples that use a
name.  Then headless Chromium (skipped where it is not installed) opens the pages with maths, with
every host name unresolvable, and the tests check that MathJax typeset every formula.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import pathlib
import pkgutil
import re
import shutil
import subprocess
import sys
import textwrap
import warnings
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

import pytest
from sklearn.base import BaseEstimator

import nica

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
API_PAGE = DOCS / "api.rst"
CLI_PAGE = DOCS / "cli.rst"
CITING_PAGE = DOCS / "citing.rst"

# Public modules that are not in nica.__all__, each documented on a page of its own.
DOCUMENTED_ELSEWHERE = {"nica.cli": CLI_PAGE}

BUILD_TIMEOUT_S = 170  # the issue asks for a docs build under 3 minutes in CI


# ---------------------------------------------------------------------------------------------
# what is public


def _public_names():
    """``{qualified name: object}`` for nica.__all__ and, recursively, the submodules' __all__."""
    names = {}

    def visit(module, prefix):
        for name in module.__all__:
            obj = getattr(module, name)
            names[f"{prefix}.{name}"] = obj
            if inspect.ismodule(obj):
                assert hasattr(obj, "__all__"), f"public module {obj.__name__} has no __all__"
                visit(obj, f"{prefix}.{name}")

    visit(nica, "nica")
    return names


PUBLIC = _public_names()
PUBLIC_CLASSES = {name: obj for name, obj in PUBLIC.items() if inspect.isclass(obj)}


def _is_nica_function(attr):
    func = attr.__func__ if isinstance(attr, (classmethod, staticmethod)) else attr
    return inspect.isfunction(func) and func.__module__.startswith("nica")


def _nica_methods(cls):
    """Public methods of ``cls`` defined by nica itself (inherited from nica classes included)."""
    methods = {}
    for klass in reversed(cls.__mro__):
        for name, attr in vars(klass).items():
            if not name.startswith("_") and _is_nica_function(attr):
                methods[name] = getattr(cls, name)
    return methods


def _public_methods():
    """``{qualified name: method}`` of the methods that the API page must document.

    A method that overrides one of a public base class (``SmoothLeakyReLU.fn`` of
    ``Activation.fn``) is documented once, on the base class.
    """
    public_classes = set(PUBLIC_CLASSES.values())
    methods = {}
    for qualname, cls in PUBLIC_CLASSES.items():
        bases = [b for b in cls.__mro__[1:] if b in public_classes]
        for name, method in _nica_methods(cls).items():
            if not any(name in _nica_methods(base) for base in bases):
                methods[f"{qualname}.{name}"] = method
    return methods


METHODS = _public_methods()
ESTIMATOR_METHODS = {
    name: method
    for name, method in METHODS.items()
    if issubclass(PUBLIC_CLASSES[name.rsplit(".", 1)[0]], BaseEstimator)
}


# ---------------------------------------------------------------------------------------------
# numpydoc sections


def _simple_sections(doc):
    """``{section: [entry names]}`` of a numpydoc docstring, without numpydoc.

    A section is a title line followed by a line of dashes; its entries are the unindented
    lines under it, ``name : type`` (or a bare type in ``Returns``).
    """
    lines = doc.splitlines()
    sections, current = {}, None
    for i, line in enumerate(lines):
        underline = i + 1 < len(lines) and re.fullmatch(r"-{3,}", lines[i + 1].strip() or "x")
        if underline and line.strip() and not line.startswith(" "):
            current = line.strip()
            sections[current] = []
        elif current and line.strip() and not line.startswith(" ") and not re.fullmatch(r"-{3,}", line):
            sections[current].append(re.split(r"\s+:(?:\s|$)", line, maxsplit=1)[0].strip())
    return sections


def _numpydoc_sections(doc):
    from numpydoc.docscrape import NumpyDocString

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unknown or malformed section is a failure
        parsed = NumpyDocString(doc)
    keys = ("Parameters", "Other Parameters", "Returns", "Yields", "Attributes", "Raises")
    return {key: [p.name or p.type for p in parsed[key]] for key in keys if parsed[key]}


def _sections(doc):
    try:
        return _numpydoc_sections(doc)
    except ImportError:
        return _simple_sections(doc)


def _documented(entries):
    names = set()
    for entry in entries:
        names.update(part.strip().lstrip("*") for part in entry.split(","))
    return names


def _signature_parameters(obj):
    """Argument names that a docstring must describe (``self``/``cls`` and ``*``-markers out)."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return []
    return [p.name for p in signature.parameters.values() if p.name not in ("self", "cls")]


def _returns_a_value(func):
    """Whether the body of ``func`` (nested functions aside) returns or yields a value."""
    try:
        source = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):  # pragma: no cover
        return False
    tree = ast.parse(source).body[0]

    def walk(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                continue
            if isinstance(child, (ast.Yield, ast.YieldFrom)):
                return True
            if isinstance(child, ast.Return) and child.value is not None:
                if not (isinstance(child.value, ast.Constant) and child.value.value is None):
                    return True
            if walk(child):
                return True
        return False

    return walk(tree)


def _numpydoc_problems(obj):
    """What is missing from the numpydoc docstring of a function, method or class."""
    doc = inspect.getdoc(obj)
    if not doc or not doc.strip():
        return ["no docstring"]
    sections = _sections(doc)
    problems = []
    if inspect.isclass(obj):
        params = _signature_parameters(obj)
        documented = _documented(sections.get("Parameters", []) + sections.get("Attributes", []))
        where = "Parameters or Attributes"
    else:
        params = _signature_parameters(obj)
        documented = _documented(sections.get("Parameters", []) + sections.get("Other Parameters", []))
        where = "Parameters"
        if _returns_a_value(obj) and not (sections.get("Returns") or sections.get("Yields")):
            problems.append("returns a value but has no 'Returns' section")
    missing = [p for p in params if p not in documented]
    if missing:
        problems.append(f"arguments {missing} are not described in a '{where}' section")
    if not inspect.isclass(obj):
        stale = sorted(documented - set(params))
        if stale:
            problems.append(f"'Parameters' describes {stale}, which the signature does not have")
    return problems


# ---------------------------------------------------------------------------------------------
# what docs/api.rst documents


def _api_page_entries(text):
    """Qualified names given an autodoc directive (or a ``:members:`` entry) on the page."""
    entries, current, last = set(), "nica", None
    directive = re.compile(r"\.\. (currentmodule|automodule|auto\w+)::\s*(\S+)")
    for raw in text.splitlines():
        line = raw.strip()
        match = directive.match(line)
        if match:
            kind, target = match.groups()
            if kind in ("currentmodule", "automodule"):
                current = target
                if kind == "automodule":
                    entries.add(target)
                continue
            last = target if target.startswith("nica.") else f"{current}.{target}"
            entries.add(last)
        elif line.startswith(":members:") and last is not None:
            members = line[len(":members:") :].split(",")
            entries.update(f"{last}.{m.strip()}" for m in members if m.strip())
    return entries


API_ENTRIES = _api_page_entries(API_PAGE.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# the tests


def test_public_modules_are_exported_or_documented_elsewhere():
    modules = {f"nica.{m.name}" for m in pkgutil.iter_modules(nica.__path__) if not m.name.startswith("_")}
    exported = {name for name, obj in PUBLIC.items() if inspect.ismodule(obj)}
    assert modules - exported - set(DOCUMENTED_ELSEWHERE) == set(), (
        "public modules must be listed in nica.__all__ (and so on docs/api.rst) or documented on a page of their own"
    )


def test_the_checks_see_the_whole_api():
    assert {"nica.NonlinearICA", "nica.relative_gradient", "nica.metrics.mean_corr_coef"} <= set(PUBLIC)
    assert {"nica.NonlinearICA.fit", "nica.ConditionalNonlinearICA.transform"} <= set(ESTIMATOR_METHODS)
    assert "nica.activations.SmoothLeakyReLU.fn" not in METHODS  # documented on Activation


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_name_has_a_numpydoc_docstring(name):
    obj = PUBLIC[name]
    if inspect.ismodule(obj):
        assert (obj.__doc__ or "").strip(), f"module {name} has no docstring"
        return
    problems = _numpydoc_problems(obj)
    assert not problems, f"{name}: " + "; ".join(problems)


@pytest.mark.parametrize("name", sorted(ESTIMATOR_METHODS))
def test_estimator_method_has_a_numpydoc_docstring(name):
    problems = _numpydoc_problems(ESTIMATOR_METHODS[name])
    assert not problems, f"{name}: " + "; ".join(problems)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_public_method_has_a_docstring(name):
    assert (inspect.getdoc(METHODS[name]) or "").strip(), f"{name} has no docstring"


@pytest.mark.parametrize("name", sorted({**PUBLIC, **METHODS}))
def test_public_name_is_on_the_api_page(name):
    assert name in API_ENTRIES, (
        f"{name} is public but docs/api.rst has no autodoc entry for it (add an "
        "autofunction/autoclass directive, or the method to its class's :members:)"
    )


def test_api_page_documents_nothing_that_is_not_public():
    known = set(PUBLIC) | set(METHODS) | {"nica"}
    # scikit-learn's own fit_transform is listed beside the estimators' methods
    known |= {f"{name}.fit_transform" for name, cls in PUBLIC_CLASSES.items() if issubclass(cls, BaseEstimator)}
    assert API_ENTRIES - known == set(), "docs/api.rst documents names that are not public"


def test_simple_parser_agrees_with_numpydoc():
    pytest.importorskip("numpydoc")
    for name, obj in {**PUBLIC, **METHODS}.items():
        doc = inspect.getdoc(obj)
        if not doc or inspect.ismodule(obj):
            continue
        numpydoc_view = {
            k: _documented(v) for k, v in _numpydoc_sections(doc).items() if k in ("Parameters", "Attributes")
        }
        simple_view = {k: _documented(v) for k, v in _simple_sections(doc).items() if k in ("Parameters", "Attributes")}
        assert simple_view == numpydoc_view, name


def test_every_cli_command_is_on_the_cli_page():
    from nica.cli import build_parser

    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    page = CLI_PAGE.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\.\. nica-cli-help::[ \t]*(\S+)[ \t]*$", page, flags=re.MULTILINE))
    assert set(subparsers.choices) == documented
    assert ".. autofunction:: nica.cli.main" in page


def test_every_example_is_a_gallery_script():
    """Each script of examples/ makes a sphinx-gallery page: a titled docstring, how to run it."""
    assert (ROOT / "examples" / "GALLERY_HEADER.rst").is_file(), "the gallery needs its header"
    for script in sorted((ROOT / "examples").glob("*.py")):
        doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8")), clean=False) or ""
        lines = doc.splitlines()
        assert len(lines) > 2 and lines[0].strip(), f"examples/{script.name} needs a module docstring"
        assert re.fullmatch(r"=+", lines[1]) and len(lines[1]) >= len(lines[0]), (
            f"examples/{script.name}: the docstring's first line is the gallery page's title and "
            "must be underlined with '=' (at least as long as the title)"
        )
        assert f"python examples/{script.name}" in doc, f"examples/{script.name}: say how to run it"
        assert "--quick" in doc, f"examples/{script.name}: the docs build runs it with --quick"


def test_committed_example_figures_are_used():
    """Only figures the gallery cannot make at build time are committed under images/examples/."""
    docs_text = "\n".join(
        path.read_text(encoding="utf-8") for path in [*(ROOT / "examples").glob("*.py"), *DOCS.glob("*.rst")]
    )
    for figure in sorted((DOCS / "images" / "examples").glob("*.png")):
        assert f"images/examples/{figure.name}" in docs_text, (
            f"docs/images/examples/{figure.name} is shown nowhere: the gallery makes the examples' "
            "figures when the docs are built"
        )


def test_software_citation_has_the_current_version():
    assert f"version = {{{nica.__version__}}}" in CITING_PAGE.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# the built site, as a reader opens it

PAGES = (
    "index",
    "getting_started",
    "user_guide",
    "theory",
    "auto_examples/index",
    "api",
    "cli",
    "benchmarks",
    "scaling",
    "citing",
)
EXAMPLE_SCRIPTS = sorted(path.stem for path in (ROOT / "examples").glob("*.py"))
# pages with maths: reST :math: and math directives, and MyST $...$ (scaling.md)
MATH_PAGES = ("index", "user_guide", "theory", "scaling")
CHROMIUM = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
RENDER_TIMEOUT_S = 120
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session")
def built_docs(tmp_path_factory):
    """The HTML site, built once per test session with ``sphinx-build -W``.

    The build runs every example with its ``--quick`` settings (sphinx-gallery); an example that
    did not change since the last build in this checkout is not run again.
    """
    for module in ("sphinx", "numpydoc", "myst_parser", "sphinx_gallery", "pydata_sphinx_theme"):
        pytest.importorskip(module, reason="the docs extra is not installed (pip install -e '.[docs]')")
    if importlib.util.find_spec("sphinx-mathjax-offline") is None:
        pytest.skip("sphinx-mathjax-offline is not installed (pip install -e '.[docs]')")
    tmp = tmp_path_factory.mktemp("docs")
    out = tmp / "html"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    env.pop("NICA_GALLERY_ARGS", None)  # the examples' --quick settings, whatever the shell says
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-d",
            str(tmp / "doctrees"),
            str(DOCS),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        cwd=ROOT,
        env=env,
    )
    if result.returncode != 0:
        pytest.fail(f"sphinx-build -W failed:\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}")
    return out


@pytest.mark.slow
def test_docs_build_without_warnings(built_docs):
    api_html = (built_docs / "api.html").read_text(encoding="utf-8")
    anchors = set(re.findall(r'id="([\w.]+)"', api_html))
    anchors |= {a[len("module-") :] for a in re.findall(r'id="(module-[\w.]+)"', api_html)}
    missing = sorted((set(PUBLIC) | set(METHODS)) - anchors)
    assert not missing, f"the built API page has no entry for {missing}"
    for page in PAGES:
        assert (built_docs / f"{page}.html").is_file(), f"{page}.html was not built"


class _Loads(HTMLParser):
    """The URLs a page makes the browser load: scripts, stylesheets, icons, images, frames."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        rel = set((attrs.get("rel") or "").split())
        if tag in ("script", "img", "iframe", "source") and attrs.get("src"):
            self.urls.append(attrs["src"])
        elif tag == "link" and attrs.get("href") and rel & {"stylesheet", "preload", "icon", "modulepreload"}:
            self.urls.append(attrs["href"])


@pytest.mark.slow
def test_pages_load_nothing_from_the_network(built_docs):
    """Every script, stylesheet and image of every page ships with the site (MathJax included)."""
    for page in sorted(built_docs.rglob("*.html")):
        if "_static" in page.relative_to(built_docs).parts:  # the theme's templates, not pages
            continue
        parser = _Loads()
        parser.feed(page.read_text(encoding="utf-8"))
        name = page.relative_to(built_docs)
        for url in parser.urls:
            parts = urlsplit(url)
            assert not (parts.scheme or parts.netloc), f"{name} loads {url} from the network"
            if parts.path:
                assert (page.parent / unquote(parts.path)).is_file(), f"{name}: {url} is missing"
    html = (built_docs / "user_guide.html").read_text(encoding="utf-8")
    assert re.search(r'<script[^>]*src="_static/mathjax/tex-chtml\.js"', html), (
        "MathJax is not loaded from the site itself"
    )
    assert any((built_docs / "_static" / "mathjax" / "output").rglob("*.woff")), "no MathJax fonts"


def _example_figures(name):
    """The PNGs an example says it writes (``name.png`` in its docstring)."""
    source = (ROOT / "examples" / f"{name}.py").read_text(encoding="utf-8")
    doc = ast.get_docstring(ast.parse(source))
    return set(re.findall(r"``([\w.-]+\.png)``", doc or ""))


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLE_SCRIPTS)
def test_gallery_page_shows_output_and_figures(built_docs, name):
    page = built_docs / "auto_examples" / f"{name}.html"
    html = page.read_text(encoding="utf-8")
    images = re.findall(r'<img\b[^>]*\bsrc="([^"]+\.png)"', html)
    made = [src for src in images if f"sphx_glr_{name}_" in src]
    committed = [src for src in images if f"/{name}.png" in src]  # a figure the build cannot make
    ran = name != "real_signals" or importlib.util.find_spec("aeon") is not None
    if ran:
        assert len(made) == len(_example_figures(name)), (
            f"{name}: the page shows {len(made)} of the figures {sorted(_example_figures(name))}"
        )
    assert made or committed, f"the gallery page of {name} shows no figure"
    for src in made + committed:
        assert (page.parent / src).read_bytes()[:8] == PNG_MAGIC, f"{name}: {src} is not a PNG"
    assert 'class="sphx-glr-script-out' in html, f"the page of {name} shows no printed output"
    assert f"{name}.py" in html and f"{name}.ipynb" in html, f"{name}: no downloads"

    index = (built_docs / "auto_examples" / "index.html").read_text(encoding="utf-8")
    assert f'href="{name}.html' in index, f"the gallery has no entry for {name}"
    thumb = re.search(rf'<img\b[^>]*\bsrc="([^"]*sphx_glr_{name}_thumb\.png)"', index)
    assert thumb, f"the gallery has no thumbnail for {name}"
    assert (built_docs / "auto_examples" / thumb[1]).is_file(), f"{name}: {thumb[1]} is missing"


@pytest.mark.slow
def test_api_page_links_to_the_examples_that_use_a_name(built_docs):
    html = (built_docs / "api.html").read_text(encoding="utf-8")

    def entry(name, following):
        return html[html.index(f'id="{name}"') : html.index(f'id="{following}"')]

    linear = entry("nica.NonlinearICA", "nica.ConditionalNonlinearICA")
    assert "Examples using" in linear and 'href="auto_examples/linear_ica.html' in linear
    mcc = entry("nica.metrics.mean_corr_coef", "nica.metrics.amari_distance")
    assert 'href="auto_examples/identifiability_walkthrough.html' in mcc
    # a name that no example uses gets no (empty) mini-gallery
    assert "Examples using" not in entry("nica.init_params", "nica.forward")


# ---------------------------------------------------------------------------------------------
# the built site in headless Chromium (Debian's chromium package), offline


def _dump_dom(chromium, page, profile):
    """Chromium's run on ``page``: headless, every host name unresolvable, scripts run."""
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-extensions",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=30000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=RENDER_TIMEOUT_S,
    )


@pytest.fixture(scope="session")
def chromium(tmp_path_factory):
    """Headless Chromium, or a skip that says why the pages are not opened in a browser."""
    path = next((found for name in CHROMIUM if (found := shutil.which(name))), None)
    if path is None:
        pytest.skip(
            "headless Chromium is not installed, so the pages are not opened as a "
            "reader would (Debian: apt-get install chromium; .ci/run installs it when "
            "run as root)"
        )
    tmp = tmp_path_factory.mktemp("chromium")
    (tmp / "smoke.html").write_text("<html><body><p id='ok'>ok</p></body></html>", encoding="utf-8")
    result = _dump_dom(path, tmp / "smoke.html", tmp / "profile")
    if 'id="ok"' not in result.stdout:
        pytest.skip(
            f"{path} does not run headless here, so the pages are not opened in a browser:\n{result.stderr[-1500:]}"
        )
    return path


def rendered_dom(chromium, page, profile):
    """The DOM of ``page`` after its scripts ran (MathJax included), with no network at all."""
    result = _dump_dom(chromium, page, profile)
    assert result.returncode == 0 and "</html>" in result.stdout, (
        f"chromium could not open {page}:\n{result.stderr[-3000:]}"
    )
    return result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("page", MATH_PAGES)
def test_maths_is_typeset_in_chromium(chromium, built_docs, tmp_path, page):
    dom = rendered_dom(chromium, built_docs / f"{page}.html", tmp_path / "profile")
    # what is left of each formula's TeX once MathJax has replaced it by its output
    formulas = re.findall(r'<(?:span|div)\b[^>]*\bclass="math notranslate nohighlight[^"]*"[^>]*>([^<]*)', dom)
    assert formulas, f"{page}.html has no maths"
    raw = [text.strip() for text in formulas if text.strip()]
    assert not raw, f"{len(raw)} of {len(formulas)} formulas on {page}.html are raw TeX, e.g. {raw[:3]}"
    assert dom.count("<mjx-container") >= len(formulas), f"{page}.html: formulas not typeset"
    assert "<mjx-merror" not in dom, f"{page}.html: MathJax could not typeset a formula"


@pytest.mark.slow
def test_gallery_shows_its_thumbnails_in_chromium(chromium, built_docs, tmp_path):
    dom = rendered_dom(chromium, built_docs / "auto_examples" / "index.html", tmp_path / "profile")
    for name in EXAMPLE_SCRIPTS:
        assert re.search(rf'<img\b[^>]*\bsrc="[^"]*sphx_glr_{name}_thumb\.png"', dom), (
            f"the gallery shows no thumbnail for {name}"
        )
