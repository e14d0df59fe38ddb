"""The public surface: every name the user docs mention imports, and no user doc or
public docstring sends users to a private module (``skdlc._...``)."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from PIL import Image

from skdlc import Backbone, DLCScorer, Preprocessing

REPO = Path(__file__).resolve().parents[1]
USER_DOCS = sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md", REPO / "serving" / "README.md"]
PUBLIC_MODULES = ["skdlc", "skdlc.datasets", "skdlc.serving", "skdlc.tuning", "skdlc.baselines",
                  "skdlc.report"]

# Public names the docs use that skdlc/__init__.py does not export yet (that file belongs to
# another branch). Each is an expected failure until it is exported; strict, so the entry
# must be removed then.
NOT_YET_EXPORTED: dict[str, str] = {}
# Public objects whose docstrings still name a private module, in files of other branches.
DOCSTRINGS_TO_FIX: dict[str, str] = {}


def _doc_names() -> list[str]:
    """Dotted ``skdlc.<...>`` references and ``from skdlc... import a, b`` names in the docs."""
    names: set[str] = set()
    for doc in USER_DOCS:
        text = doc.read_text(encoding="utf-8")
        names.update(re.findall(r"\bskdlc(?:\.[A-Za-z_]\w*)+", text))
        imports = re.findall(r"from (skdlc(?:\.\w+)*) import \(([\w ,\n]+)\)", text)
        imports += re.findall(r"from (skdlc(?:\.\w+)*) import (\w[\w ,]*)", text)
        for module, imported in imports:
            names.update(f"{module}.{n.strip()}" for n in imported.split(",") if n.strip())
        names.update(re.findall(r"^\s*import (skdlc(?:\.\w+)*)", text, flags=re.M))
    return sorted(names)


def _resolve(dotted: str):
    """Import the longest module prefix of ``dotted``, then follow attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def _param(name: str, reasons: dict[str, str]):
    if name in reasons:
        return pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=reasons[name]))
    return name


DOC_NAMES = _doc_names()


def test_docs_mention_the_public_modules():
    # The scan itself works: these references are in the docs today.
    for name in ("skdlc.DLCScorer", "skdlc.datasets.PathManifest", "skdlc.datasets.load_text_classification",
                 "skdlc.serving.build_archive", "skdlc.serving.DLCHandler"):
        assert name in DOC_NAMES


@pytest.mark.parametrize("name", [_param(n, NOT_YET_EXPORTED) for n in DOC_NAMES])
def test_every_name_in_the_docs_imports(name):
    if name.startswith("skdlc.serving.DLCHandler"):
        pytest.importorskip("ts", reason="the handler subclasses TorchServe's BaseHandler")
    assert not any(p.startswith("_") for p in name.split(".")), f"{name} is private"
    _resolve(name)


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_user_doc_names_a_private_module(doc):
    hits = [f"{doc.name}:{i}: {line.strip()}"
            for i, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1)
            if re.search(r"\bskdlc\._", line)]
    assert hits == [], "docs must send users to public names:\n" + "\n".join(hits)


def _public_objects() -> list[str]:
    out = []
    for modname in PUBLIC_MODULES:
        module = importlib.import_module(modname)
        out.append(modname)
        out += [f"{modname}.{n}" for n in module.__all__ if n != "DLCHandler" and not n.startswith("__")]
    return out


@pytest.mark.parametrize("name", [_param(n, DOCSTRINGS_TO_FIX) for n in _public_objects()])
def test_public_docstrings_name_no_private_module(name):
    obj = _resolve(name)
    docs = [inspect.getdoc(obj) or ""]
    if inspect.isclass(obj):
        docs += [inspect.getdoc(v) or "" for k, v in vars(obj).items() if not k.startswith("_") and callable(v)]
    hits = sorted({h for d in docs for h in re.findall(r"skdlc\._[\w.]*", d)})
    assert hits == [], f"{name}'s docstrings name {hits}"


@pytest.mark.parametrize("modname", PUBLIC_MODULES)
def test_public_modules_export_what_all_lists(modname):
    module = importlib.import_module(modname)
    for name in module.__all__:
        if name == "DLCHandler":
            continue  # needs TorchServe; checked below
        assert getattr(module, name) is not None
        assert name in dir(module)


