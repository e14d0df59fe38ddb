"""Sphinx configuration of skdlc's documentation site.

Build (warnings are errors; every gallery example runs):

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Why these tools: Sphinx with the pydata theme, numpydoc, autosummary and sphinx-gallery is
what scikit-learn and imbalanced-learn (the libraries skdlc's estimators follow) build
their sites with, so the API reference reads like theirs and the docstrings, already in
numpydoc, need no conversion. numpydoc (rather than napoleon) renders the Parameters /
Attributes / Returns sections exactly as those sites do. sphinx-gallery runs every
``examples/plot_*.py`` during the build and keeps its figures, so an example that stops
working fails the build. myst-parser reads the Markdown pages in docs/ as they are (they
stay readable on GitHub), so no text is kept twice. MkDocs Material + mkdocstrings was the
alternative; its gallery plugins are less mature and it has no autosummary equivalent that
checks the documented names against ``__all__``.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # the checkout being documented, installed or not
sys.path.insert(0, str(DOCS))  # _ext helpers

import skdlc  # noqa: E402

from _ext.results import write_result_pages  # noqa: E402

project = "skdlc"
author = "skdlc developers"
copyright = "skdlc developers"
release = skdlc.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "_ext.apidata",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "_templates", "README.md", "**/README.md", "**.ipynb_checkpoints"]
html_static_path: list[str] = []

# ---------------------------------------------------------------- Markdown (myst)
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3  # links such as cli.md#resuming-a-killed-run resolve

# ---------------------------------------------------------------- API reference
autosummary_generate = True
autosummary_imported_members = True  # public names live in private modules
autodoc_default_options = {"members": True, "member-order": "bysource"}
# numpydoc's Parameters sections carry the types; signatures with private type paths
# (skdlc._backbones._base.Backbone) would name private modules.
autodoc_typehints = "none"
autodoc_inherit_docstrings = False  # sklearn's inherited docstrings point into its own site
numpydoc_show_class_members = False  # autodoc lists the members; numpydoc would list them twice
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# ---------------------------------------------------------------- gallery
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",  # every plot_*.py runs during the build
    "ignore_pattern": r"__init__\.py|_helpers\.py",
    "abort_on_example_error": False,  # report every failing example, then fail (-W)
    "only_warn_on_example_error": False,
    "remove_config_comments": True,
    "download_all_examples": False,
    "min_reported_time": 0,
    "show_memory": False,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "within_subsection_order": "FileNameSortKey",
    # "Examples using X" on every API page
    "backreferences_dir": "reference/generated/backreferences",
    "doc_module": ("skdlc",),
    "reference_url": {"skdlc": None},
}
# skdlc's own figure functions build figures without pyplot; the examples hand them to
# pyplot (plt.figure(fig)) so the gallery's scraper keeps them.
os.environ.setdefault("MPLBACKEND", "agg")
# Progress bars from the examples would clutter the gallery's captured output.
os.environ.setdefault("TQDM_DISABLE", "1")
warnings.filterwarnings("ignore", message="Matplotlib is currently using agg")

# ---------------------------------------------------------------- HTML
html_theme = "pydata_sphinx_theme"
html_title = f"skdlc {release}"
html_theme_options = {
    "navbar_end": ["navbar-icon-links"],
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
html_context = {"default_mode": "light"}
html_show_sourcelink = False

# Benchmark result pages: benchmarks/results/*.md are included into docs/results/*.md
# (generated, git-ignored) so their links to each other and to their figures resolve.
write_result_pages(ROOT / "benchmarks" / "results", DOCS / "results")

_RESULTS_LINK = re.compile(r"\]\(\.\./benchmarks/results/([\w.-]+)\.md(#[\w-]*)?\)")


def _results_links(app, docname, source):
    """Point docs/*.md links to ``../benchmarks/results/X.md`` at the site's copy.

    On GitHub those links reach the result files; in the site the same pages live at
    ``results/X``.
    """
    if "/" not in docname:
        source[0] = _RESULTS_LINK.sub(lambda m: f"](results/{m.group(1)}.md{m.group(2) or ''})", source[0])


def setup(app):
    app.connect("source-read", _results_links)
