"""Docstrings of public constants that a public submodule re-exports from a private one.

A constant's description is a ``#:`` comment where it is defined (``skdlc._image_data``),
but the reference documents it where users import it (``skdlc.datasets``), and autodoc
reads ``#:`` comments only from the module it documents. This finds the defining module
(the private skdlc module holding the same object under the same name) and uses its
comment; a constant without one gets its type and value only, never ``tuple``'s or
``str``'s docstring.
"""

from __future__ import annotations

import sys

from sphinx.pycode import ModuleAnalyzer


def _comment(name: str, obj) -> list[str] | None:
    attr = name.rpartition(".")[2]
    for modname, module in list(sys.modules.items()):
        if not modname.startswith("skdlc.") or getattr(module, attr, None) is not obj:
            continue
        try:
            docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
        except Exception:  # a module without source
            continue
        if ("", attr) in docs:
            return list(docs[("", attr)])
    return None


def _process(app, what, name, obj, options, lines):
    if what not in ("data", "attribute") or not name.startswith("skdlc."):
        return
    type_doc = (type(obj).__doc__ or "").strip().splitlines()
    if lines and [ln.strip() for ln in lines if ln.strip()][:1] != [ln.strip() for ln in type_doc][:1]:
        return  # the documented module has its own comment
    found = _comment(name, obj)
    lines[:] = found if found else []


def setup(app):
    app.connect("autodoc-process-docstring", _process)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
