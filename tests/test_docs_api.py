"""The site's API reference (docs/reference/*.rst) lists exactly the public names.

Every name in ``skdlc.__all__`` and in each public submodule's ``__all__`` has an entry,
no entry names something outside them, every public submodule has a page and no
private module is documented. Fast: reads the .rst sources, builds nothing.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import skdlc

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "docs" / "reference"
SITE_PAGES = sorted((REPO / "docs").glob("*.md")) + sorted((REPO / "docs" / "guide").glob("*.md"))
PUBLIC_SUBMODULES = sorted(m.name for m in pkgutil.iter_modules(skdlc.__path__)
                           if not m.name.startswith("_") and not m.ispkg)


def documented() -> dict[str, set[str]]:
    """Module -> names with an entry (autosummary item or ``py:data``) in the reference."""
    names: dict[str, set[str]] = {}
    for page in sorted(REFERENCE.glob("*.rst")):
        module = None
        in_autosummary = False
        for line in page.read_text(encoding="utf-8").splitlines():
            if m := re.match(r"\.\. (?:currentmodule|automodule):: (\S+)", line):
                module = m.group(1)
                names.setdefault(module, set())
                in_autosummary = False
            elif line.startswith(".. autosummary::"):
                in_autosummary = True
            elif m := re.match(r"\.\. py:data:: (\S+)", line):
                names[module].add(m.group(1))
                in_autosummary = False
            elif in_autosummary:
                if line and not line.startswith(" "):
                    in_autosummary = False
                elif (item := line.strip()) and not item.startswith(":"):
                    names[module].add(item)
    return names


def test_every_public_submodule_is_found():
    # The discovery itself works (guards against an empty parametrisation below).
    assert {"datasets", "tuning", "report", "baselines", "serving"} <= set(PUBLIC_SUBMODULES)


def test_documented_modules_are_the_public_ones():
    modules = set(documented())
    assert modules == {"skdlc"} | {f"skdlc.{m}" for m in PUBLIC_SUBMODULES}
    assert not [m for m in modules if any(part.startswith("_") for part in m.split("."))]


@pytest.mark.parametrize("modname", ["skdlc"] + [f"skdlc.{m}" for m in PUBLIC_SUBMODULES])
def test_reference_lists_exactly_all(modname):
    module = importlib.import_module(modname)
    listed = documented().get(modname, set())
    missing = sorted(set(module.__all__) - listed)
    extra = sorted(listed - set(module.__all__))
    assert missing == [], f"{modname}.__all__ names missing from docs/reference: {missing}"
    assert extra == [], f"docs/reference documents names not in {modname}.__all__: {extra}"


def test_submodule_pages_are_in_the_reference_toctree():
    index = (REFERENCE / "index.rst").read_text(encoding="utf-8")
    toctree = index.split(".. toctree::", 1)[1]
    for m in PUBLIC_SUBMODULES:
        assert re.search(rf"^\s+{m}$", toctree, flags=re.M), f"reference/{m}.rst is not in the toctree"
        assert (REFERENCE / f"{m}.rst").is_file()


@pytest.mark.parametrize("page", SITE_PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_site_pages_name_no_private_module(page):
    hits = [f"{page.name}:{i}: {line.strip()}"
            for i, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
            if re.search(r"\bskdlc\._", line)]
    assert hits == []


def test_gallery_examples_are_plot_scripts():
    # sphinx-gallery runs files matching plot_*.py; anything else in examples/ would be
    # shown without having run.
    scripts = sorted(p.name for p in (REPO / "examples").glob("*.py"))
    assert scripts and all(s.startswith("plot_") for s in scripts), scripts
