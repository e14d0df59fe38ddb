"""DLCScorer: training-free learning-complexity scores, as an sklearn transformer."""

from __future__ import annotations

import copy
import dataclasses
import os
import warnings
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from scipy import sparse
from scipy.stats import spearmanr
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d, validate_data
from torch import nn

from . import _cache, _chunks
from ._backbones import create_backbone
from ._backbones._base import Backbone
from ._data import check_finite, decodes_files, make_batches, n_samples
from ._engine import TorchEngine, default_num_workers, resolve_device
from ._losses import LOGITS, per_class_losses
from ._masking import MASKING_MODES
from ._prototypes import class_means
from ._ratios import PAPER_GRID, auto_ratio_order, resolve_mask_ratios
from ._validation import check_class_labels

__all__ = ["DLCScorer"]

_CACHE_VERSION = "dlc-1"  # bump when scoring changes, so old cache entries are never read


def _call(tag: str, key: str, compute):  # the function joblib caches; only tag/key hashed
    return compute()


class DLCScorer(TransformerMixin, BaseEstimator):
    """Distorting-based Learning Complexity (DLC) of every sample, without training.

    ``fit`` masks the pre-trained backbone's weights at several ratios (smallest
    magnitude first), and for each masked model computes class prototypes (mean feature
    per class). ``transform`` gives each sample's cross-entropy against every class
    under each masked model, averaged over the masking path: low for easy samples,
    high for hard ones. Feed it to :class:`~skdlc.FlexRandSampler` to keep a subset.

    Parameters
    ----------
    backbone : str, torch.nn.Module or Backbone, default="efficientnet_lite0"
        A registered name (``"efficientnet_lite0"``, the offline default, ImageNet
        pre-trained; ``"efficientnet_lite2"``, ``"squeezenet1_1"``), a timm or
        torchvision model name (needs their weights: a network or a local cache), or a
        module mapping a float batch (N, C, H, W) (or (N, F)) to features.
    mask_ratios : int, sequence of float or "auto", default=5
        The learning path. An int ``n``: ``n`` ratios from the paper's grid
        {0, 0.02, ..., 0.98}, always including 0 (the unmasked model), the rest drawn
        with ``random_state``. A sequence: those ratios, each in [0, 1). ``"auto"``:
        grow the path in random grid order until the Spearman correlation between
        successive score estimates reaches ``auto_tol`` (at most ``max_ratios``).
    masking : {"layer", "global"}, default="layer"
        One magnitude threshold per weight tensor (the paper), or one over all weight
        tensors together (the official code).
    prototypes : {"masked", "unmasked"}, default="masked"
        Class means computed with each masked model (the paper), or with the full
        model only (the official code).
    logits : {"cosine", "inverse_distance", "neg_sq_distance"}, default="cosine"
        How a feature is compared with the prototypes: cosine similarity divided by
        ``temperature``; 1 / Euclidean distance (the official code); minus the squared
        Euclidean distance. See docs/defaults.md for the evidence behind the default.
    temperature : float, default=0.1
        Divides the cosine logits.
    embedding : bool, default=False
        Put the full (unmasked) model's embedding in front of the scores in the output
        of ``transform``, so that a classifier later in a pipeline can learn from it;
        :class:`~skdlc.FlexRandSampler` reads only the last ``n_classes`` columns.
    auto_tol : float, default=0.99
        Spearman correlation at which ``mask_ratios="auto"`` stops growing the path.
    max_ratios : int, default=10
        Longest path ``mask_ratios="auto"`` may grow.
    image_size : int or None, default=None
        Score at this square input size instead of the backbone's own (e.g. 128 for
        a faster, coarser pass on small images). None keeps the backbone's size.
    batch_size : int, default=64
    num_workers : int or None, default=None
        Processes decoding images while the model runs; None: up to 4 when batches
        need work (files, datasets, image arrays to resize and normalise), none for
        arrays the backbone takes as they are.
    keep_variants : bool or "auto", default="auto"
        Keep every masked variant's weights and run each decoded batch through all of
        them (data read once) instead of masking in place per variant (data read T
        times). "auto" keeps them when they fit a 2 GiB budget and reading the data
        costs work (decoding files, resizing and normalising images).
    device : str or torch.device, default="auto"
        "auto" uses CUDA when available, else the CPU.
    engine : {"torch", "onnxruntime"}, default="torch"
        What runs the masked variants. "onnxruntime" exports the backbone to ONNX once,
        masks the exported weights and runs every variant with ONNX Runtime
        (``pip install 'skdlc[onnx]'``, or ``'skdlc[onnx-gpu]'`` for CUDA): the same
        scores (within 1e-4), several times faster on the CPU. Image and array
        backbones only. See docs/onnx.md.
    precision : {"float32", "bfloat16", "float16"}, default="float32"
        Autocast dtype of the torch engine on CUDA: faster, scores change slightly.
        The CPU and ONNX Runtime always compute in float32.
    memory : str, path or joblib.Memory, default=None
        Cache for scores. Keys are content fingerprints of the backbone weights, the
        data and the parameters, so a second run, or every candidate of a grid search
        over the sampler, reads the cache instead of scoring again. With a cache
        folder, the local backend also stores each chunk's features there
        (``<memory>/joblib/skdlc_chunks``) and streams them back memory-mapped: memory
        stays flat as N grows, and a killed run resumes, computing only the missing
        chunks. See docs/distributed.md.
    chunk_size : int, default=4096
        Rows per resumable feature chunk when ``memory`` is a folder (rounded up to a
        multiple of ``batch_size``).
    backend : {"local", "ray"}, default="local"
        "ray" scores on Ray Data (``pip install 'skdlc[ray]'``): an actor pool maps the
        batches through the masked variants, per-class sums are reduced into the
        prototypes, then the losses are mapped; same scores as "local". Uses the Ray
        already initialised in this process, else ``ray.init(address=ray_address)``.
        ``device``, ``num_workers``, ``keep_variants``, ``engine`` and ``precision``
        apply to "local" only (Ray actors run torch in float32). See docs/distributed.md.
    ray_address : str or None, default=None
        Ray cluster to join when Ray is not initialised yet (e.g. "ray://head:10001"
        or "auto"); None starts a local Ray (or joins ``$RAY_ADDRESS``).
    num_gpus : float or None, default=None
        GPUs per Ray actor; None: 1 when the cluster has GPUs, else 0 (one CPU actor
        per CPU).
    random_state : int, RandomState instance or None, default=None
        Draws the ratios when ``mask_ratios`` is an int or "auto". Masking itself is
        deterministic.
    verbose : bool, default=True
        Progress bars over variants x batches.

    Attributes
    ----------
    mask_ratios_ : tuple of float
        The ratios of the learning path, ascending (0 = unmasked model).
    classes_ : ndarray of shape (n_classes,)
        Class labels, sorted; column ``k`` of ``transform`` belongs to ``classes_[k]``.
    prototypes_ : ndarray of shape (n_ratios, n_classes, n_features)
        Class means under each masked model.
    backbone_ : Backbone
        The loaded backbone (module, preprocessing).
    n_features_in_ : int
        Only for 2-d array input.
    n_forward_batches_ : int
        Forward passes (batches x variants) the last fit ran; 0 when read from cache.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skdlc import DLCScorer
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(),
    ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((20, 3, 16, 16), dtype=np.float32)
    >>> y = np.repeat([0, 1], 10)
    >>> scorer = DLCScorer(net, mask_ratios=[0, 0.3, 0.6], device="cpu", verbose=False)
    >>> scorer.fit_transform(X, y).shape
    (20, 2)
    >>> scorer.score_samples(X, y).shape
    (20,)
    """

    _parameter_constraints: dict = {
        "backbone": [str, nn.Module, Backbone],
        "mask_ratios": [
            Interval(Integral, 1, len(PAPER_GRID), closed="both"),
            StrOptions({"auto"}),
            "array-like",
        ],
        "masking": [StrOptions(set(MASKING_MODES))],
        "prototypes": [StrOptions({"masked", "unmasked"})],
        "logits": [StrOptions(set(LOGITS))],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "embedding": ["boolean"],
        "auto_tol": [Interval(Real, 0, 1, closed="neither")],
        "max_ratios": [Interval(Integral, 2, len(PAPER_GRID), closed="both")],
        "image_size": [Interval(Integral, 8, None, closed="left"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "num_workers": [Interval(Integral, 0, None, closed="left"), None],
        "keep_variants": ["boolean", StrOptions({"auto"})],
        "device": [str, torch.device],
        "engine": [StrOptions({"torch", "onnxruntime"})],
        "precision": [StrOptions({"float32", "bfloat16", "float16"})],
        "memory": [None, str, os.PathLike, HasMethods(["cache"])],
        "chunk_size": [Interval(Integral, 1, None, closed="left")],
        "backend": [StrOptions({"local", "ray"})],
        "ray_address": [None, str],
        "num_gpus": [Interval(Real, 0, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        backbone: str | nn.Module | Backbone = "efficientnet_lite0",
        *,
        mask_ratios: int | str | Any = 5,
        masking: str = "layer",
        prototypes: str = "masked",
        logits: str = "cosine",
        temperature: float = 0.1,
        embedding: bool = False,
        auto_tol: float = 0.99,
        max_ratios: int = 10,
        image_size: int | None = None,
        batch_size: int = 64,
        num_workers: int | None = None,
        keep_variants: bool | str = "auto",
        device: str | torch.device = "auto",
        engine: str = "torch",
        precision: str = "float32",
        memory: Any = None,
        chunk_size: int = 4096,
        backend: str = "local",
        ray_address: str | None = None,
        num_gpus: float | None = None,
        random_state: Any = None,
        verbose: bool = True,
    ):
        self.backbone = backbone
        self.mask_ratios = mask_ratios
        self.masking = masking
        self.prototypes = prototypes
        self.logits = logits
        self.temperature = temperature
        self.embedding = embedding
        self.auto_tol = auto_tol
        self.max_ratios = max_ratios
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.keep_variants = keep_variants
        self.device = device
        self.engine = engine
        self.precision = precision
        self.memory = memory
        self.chunk_size = chunk_size
        self.backend = backend
        self.ray_address = ray_address
        self.num_gpus = num_gpus
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ sklearn API
    def fit(self, X, y) -> "DLCScorer":
        """Build the masked variants and their class prototypes.

        Parameters
        ----------
        X : image array, list of image paths or arrays, list of strings, or Dataset
            See the module documentation of accepted inputs.
        y : array-like of shape (n_samples,)
            Class labels (ints or strings).

        Returns
        -------
        self
        """
        self._fit(X, y, want_losses=False)
        return self

    def fit_transform(self, X, y=None, **fit_params) -> np.ndarray:
        """Fit and return ``transform(X)``, running each variant over X only once."""
        if y is None:
            raise ValueError("DLCScorer needs class labels y: prototypes are per class")
        return self._assemble(*self._fit(X, y, want_losses=True))

    def transform(self, X) -> np.ndarray:
        """Per-class learning complexities, shape (n_samples, [n_embedding +] n_classes).

        Entry ``[i, k]`` is sample i's cross-entropy against class ``classes_[k]``,
        averaged over the masking path. With ``embedding=True`` the full model's
        embedding of sample i comes first.
        """
        check_is_fitted(self, "prototypes_")
        X = self._check_X(X, reset=False)
        losses, emb = self._cached("transform", self._transform_key(X), lambda: self._transform(X))
        return self._assemble(losses, emb)

    def score_samples(self, X, y) -> np.ndarray:
        """DLC score of each labelled sample: the complexity against its own class.

        Returns
        -------
        ndarray of shape (n_samples,); higher = harder.
        """
        check_is_fitted(self, "prototypes_")
        y = column_or_1d(y, warn=True)
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        unknown = self.classes_[idx] != y
        if unknown.any():
            raise ValueError(
                f"y has labels unseen in fit: {np.unique(y[unknown])[:5].tolist()}; "
                f"known classes: {self.classes_[:10].tolist()}"
            )
        scores = self.transform(X)[:, -len(self.classes_) :]
        if len(scores) != len(y):
            raise ValueError(f"X has {len(scores)} samples but y has {len(y)}")
        return scores[np.arange(len(y)), idx]

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "prototypes_")
        names = [f"dlc_{c}" for c in self.classes_]
        if self.embedding:
            names = [f"embedding{i}" for i in range(self.prototypes_.shape[2])] + names
        return np.asarray(names, dtype=object)

    def export_onnx(self, path, X=None):
        """Write the fitted masked variants as ONNX files, plus a manifest.

        The folder holds one ONNX model per mask ratio (input ``"input"`` with a
        dynamic batch axis, output ``"features"``), ``prototypes.npy`` and
        ``manifest.json`` (ratios, preprocessing, class labels, logits, checksums,
        backbone fingerprint). :class:`~skdlc.OnnxDLCModel` scores from it with ONNX
        Runtime alone. An earlier export in ``path`` is replaced. See docs/onnx.md.

        Parameters
        ----------
        path : str or path
            Output folder: new, empty, or an earlier export.
        X : array-like, optional
            A few input samples, to trace the graph; needed only when the backbone has
            no image preprocessing and takes inputs that are not 2-d.

        Returns
        -------
        pathlib.Path
            The export folder.
        """
        check_is_fitted(self, "prototypes_")
        from ._onnx import export_scorer

        return export_scorer(self, path, X=X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False
        return tags

    # ------------------------------------------------------------------ internals
    def _check_X(self, X, *, reset: bool):
        """Validate array input the sklearn way; pass files, lists, datasets through."""
        if sparse.issparse(X):
            check_array(X, accept_sparse=False)  # raises sklearn's "sparse" TypeError
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        if _is_rows_of_numbers(X):
            X = np.asarray(X)  # a list of feature vectors, e.g. X.tolist()
        elif not isinstance(X, (np.ndarray, list, tuple, torch.utils.data.Dataset)) and hasattr(X, "__array__"):
            X = X if hasattr(X, "columns") else np.asarray(X)
        if hasattr(X, "columns") or (isinstance(X, np.ndarray) and X.ndim == 2):
            return validate_data(self, X, reset=reset, dtype=[np.float32, np.float64])
        if isinstance(X, np.ndarray) and X.dtype != object:
            check_finite(X)
            return check_array(X, allow_nd=True, dtype=None, ensure_min_features=1)
        n_samples(X)
        return X

    def _device(self) -> torch.device:
        return resolve_device(self.device)

    def _load_backbone(self) -> Backbone:
        bb = create_backbone(self.backbone)
        if self.image_size is not None and bb.preprocessing is not None:
            bb = dataclasses.replace(
                bb, preprocessing=dataclasses.replace(bb.preprocessing, input_size=(self.image_size,) * 2)
            )
        device = self._device()
        param = next(iter(bb.module.parameters()), None)
        if not isinstance(self.backbone, str) and param is not None and param.device != device:
            # Never move the user's own module to another device behind their back.
            bb = copy.copy(bb)
            bb.module = copy.deepcopy(bb.module)
        return bb

    def _engine(self, X) -> TorchEngine:
        decodes = decodes_files(X)
        # Text is tokenized in-process: tokenizers do not like being forked.
        decodes = decodes and self.backbone_.collate is None
        # Resizing in-memory images is work too: a worker overlaps it with the model.
        busy = decodes or self.backbone_.preprocessing is not None
        workers = default_num_workers(busy) if self.num_workers is None else self.num_workers
        if self.engine == "onnxruntime":
            from ._onnx import OnnxEngine

            return OnnxEngine.from_backbone(
                self.backbone_,
                masking=self.masking,
                # "auto": ONNX Runtime's CUDA when it has it, whatever torch was built with
                device="auto" if str(self.device) == "auto" else self._device(),
                keep_variants=self.keep_variants,
                num_workers=workers,
                verbose=self.verbose,
            )
        return TorchEngine(
            self.backbone_,
            masking=self.masking,
            device=self._device(),
            keep_variants=self.keep_variants,
            num_workers=workers,
            verbose=self.verbose,
            precision=self.precision,
        )

    def _params_key(self) -> str:
        ratios = self.mask_ratios
        if not isinstance(ratios, (str, Integral)):
            ratios = [float(r) for r in ratios]
        rs = self.random_state if isinstance(self.random_state, (Integral, type(None))) else repr(self.random_state)
        return _cache.fingerprint_params(
            {
                "v": _CACHE_VERSION,
                "mask_ratios": ratios,
                "random_state": rs,
                "masking": self.masking,
                "prototypes": self.prototypes,
                "logits": self.logits,
                "temperature": float(self.temperature),
                "embedding": bool(self.embedding),
                "auto_tol": float(self.auto_tol),
                "max_ratios": int(self.max_ratios),
                "image_size": self.image_size,
                "precision": self.precision,  # not `engine`: both engines give the same scores
            }
        )

    def _cached(self, tag: str, key: str | None, compute):
        memory = _cache.check_memory(self.memory)
        if memory is None or key is None:
            return compute()
        return memory.cache(_call, ignore=["compute"])(tag, key, compute)

    def _data_key(self, X) -> str | None:
        fp = _cache.fingerprint_data(X)
        self._last_data_fp = (id(X), fp)  # read by the chunk store, same X, same call
        if fp is None and self.memory is not None:
            warnings.warn(
                f"cannot fingerprint X of type {type(X).__name__}; not caching its scores "
                "(give your Dataset a fingerprint() method to enable the cache)",
                stacklevel=3,
            )
        return fp

    def _transform_key(self, X) -> str | None:
        data = self._data_key(X) if self.memory is not None else None
        return None if data is None else _cache.combine(self._fit_key, data)

    def _fit(self, X, y, *, want_losses: bool):
        self._validate_params()
        X = self._check_X(X, reset=True)
        y = column_or_1d(y, warn=True)
        if len(y) != n_samples(X):
            raise ValueError(f"X has {n_samples(X)} samples but y has {len(y)} labels")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise ValueError("y contains NaN or infinity")
        embedding_only = self.embedding and isinstance(self.mask_ratios, (list, tuple)) and list(self.mask_ratios) == [0.0]
        self.classes_, y_idx = np.unique(check_class_labels(y, allow_single=embedding_only), return_inverse=True)
        self.backbone_ = self._load_backbone()
        # Masked prototypes need every variant's features, so fit computes the losses
        # anyway; only unmasked prototypes make a one-pass fit possible.
        want_losses = want_losses or self.prototypes == "masked" or self.mask_ratios == "auto"
        key = None
        if self.memory is not None:
            data = self._data_key(X)
            if data is not None:
                key = _cache.combine(
                    _cache.fingerprint_module(self.backbone_.module),
                    data,
                    _cache.fingerprint_data(y_idx),
                    self.classes_.tolist(),
                    self._params_key(),
                    want_losses,
                )
        self._fit_key = key or _cache.combine("uncached", id(self))
        self.n_forward_batches_ = 0
        result = self._cached("fit", key, lambda: self._fit_compute(X, y_idx, want_losses))
        self.mask_ratios_ = tuple(result["mask_ratios"])
        self.prototypes_ = result["prototypes"]
        if key is not None and result["losses"] is not None:
            # Seed transform's cache: transform(X) on the training data is then free.
            outputs = (result["losses"], result["embedding"])
            self._cached("transform", _cache.combine(key, data), lambda: outputs)
        return result["losses"], result["embedding"]

    def _fit_compute(self, X, y_idx, want_losses) -> dict:
        if self.backend == "ray":
            from ._distributed import ray_fit

            return ray_fit(self, X, y_idx, want_losses)
        engine = self._engine(X)
        batches = make_batches(X, self.backbone_, self.batch_size)
        n_classes = len(self.classes_)
        store = _chunks.chunk_store(self, X)
        if store is not None:
            out = _chunks.fit_chunked(self, engine, batches, X, y_idx, want_losses, store)
        elif self.mask_ratios == "auto":
            out = self._fit_auto(engine, batches, X, y_idx, n_classes)
        else:
            ratios = resolve_mask_ratios(self.mask_ratios, self.random_state)
            out = self._fit_path(engine, batches, X, y_idx, n_classes, ratios, want_losses)
        self.n_forward_batches_ = engine.n_forward_batches
        return out

    def _fit_path(self, engine, batches, X, y_idx, n_classes, ratios, want_losses) -> dict:
        acc = _PathAccumulator(self, y_idx, n_classes, batches.n)
        run = list(ratios) if want_losses else [0.0]
        if (self.prototypes == "unmasked" or self.embedding) and 0.0 not in ratios and want_losses:
            run = [0.0] + run  # one extra unmasked pass, not part of the path
        extra = 0.0 not in ratios  # run[0] is then an unmasked pass off the path
        for i, feats in engine.features(batches, run, desc="DLC fit", decodes=decodes_files(X)):
            acc.add(run[i], feats, on_path=not (extra and i == 0))
        return acc.result(ratios, want_losses)

    def _fit_auto(self, engine, batches, X, y_idx, n_classes) -> dict:
        acc = _PathAccumulator(self, y_idx, n_classes, batches.n)
        used, previous = [], None
        for r in auto_ratio_order(self.random_state)[: self.max_ratios]:
            for _, feats in engine.features(batches, [r], desc=f"DLC auto ({len(used) + 1})", decodes=decodes_files(X)):
                acc.add(r, feats, on_path=True)
            used.append(r)
            current = acc.own_class_scores()
            if previous is not None and len(used) >= 3:
                rho = spearmanr(previous, current).statistic
                if np.isfinite(rho) and rho >= self.auto_tol:
                    break
            previous = current
        return acc.result(tuple(sorted(used)), True)

    def _transform(self, X):
        if self.backend == "ray":
            from ._distributed import ray_transform

            return ray_transform(self, X)
        engine = self._engine(X)
        batches = make_batches(X, self.backbone_, self.batch_size)
        store = _chunks.chunk_store(self, X, "transform")
        if store is not None:
            return _chunks.transform_chunked(self, engine, batches, X, store)
        ratios = list(self.mask_ratios_)
        run = ratios if (not self.embedding or 0.0 in ratios) else [0.0] + ratios
        losses = np.zeros((batches.n, len(self.classes_)))
        emb = None
        for i, feats in engine.features(batches, run, desc="DLC transform", decodes=decodes_files(X)):
            if self.embedding and run[i] == 0.0 and emb is None:
                emb = feats
            if run is ratios or i > 0:
                t = ratios.index(run[i])
                losses += per_class_losses(feats, self.prototypes_[t], self.logits, self.temperature)
        return losses / len(ratios), emb

    def _assemble(self, losses: np.ndarray, emb: np.ndarray | None) -> np.ndarray:
        if not self.embedding:
            return losses
        return np.hstack([emb.astype(np.float64), losses])


def _is_rows_of_numbers(X) -> bool:
    if not isinstance(X, (list, tuple)) or not X:
        return False
    first = X[0]
    if isinstance(first, (list, tuple)):
        return all(isinstance(v, Real) for v in first)
    return isinstance(first, np.ndarray) and first.ndim == 1 and first.dtype.kind in "biuf"


class _PathAccumulator:
    """Collects prototypes and running losses as variants' features arrive."""

    def __init__(self, scorer: DLCScorer, y_idx: np.ndarray, n_classes: int, n: int):
        self.s = scorer
        self.y_idx = y_idx
        self.n_classes = n_classes
        self.protos: dict[float, np.ndarray] = {}
        self.unmasked: np.ndarray | None = None
        self.embedding: np.ndarray | None = None
        self.loss_sum = np.zeros((n, n_classes))
        self.n_on_path = 0

    def add(self, ratio: float, feats: np.ndarray, *, on_path: bool) -> None:
        if ratio == 0.0 and self.unmasked is None:
            self.unmasked = class_means(feats, self.y_idx, self.n_classes)
            if self.s.embedding:
                self.embedding = feats
        if not on_path:
            return
        protos = self.unmasked if self.s.prototypes == "unmasked" else class_means(feats, self.y_idx, self.n_classes)
        self.protos[ratio] = protos
        self.loss_sum += per_class_losses(feats, protos, self.s.logits, self.s.temperature)
        self.n_on_path += 1

    def own_class_scores(self) -> np.ndarray:
        return self.loss_sum[np.arange(len(self.y_idx)), self.y_idx] / max(self.n_on_path, 1)

    def result(self, ratios, want_losses: bool) -> dict:
        if self.s.prototypes == "unmasked":
            protos = np.stack([self.unmasked] * len(ratios))
        else:
            protos = np.stack([self.protos[r] for r in ratios])
        losses = self.loss_sum / len(ratios) if want_losses else None
        return {"mask_ratios": tuple(ratios), "prototypes": protos, "losses": losses, "embedding": self.embedding}
