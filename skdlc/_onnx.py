"""ONNX export of DLC's masked variants, and scoring with ONNX Runtime.

Modules by concern: :mod:`skdlc._onnx_runtime` (runtime setup), :mod:`skdlc._onnx_export`
(export and its disk cache), :mod:`skdlc._onnx_graphs` (masked variants of one exported
graph), :mod:`skdlc._onnx_engine` (the engine); this module writes and reads export
folders (:class:`OnnxDLCModel`).

This plugs in *beside* the torch path: :class:`OnnxEngine` implements the same
``features(batches, ratios)`` protocol as :class:`~skdlc._engine.TorchEngine`, over the
same :class:`~skdlc._data.Batches`, so :class:`~skdlc.DLCScorer` computes prototypes and
losses exactly as it does with torch (``engine="onnxruntime"``).

How the masked variants are made
--------------------------------
The backbone is exported **once** (torch's TorchScript-based exporter, ``dynamo=False``:
several times faster to export than the default exporter, and it keeps every weight as
an initializer named like its parameter). Each masked variant is then that graph with
its weight initializers masked: the masks come from :func:`skdlc._masking.compute_masks`
on the torch parameters, so they are the torch path's masks bit for bit. No variant is
traced again. (If some weight cannot be found as an initializer, e.g. a custom exporter
folded it, the variant is exported from the masked torch module instead: slower, same
result.)

Export folder (``DLCScorer.export_onnx`` / ``skdlc export-onnx``)
-----------------------------------------------------------------
One ONNX file per masked variant (a dynamic batch axis, input ``"input"``, output
``"features"`` of shape (batch, D)), ``prototypes.npy`` and ``manifest.json`` with the
ratios, preprocessing, class labels, logits, checksums and the backbone fingerprint.
:class:`OnnxDLCModel` scores from such a folder with no torch model at hand. One file per
ratio rather than one graph holding all T variants: measured on EfficientNet-Lite0
(benchmarks/results/speed.md) T sessions run as fast as the merged graph or faster,
load faster, and a file per ratio lets a reader load only the variants it needs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator

from ._backbones._base import Backbone, Preprocessing
from ._data import decodes_files, make_batches
from ._engine import default_num_workers
from ._outputs import dumps_json
from ._losses import LOGITS
from ._onnx_engine import OnnxEngine, _FolderVariants
from ._onnx_export import _export  # noqa: F401  (benchmarks time it from here)
from ._onnx_graphs import _GRAPHS, _MaskedGraphs, _graphs_for  # noqa: F401  (likewise)
from ._onnx_runtime import (  # noqa: F401  (re-exported: the runtime's names, as before)
    FORMAT, FORMAT_VERSION, INPUT_NAME, INSTALL_HINT, MANIFEST, OPSET, OUTPUT_NAME, PROTOTYPES,
    _import_onnx, _import_ort, _providers, _sha256, session_options,
)

__all__ = [
    "OnnxEngine",
    "OnnxDLCModel",
    "export_scorer",
    "session_options",
    "INSTALL_HINT",
]


# ----------------------------------------------------------------------------- folder
def _example_input(backbone: Backbone, X: Any, n_features_in: int | None) -> torch.Tensor:
    """A 2-sample input to trace the graph with."""
    if X is not None:
        from ._data import n_samples

        k = min(2, n_samples(X))
        part = X[:k] if not isinstance(X, torch.utils.data.Dataset) else [X[i] for i in range(k)]
        x = make_batches(part, backbone, 2).make(0, k)
        if isinstance(x, dict):
            raise NotImplementedError("ONNX export of text backbones is not supported")
        return x
    pp = backbone.preprocessing
    if pp is not None:
        return torch.zeros((2, 3, *pp.input_size), dtype=torch.float32)
    if n_features_in is not None:
        return torch.zeros((2, int(n_features_in)), dtype=torch.float32)
    raise ValueError(
        f"backbone {backbone.name!r} has no image preprocessing, so its input shape is "
        "unknown: pass a few samples, export_onnx(path, X=X[:2])"
    )


def _json_value(v):
    return v.item() if isinstance(v, np.generic) else v


def export_scorer(scorer, path: str | os.PathLike, X: Any = None) -> Path:
    """Write a fitted :class:`~skdlc.DLCScorer`'s masked variants and manifest to ``path``.

    See :meth:`skdlc.DLCScorer.export_onnx`.
    """
    from . import __version__
    from ._cache import fingerprint_module

    onnx, _ = _import_onnx()
    bb: Backbone = scorer.backbone_
    if bb.collate is not None:
        raise NotImplementedError(
            f"ONNX export of text backbones ({bb.name!r}) is not supported"
        )
    example = _example_input(bb, X, getattr(scorer, "n_features_in_", None))
    param = next(iter(bb.module.parameters()), None)
    if param is not None:
        example = example.to(param.device)
    was_training = bb.module.training
    bb.module.eval()
    try:
        graphs = _graphs_for(bb, scorer.masking, example)
        ratios = [float(r) for r in scorer.mask_ratios_]
        run = list(ratios)
        if scorer.embedding and 0.0 not in run:
            run = [0.0] + run  # the embedding comes from the unmasked model
        out = Path(os.fspath(path))
        _check_target(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        try:
            variants = []
            for i, r in enumerate(run):
                fname = f"variant-{i:02d}-r{r:.4f}.onnx"
                (tmp / fname).write_bytes(graphs.variant(r))
                onnx.checker.check_model(os.fspath(tmp / fname))
                variants.append(
                    {"ratio": r, "file": fname, "on_path": r in ratios, "sha256": _sha256(tmp / fname)}
                )
            protos = np.asarray(scorer.prototypes_)
            np.save(tmp / PROTOTYPES, protos, allow_pickle=False)
            classes = np.asarray(scorer.classes_)
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "skdlc_version": __version__,
                "torch_version": torch.__version__,
                "onnx_opset": int(next((o.version for o in graphs.base.opset_import if o.domain in ("", "ai.onnx")), OPSET)),
                "backbone": {
                    "name": bb.name,
                    "fingerprint": fingerprint_module(bb.module),
                    "num_features": int(protos.shape[2]),
                },
                "masking": scorer.masking,
                "mask_ratios": ratios,
                "variants": variants,
                "input": {"name": INPUT_NAME, "shape": [None, *map(int, example.shape[1:])], "dtype": "float32"},
                "output": {"name": OUTPUT_NAME, "shape": [None, int(protos.shape[2])], "dtype": "float32"},
                "preprocessing": None if bb.preprocessing is None else bb.preprocessing.to_dict(),
                "prototypes": {
                    "file": PROTOTYPES,
                    "shape": list(protos.shape),
                    "dtype": protos.dtype.str,
                    "sha256": _sha256(tmp / PROTOTYPES),
                    "mode": scorer.prototypes,
                },
                "classes": [_json_value(c) for c in classes.tolist()],
                "classes_dtype": classes.dtype.str,
                "class_names": [str(c) for c in classes.tolist()],
                "logits": scorer.logits,
                "temperature": float(scorer.temperature),
                "embedding": bool(scorer.embedding),
            }
            with open(tmp / MANIFEST, "w", encoding="utf-8") as f:
                f.write(dumps_json(manifest, indent=2) + "\n")  # strict JSON: no NaN
            _replace_dir(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        bb.module.train(was_training)
    return out


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise FileExistsError(
            f"{out} is a non-empty folder that is not an skdlc ONNX export; "
            "choose a new or empty folder (an earlier export is replaced)"
        )


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished export into place; an earlier export there is replaced whole."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class _ExportedInput:
    """What :func:`~skdlc._data.make_batches` needs of a backbone, from a manifest."""

    name: str
    preprocessing: Preprocessing | None
    collate: None = None


class OnnxDLCModel(BaseEstimator):
    """DLC scores from an ONNX export folder: ONNX Runtime only, no torch backbone.

    Reads what :meth:`skdlc.DLCScorer.export_onnx` (or ``skdlc export-onnx``) wrote:
    the masked variants, the class prototypes and the preprocessing, and computes the
    same ``transform`` / ``score_samples`` as the fitted scorer did.

    The constructor stores its parameters only (scikit-learn's contract, so
    ``get_params`` and :func:`sklearn.base.clone` work); :meth:`fit` reads the folder
    (its ``X`` and ``y`` are ignored), and so does the first ``transform`` /
    ``score_samples`` or fitted attribute read. :meth:`load` returns a model already
    read, so a broken export fails there.

    Parameters
    ----------
    folder : str or path
        The export folder (holds ``manifest.json``).
    device : str, default="auto"
        "cpu", "cuda[:i]", or "auto" (CUDA when ``onnxruntime-gpu`` offers it).
    batch_size : int, default=64
    num_workers : int or None, default=None
        Processes decoding images; None: up to 4 (files, image arrays to resize), none
        for arrays taken as they are.
    threads : int or None, default=None
        Intra-op threads per session; None: one per usable core.
    verify : bool, default=True
        Check every file against the manifest's SHA-256 before loading it.
    verbose : bool, default=True
        Progress bars (as :class:`~skdlc.DLCScorer`).

    Attributes
    ----------
    manifest_ : dict
    mask_ratios_ : tuple of float
    classes_ : ndarray of shape (n_classes,)
    prototypes_ : ndarray of shape (n_ratios, n_classes, n_features)
    preprocessing_ : Preprocessing or None
    logits_, temperature_, embedding_ : as in the scorer that was exported (also
        readable as ``logits``, ``temperature``, ``embedding``)

    Examples
    --------
    >>> model = OnnxDLCModel.load("dlc_export")        # doctest: +SKIP
    >>> scores = model.score_samples(images, labels)   # doctest: +SKIP
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        device: str = "auto",
        batch_size: int = 64,
        num_workers: int | None = None,
        threads: int | None = None,
        verify: bool = True,
        verbose: bool = True,
    ):
        # Parameters only (scikit-learn's contract): the folder is read by fit, load, or
        # the first transform / score_samples.
        self.folder = folder
        self.device = device
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.threads = threads
        self.verify = verify
        self.verbose = verbose

    @classmethod
    def load(cls, folder: str | os.PathLike, **kwargs) -> "OnnxDLCModel":
        """Open an export folder, ready to score; keyword arguments as for the class."""
        return cls(folder, **kwargs).fit()

    def fit(self, X=None, y=None) -> "OnnxDLCModel":
        """Read the export folder (the manifest, prototypes and variant files).

        Nothing is learnt: the folder holds the fitted scorer. ``X`` and ``y`` are
        ignored (accepted so the model fits in a scikit-learn pipeline).

        Returns
        -------
        self
        """
        folder = Path(os.fspath(self.folder))
        m = _read_manifest(folder)
        if self.verify:
            _verify(folder, m)
        logits = m["logits"]
        if logits not in LOGITS:
            raise ValueError(f"{folder}: unknown logits {logits!r} in the manifest")
        _providers(self.device)  # fail now, not at the first transform, on a bad device
        self.__dict__.pop("_engines", None)  # sessions of an earlier fit
        self.mask_ratios_ = tuple(float(r) for r in m["mask_ratios"])
        self.classes_ = np.asarray(m["classes"], dtype=np.dtype(m["classes_dtype"]))
        self.prototypes_ = np.load(folder / m["prototypes"]["file"], allow_pickle=False)
        pp = m.get("preprocessing")
        self.preprocessing_ = None if pp is None else Preprocessing.from_dict(pp)
        self.logits_ = logits
        self.temperature_ = float(m["temperature"])
        self.embedding_ = bool(m["embedding"])
        self._input = _ExportedInput(m["backbone"]["name"], self.preprocessing_)
        self._variants = _FolderVariants(folder, m)
        self.manifest_ = m  # set last: its presence means fitted
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return "manifest_" in self.__dict__

    def _fitted(self) -> "OnnxDLCModel":
        """Self, read from its folder first if it has not been yet."""
        return self if "manifest_" in self.__dict__ else self.fit()

    def __getattr__(self, name: str):
        # A fitted attribute read before fit reads the folder (as transform does), so
        # ``OnnxDLCModel(folder).classes_`` works. Only once the parameters are set:
        # unpickling and copying look attributes up on an empty instance.
        if name in _FITTED and "folder" in self.__dict__:
            return getattr(self._fitted(), name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # The exported scorer's method settings, read-only (kept under their former names).
    logits = property(lambda self: self.logits_, doc="As ``logits_``.")
    temperature = property(lambda self: self.temperature_, doc="As ``temperature_``.")
    embedding = property(lambda self: self.embedding_, doc="As ``embedding_``.")

    def set_params(self, **params) -> "OnnxDLCModel":
        """Set constructor parameters; the folder is read again when the model is next used."""
        super().set_params(**params)
        for k in [*_FITTED, "_engines"]:
            self.__dict__.pop(k, None)
        return self

    def _engine(self, decodes: bool) -> OnnxEngine:
        """The engine for input of this kind, built once: its sessions live between calls."""
        engines = self.__dict__.setdefault("_engines", {})
        if decodes not in engines:
            busy = decodes or self.preprocessing_ is not None  # resizing arrays is work too
            workers = default_num_workers(busy) if self.num_workers is None else self.num_workers
            engines[decodes] = OnnxEngine(self._variants, device=self.device, num_workers=workers,
                                          threads=self.threads, verbose=self.verbose, retain=True)
        return engines[decodes]

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_engines", None)  # ONNX Runtime sessions do not pickle; rebuilt on demand
        return state

    def transform(self, X) -> np.ndarray:
        """Per-class learning complexities, as :meth:`skdlc.DLCScorer.transform`."""
        from . import _driver

        self._fitted()
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        plan = _driver.Plan(ratios=self.mask_ratios_, logits=self.logits_, temperature=self.temperature_,
                            embedding=self.embedding_)
        losses, emb = _driver.transform_input(
            plan, self._engine(decodes_files(X)), X, input_spec=self._input, batch_size=int(self.batch_size),
            ratios=self.mask_ratios_, prototypes=self.prototypes_, desc="DLC transform (onnx)")
        if not self.embedding_:
            return losses
        return np.hstack([emb.astype(np.float64), losses])

    def score_samples(self, X, y) -> np.ndarray:
        """DLC score of each labelled sample (higher = harder), as the scorer's."""
        from . import _driver

        self._fitted()
        _driver.class_index(self.classes_, y)  # unseen labels fail before any scoring
        return _driver.own_class(self.transform(X), self.classes_, y)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        names = [f"dlc_{c}" for c in self._fitted().classes_]
        if self.embedding_:
            names = [f"embedding{i}" for i in range(self.prototypes_.shape[2])] + names
        return np.asarray(names, dtype=object)

    def __repr__(self) -> str:
        if "manifest_" not in self.__dict__:  # a repr never reads files
            return f"OnnxDLCModel({os.fspath(self.folder)!r})"
        return (f"OnnxDLCModel({os.fspath(self.folder)!r}, backbone={self._input.name!r}, "
                f"mask_ratios={self.mask_ratios_}, n_classes={len(self.classes_)})")


# What OnnxDLCModel.fit sets (see its __getattr__).
_FITTED = frozenset({"manifest_", "mask_ratios_", "classes_", "prototypes_", "preprocessing_",
                     "logits_", "temperature_", "embedding_", "_input", "_variants"})


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not an skdlc ONNX export: no {MANIFEST}")
    with open(path, encoding="utf-8") as f:
        m = json.load(f)
    if m.get("format") != FORMAT:
        raise ValueError(f"{path} is not an skdlc ONNX export manifest")
    if int(m.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"{path} was written by a newer skdlc (format {m['format_version']}); "
            f"this one reads format {FORMAT_VERSION}: upgrade skdlc"
        )
    return m


def _verify(folder: Path, m: dict) -> None:
    items = [(v["file"], v["sha256"]) for v in m["variants"]]
    items.append((m["prototypes"]["file"], m["prototypes"]["sha256"]))
    for fname, digest in items:
        p = folder / fname
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing from the export")
        if _sha256(p) != digest:
            raise ValueError(f"{p} does not match the manifest's checksum (modified or corrupt)")