def test_importing_serving_and_datasets_stays_light():
    code = ("import sys, skdlc.serving, skdlc.datasets\n"
            "print(sorted(m for m in ('ts', 'model_archiver', 'onnxruntime', 'transformers', 'ray')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"')) == []


def test_serving_handler_loads_on_first_access():
    pytest.importorskip("ts", reason="torchserve is not installed (pip install 'skdlc[serve]')")
    code = ("import sys, skdlc.serving as s\n"
            "assert 'ts' not in sys.modules\n"
            "h = s.DLCHandler\n"
            "from ts.torch_handler.base_handler import BaseHandler\n"
            "assert issubclass(h, BaseHandler) and 'ts' in sys.modules\n"
            "print(h.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "DLCHandler"


# ------------------------------------------------------------------ behaviour of the new homes
def _image_backbone(tiny_cnn) -> Backbone:
    return Backbone("tiny", tiny_cnn, preprocessing=Preprocessing(input_size=(12, 12)), num_features=16)


def _write_pngs(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i:02d}.png"
        Image.fromarray((rng.random((12, 12, 3)) * 255).astype(np.uint8)).save(p)
        paths.append(p)
    return paths


def test_datasets_path_manifest_scores_like_a_list_of_paths(tiny_cnn, tmp_path):
    """The docs/distributed.md example: X = PathManifest(...); y = X.labels()."""
    from skdlc.datasets import PathManifest

    paths = _write_pngs(tmp_path / "imgs", 12)
    labels = ["cat", "dog", "owl"] * 4
    (tmp_path / "train.tsv").write_text("".join(f"imgs/{p.name}\t{c}\n" for p, c in zip(paths, labels)))
    X = PathManifest(tmp_path / "train.tsv")
    y = X.labels()
    assert len(X) == 12 and y.tolist() == labels and X[5] == str(paths[5])
    kw = dict(mask_ratios=[0.0, 0.3], device="cpu", engine="torch", verbose=False)
    got = DLCScorer(_image_backbone(tiny_cnn), **kw).fit(X, y).score_samples(X, y)
    ref = DLCScorer(_image_backbone(tiny_cnn), **kw).fit([str(p) for p in paths], labels)
    np.testing.assert_allclose(got, ref.score_samples([str(p) for p in paths], labels), rtol=1e-6, atol=1e-7)


def test_serving_write_metadata_describes_the_scorer(tiny_cnn, blob_images, tmp_path):
    from skdlc.serving import META_FILE, ServeError, write_metadata

    X, y = blob_images
    names = np.array(["a", "b", "c"])[y]
    scorer = DLCScorer(_image_backbone(tiny_cnn), mask_ratios=[0.0, 0.2, 0.4], device="cpu", engine="torch",
                       verbose=False).fit(X, names)
    joblib.dump(scorer, tmp_path / "scorer.joblib")
    path = write_metadata(tmp_path / "scorer.joblib", tmp_path / "out")
    assert path == tmp_path / "out" / META_FILE
    meta = json.loads(path.read_text())
    assert meta["engine"] == "torch" and meta["artifact"] == "scorer.joblib"
    assert meta["classes"] == ["a", "b", "c"]
    assert meta["mask_ratios"] == [0.0, 0.2, 0.4]
    assert meta["prototypes_shape"] == list(scorer.prototypes_.shape) == [3, 3, 16]
    assert meta["preprocessing"]["input_size"] == [12, 12]

    joblib.dump({"not": "a scorer"}, tmp_path / "dict.joblib")
    with pytest.raises(ServeError, match="not a skdlc.DLCScorer"):
        write_metadata(tmp_path / "dict.joblib", tmp_path)
    with pytest.raises(ServeError, match="no such scorer"):
        write_metadata(tmp_path / "missing.joblib", tmp_path)
    with pytest.raises(ServeError, match="is a folder"):
        write_metadata(tmp_path / "out", tmp_path)
    with pytest.raises(ServeError, match="needs an ONNX export folder"):
        write_metadata(tmp_path / "scorer.joblib", tmp_path, engine="onnx")
    with pytest.raises(ServeError, match="engine must be"):
        write_metadata(tmp_path / "scorer.joblib", tmp_path, engine="tensorrt")
