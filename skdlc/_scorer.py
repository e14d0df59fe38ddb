"""DLCScorer: training-free learning-complexity scores, as an sklearn transformer."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import sys
import warnings
import weakref
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d, validate_data
from torch import nn

from . import _cache, _chunks, _driver
from ._backbones import create_backbone
from ._backbones._base import Backbone
from ._data import check_finite, decodes_files, make_batches, n_samples, read_error
from ._distributed import RayBackend
from ._engine import TorchEngine, default_num_workers, resolve_device
from ._engine_settings import OnnxSettings, TorchSettings
from ._losses import LOGITS
from ._masking import MASKING_MODES
from ._ratios import PAPER_GRID, auto_ratio_order, resolve_mask_ratios
from ._validation import check_class_labels

__all__ = ["DLCScorer"]

_CACHE_VERSION = "dlc-2"  # bump when scoring changes, so old cache entries are never read


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
    mask_ratios : int, sequence of float, "auto", "calibrated" or "cumulative", default="calibrated"
        The learning path. An int ``n``: ``n`` ratios from the paper's grid
        {0, 0.02, ..., 0.98}, always including 0 (the unmasked model), the rest drawn
        with ``random_state``. A sequence: those ratios, each in [0, 1) (0 need not be
        among them: the full model then runs once more, off the path, only when
        unmasked prototypes or the embedding need it). ``"auto"``: grow the path in
        random grid order until the Spearman correlation between successive score
        estimates reaches ``auto_tol`` (at most ``max_ratios``). ``"calibrated"``: probe
        the masked models on a stratified sample of a quarter of the rows (100 to 300;
        one pass of the sample per probe ratio), find where they fall to chance, and
        place ``n_ratios`` of the probed ratios inside that range (see
        ``calibration_``): the default, the path measured in docs/defaults.md, and no
        pass is spent on a collapsed model. The sample depends on the labels only (not
        on ``random_state``), and the path reuses the probes' features for its rows.
        ``"cumulative"``: the official code's schedule, sparsity 1 - 0.98^k (with
        ``masking="global"``).
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
    n_ratios : int, default=5
        Length of the path ``mask_ratios="calibrated"`` chooses (0 included).
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
    engine : {"auto", "torch", "onnxruntime"}, TorchSettings or OnnxSettings, default="auto"
        What runs the masked variants. An engine object
        (``skdlc.TorchSettings(precision=..., keep_variants=..., num_workers=...)`` or
        ``skdlc.OnnxSettings(threads=..., keep_variants=..., num_workers=...)``) names the
        engine and holds its settings; ``precision``, ``keep_variants`` and ``num_workers``
        must then stay at their defaults (``fit`` rejects both at once). "onnxruntime" exports the backbone to ONNX once,
        masks the exported weights and runs every variant with ONNX Runtime
        (``'skdlc[onnx-gpu]'`` for CUDA): the same scores (within 1e-4), several times
        faster on the CPU. Image and array backbones only. "auto": ONNX Runtime on the
        CPU when the backbone exports, torch otherwise (text backbones, a failed
        export, CUDA); a one-line note says which. See docs/onnx.md.
    precision : {"float32", "bfloat16", "float16"}, default="float32"
        Autocast dtype of the torch engine on CUDA: faster, scores change slightly.
        The CPU and ONNX Runtime always compute in float32.
    memory : str, path or joblib.Memory, default=None
        Cache for scores. Keys are content fingerprints of the backbone weights, the
        data (image files by a hash of their bytes, not their names or timestamps) and
        the parameters, so a second run, or every candidate of a grid search over the
        sampler, reads the cache instead of scoring again. What is read back is
        verified against a checksum; a damaged entry is computed again (one line). With a cache
        folder, the local backend also stores each chunk's features there
        (``<memory>/joblib/skdlc_chunks``) and streams them back memory-mapped: memory
        stays flat as N grows, and a killed run resumes, computing only the missing
        chunks. See docs/distributed.md.
    chunk_size : int, default=4096
        Rows per resumable feature chunk when ``memory`` is a folder (rounded up to a
        multiple of ``batch_size``).
    backend : "local", "ray" or RayBackend, default="local"
        ``RayBackend(address=..., num_gpus=...)`` (or "ray" with ``ray_address`` and
        ``num_gpus``) scores on Ray Data (``pip install 'skdlc[ray]'``): an actor pool maps the
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
    on_error : {"raise", "skip"}, default="raise"
        An image file that does not decode while scoring: raise
        :class:`~skdlc.datasets.ImageReadError` naming it, or ``"skip"``: leave the sample out
        of the fit (prototypes, calibration) and give it NaN in every column of the
        output (``unreadable_`` lists those rows). Files are decoded once, in the
        scoring pass itself; no pass is spent checking them first.
    random_state : int, RandomState instance or None, default=None
        Draws the ratios when ``mask_ratios`` is an int or "auto". Masking itself is
        deterministic, and so is the calibrated path: it depends on the data, not on
        ``random_state``.
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
        Forward passes (batches x variants) the last fit ran, probes included; 0 when
        read from cache.
    n_tokens_, n_tokens_run_ : int
        Text backbones only: tokens of the data, and tokens one pass over it runs
        (padding included). Rows of similar length are batched together (results in
        input order), so the two stay close.
    calibration_ : Calibration or None
        With ``mask_ratios="calibrated"``: the ratios probed, the nearest-class-mean
        accuracy of each on the sample, chance level, the chosen path, and ``passes``:
        the image forwards of the probes and the path, and how many of the path's
        passes moved the ranking (``calibration_.to_dict()`` is JSON-ready). None
        otherwise.
    unreadable_ : ndarray of int
        Rows of the fitted X left out as unreadable (``on_error="skip"``; known when
        ``fit_transform`` computed their losses); empty otherwise. ``transform`` gives
        such rows NaN and leaves the estimator as it is.

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
            StrOptions({"auto", "calibrated", "cumulative"}),
            "array-like",
        ],
        "masking": [StrOptions(set(MASKING_MODES))],
        "prototypes": [StrOptions({"masked", "unmasked"})],
        "logits": [StrOptions(set(LOGITS))],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "embedding": ["boolean"],
        "auto_tol": [Interval(Real, 0, 1, closed="neither")],
        "max_ratios": [Interval(Integral, 2, len(PAPER_GRID), closed="both")],
        "n_ratios": [Interval(Integral, 1, len(PAPER_GRID), closed="both")],
        "image_size": [Interval(Integral, 8, None, closed="left"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "num_workers": [Interval(Integral, 0, None, closed="left"), None],
        "keep_variants": ["boolean", StrOptions({"auto"})],
        "device": [str, torch.device],
        "engine": [StrOptions({"auto", "torch", "onnxruntime"}), TorchSettings, OnnxSettings],
        "precision": [StrOptions({"float32", "bfloat16", "float16"})],
        "memory": [None, str, os.PathLike, HasMethods(["cache"])],
        "chunk_size": [Interval(Integral, 1, None, closed="left")],
        "backend": [StrOptions({"local", "ray"}), RayBackend],
        "ray_address": [None, str],
        "num_gpus": [Interval(Real, 0, None, closed="left"), None],
        "on_error": [StrOptions({"raise", "skip"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        backbone: str | nn.Module | Backbone = "efficientnet_lite0",
        *,
        mask_ratios: int | str | Any = "calibrated",
        masking: str = "layer",
        prototypes: str = "masked",
        logits: str = "cosine",
        temperature: float = 0.1,
        embedding: bool = False,
        auto_tol: float = 0.99,
        max_ratios: int = 10,
        n_ratios: int = 5,
        image_size: int | None = None,
        batch_size: int = 64,
        num_workers: int | None = None,
        keep_variants: bool | str = "auto",
        device: str | torch.device = "auto",
        engine: str | TorchSettings | OnnxSettings = "auto",
        precision: str = "float32",
        memory: Any = None,
        chunk_size: int = 4096,
        backend: str = "local",
        ray_address: str | None = None,
        num_gpus: float | None = None,
        on_error: str = "raise",
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
        self.n_ratios = n_ratios
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
        self.on_error = on_error
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
        data_fp = self._data_fp(X)
        with self._readable(X):
            losses, emb = self._cached("transform", self._transform_key(data_fp),
                                       lambda: self._transform(X, data_fp))
        return self._assemble(losses, emb)  # rows left out as unreadable are NaN

    def score_samples(self, X, y) -> np.ndarray:
        """DLC score of each labelled sample: the complexity against its own class.

        Returns
        -------
        ndarray of shape (n_samples,); higher = harder.
        """
        check_is_fitted(self, "prototypes_")
        y = column_or_1d(y, warn=True)
        _driver.class_index(self.classes_, y)  # unseen labels fail before any scoring
        return _driver.own_class(self.transform(X), self.classes_, y)

    def embed(self, X) -> np.ndarray:
        """The full (unmasked) backbone's features of X, shape (n_samples, n_features).

        Needs no labels and no fit (the backbone is loaded when the scorer is not
        fitted); one pass over X, on the scorer's engine and backend. With a cache
        folder (``memory``), the pass is stored there and a second call reads it. Use it
        for a linear probe, or any method that wants the pre-trained embedding.
        """
        fitted = hasattr(self, "backbone_")
        if not fitted:
            self._validate_params()
            self._check_combination()
        X = self._check_X(X, reset=False) if hasattr(self, "n_features_in_") else _check_input(self, X)
        # An unfitted scorer works on a copy, so that the estimator gains no state.
        worker = self if fitted else copy.copy(self)
        if not fitted:
            worker.backbone_ = worker._load_backbone()
        with self._readable(X):
            return _driver.embed(worker._source(X, "embed", worker._data_fp(X)), skip=self.on_error == "skip")

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

    def _engine(self, X, batches) -> tuple[Any, str]:
        """The engine to run, and its name (part of the chunk store's key)."""
        decodes = decodes_files(X)
        # Text is tokenized in-process: tokenizers do not like being forked.
        decodes = decodes and self.backbone_.collate is None
        # Resizing in-memory images is work too: a worker overlaps it with the model.
        busy = decodes or self.backbone_.preprocessing is not None
        kind, opts = self._execution()
        workers = default_num_workers(busy) if opts["num_workers"] is None else opts["num_workers"]
        common = dict(masking=self.masking, keep_variants=opts["keep_variants"], num_workers=workers,
                      verbose=self.verbose)
        if kind == "auto":
            kind = self._auto_engine(batches, common)
            if not isinstance(kind, str):
                return kind, "onnxruntime"
        if kind == "onnxruntime":
            from ._onnx_engine import OnnxEngine

            # "auto": ONNX Runtime's CUDA when it has it, whatever torch was built with
            device = "auto" if str(self.device) == "auto" else self._device()
            engine = OnnxEngine.from_backbone(self.backbone_, device=device, threads=opts["threads"], **common)
            return engine, "onnxruntime"
        engine = TorchEngine(self.backbone_, device=self._device(), precision=opts["precision"], **common)
        return engine, "torch"

    def _auto_engine(self, batches, common):
        """``engine="auto"``: ONNX Runtime on the CPU when the backbone exports, else torch."""
        if self._device().type != "cpu":
            return "torch"
        if self.backbone_.collate is not None:
            _note(self.verbose, "engine='auto': torch (ONNX Runtime runs image and array backbones, "
                  f"{self.backbone_.name!r} takes text)")
            return "torch"
        module = self.backbone_.module
        if module in _NO_EXPORT:  # failed before: do not pay for the attempt again
            return "torch"
        try:
            from ._onnx_engine import OnnxEngine

            engine = OnnxEngine.from_backbone(self.backbone_, device="cpu", **common)
            engine.variants.prepare(batches)  # exports now, so a failure falls back here
        except Exception as exc:  # any export failure: torch runs every module
            reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            what = "ONNX Runtime is not installed" if isinstance(exc, ImportError) else \
                "the backbone does not export to ONNX"
            _NO_EXPORT[module] = True
            _note(self.verbose, f"engine='auto': torch ({what}: {type(exc).__name__}"
                  f"{': ' + reason if reason else ''})")
            return "torch"
        _note(self.verbose, "engine='auto': ONNX Runtime on the CPU (engine='torch' to use torch)")
        return engine

    def _source(self, X, role: str, data_fp: "_cache.Fingerprint | None", rows: np.ndarray | None = None):
        """Where the driver gets its features: Ray, the chunk store, or the engine itself.

        ``rows``: only these rows of X (results still indexed by rows of X).
        """
        if rows is not None:
            X = _take(X, rows)
            data_fp = None if data_fp is None else data_fp.take(rows)
        order = _driver.length_order(X, self.backbone_)
        if order is not None:  # text: batches of similar lengths pad little
            X = [X[i] for i in order]
        by_length = order is not None
        if rows is not None:  # the source's rows map back to rows of the whole X
            order = rows if order is None else rows[order]
        ray = self._ray_backend()
        if ray is not None:
            from ._distributed import RaySource

            return RaySource(self.backbone_, X, masking=self.masking, batch_size=self.batch_size,
                             address=ray.address, num_gpus=ray.num_gpus, verbose=bool(self.verbose),
                             order=order, on_error=self.on_error)
        batches = make_batches(X, self.backbone_, self.batch_size, on_error=self.on_error)
        engine, name = self._engine(X, batches)
        engine.mark_unreadable = self.on_error == "skip"
        store = None
        if data_fp is not None:
            key = _chunks.feature_key(self.backbone_, data_fp.key, masking=self.masking,
                                      batch_size=self.batch_size, engine=name,
                                      role=f"{role}-by-length" if by_length else role)
            store = _chunks.chunk_store(self.memory, key)
        if store is not None:
            return _chunks.ChunkedSource(engine, batches, store, chunk_size=self.chunk_size,
                                         decodes=decodes_files(X), order=order)
        return _driver.EngineSource(engine, batches, decodes_files(X), order)

    def _plan(self, ratios=None, auto=None) -> _driver.Plan:
        return _driver.Plan(ratios=ratios, auto=auto, prototypes=self.prototypes, logits=self.logits,
                            temperature=float(self.temperature), embedding=bool(self.embedding),
                            skip_unreadable=self.on_error == "skip")

    @contextlib.contextmanager
    def _readable(self, X):
        """Turn the driver's unreadable-row errors into errors that name the file or class."""
        try:
            yield
        except _driver.UnreadableRows as exc:  # raise mode, features cached by a skip run
            raise read_error(X, exc.rows[0]) from None
        except _driver.EmptyClasses as exc:
            names = [str(self.classes_[k]) for k in exc.classes] if hasattr(self, "classes_") else exc.classes
            raise ValueError(f"no image of class(es) {names} could be read; every one was left out "
                             "(on_error='skip'): fix the files or drop the class") from None

    # ------------------------------------------------------------------ cache keys
    def _random_state_key(self):
        """The random state as a cache key part; None when it cannot be one."""
        rs = self.random_state
        if isinstance(self.mask_ratios, str) and self.mask_ratios in ("cumulative", "calibrated"):
            return "unused"  # the calibrated path depends on the data only
        if not isinstance(self.mask_ratios, (str, Integral)):
            return "unused"  # an explicit path draws nothing
        if rs is None:
            # numpy's global stream: the draw is arbitrary anyway, and one cached draw
            # serves every later fit (a grid search reads it instead of scoring again)
            return "global"
        if isinstance(rs, Integral):
            return int(rs)
        return None  # a RandomState instance: its draws depend on its history

    def _params_key(self, rs_key) -> str:
        ratios = self.mask_ratios
        if not isinstance(ratios, (str, Integral)):
            ratios = [float(r) for r in np.asarray(ratios, dtype=float).ravel()]
        return _cache.fingerprint_params(
            {
                "v": _CACHE_VERSION,
                "mask_ratios": ratios,
                "random_state": rs_key,
                "masking": self.masking,
                "prototypes": self.prototypes,
                "logits": self.logits,
                "temperature": float(self.temperature),
                "embedding": bool(self.embedding),
                "auto_tol": float(self.auto_tol),
                "max_ratios": int(self.max_ratios),
                "n_ratios": int(self.n_ratios),
                "image_size": self.image_size,
                "precision": self._execution()[1]["precision"],  # not `engine`: both engines give the same scores
                "on_error": self.on_error,
            }
        )

    def _cached(self, tag: str, key: str | None, compute):
        """``compute()``, or its result read from the cache, verified against its digest.

        A cache entry that fails the check (damaged or altered on disk) is computed
        again and stored over, with a one-line note.
        """
        memory = _cache.check_memory(self.memory)
        if memory is None or key is None:
            return compute()
        cached = memory.cache(_call, ignore=["compute"])
        intact, out = _cache.unseal(cached(tag, key, lambda: _cache.seal(compute())))
        if not intact:
            print(f"skdlc: cache: a damaged {tag} entry in {memory.location}; computing it again",
                  file=sys.stderr)
            stored = _cache.seal(compute())
            cached.call(tag, key, lambda: stored)
            out = stored[2]
        return out

    def _data_fp(self, X) -> "_cache.Fingerprint | None":
        """X's content fingerprint when a cache is set; None (with a warning) when it has none."""
        if self.memory is None:
            return None
        fp = _cache.fingerprint_rows(X)
        if fp is None:
            warnings.warn(
                f"cannot fingerprint X of type {type(X).__name__}; not caching its scores "
                "(give your Dataset a fingerprint() method to enable the cache)",
                stacklevel=4,
            )
        return fp

    def _fit_key(self, data_fp, y_idx, want_losses) -> str | None:
        if data_fp is None:
            return None
        rs_key = self._random_state_key()
        if rs_key is None:
            warnings.warn(
                "random_state is a RandomState instance: its draws depend on its history, so "
                "this fit is not cached (pass an int to cache it)",
                stacklevel=4,
            )
            return None
        return _cache.combine(
            _cache.fingerprint_module(self.backbone_.module),
            data_fp.key,
            _cache.fingerprint_data(np.asarray(y_idx)),
            self.classes_.tolist(),
            self._params_key(rs_key),
            want_losses,
        )

    def _transform_key(self, data_fp) -> str | None:
        """A key from the fitted state and the data only (never from the estimator's identity)."""
        if data_fp is None:
            return None
        bb = self.backbone_
        return _cache.combine(
            _CACHE_VERSION,
            "transform",
            _cache.fingerprint_module(bb.module),
            bb.name,
            bb.preprocessing.to_dict() if bb.preprocessing is not None else None,
            self.classes_.tolist(),
            list(self.mask_ratios_),
            _cache.fingerprint_data(np.asarray(self.prototypes_)),
            self.logits,
            float(self.temperature),
            bool(self.embedding),
            self.masking,
            self._execution()[1]["precision"],
            self.on_error,
            data_fp.key,
        )

    # ------------------------------------------------------------------ fit / transform
    def _ray_backend(self) -> RayBackend | None:
        """The Ray settings, from a RayBackend or from backend="ray" + ray_address/num_gpus."""
        if isinstance(self.backend, RayBackend):
            return self.backend
        if self.backend == "ray":
            return RayBackend(address=self.ray_address, num_gpus=self.num_gpus)
        return None

    def _execution(self) -> tuple[str, dict]:
        """The engine's kind and settings, from an engine object or the flat parameters."""
        e = self.engine
        if isinstance(e, TorchSettings):
            return "torch", dict(precision=e.precision, keep_variants=e.keep_variants,
                                 num_workers=e.num_workers, threads=None)
        if isinstance(e, OnnxSettings):  # ONNX Runtime computes in float32
            return "onnxruntime", dict(precision="float32", keep_variants=e.keep_variants,
                                       num_workers=e.num_workers, threads=e.threads)
        return e, dict(precision=self.precision, keep_variants=self.keep_variants,
                       num_workers=self.num_workers, threads=None)

    def _check_combination(self) -> None:
        """Reject settings that the chosen backend would ignore or fail on deep inside."""
        if isinstance(self.mask_ratios, str) and self.mask_ratios == "cumulative" and self.masking != "global":
            raise ValueError("mask_ratios='cumulative' is the official code's schedule of global magnitude "
                             f"pruning: use masking='global' with it (got masking={self.masking!r})")
        if isinstance(self.backend, RayBackend) and (self.ray_address is not None or self.num_gpus is not None):
            raise ValueError("give the Ray address and GPUs in backend=RayBackend(address=..., num_gpus=...), "
                             "not also as ray_address/num_gpus")
        if self.backend == "local" and (self.ray_address is not None or self.num_gpus is not None):
            raise ValueError("ray_address and num_gpus apply to backend='ray' (or a RayBackend); "
                             "backend='local' ignores them")
        if not isinstance(self.engine, str):
            # One place for each setting: the engine object holds them, the flat ones stay unset.
            flat = [f"{name}={value!r}" for name, value, default in (
                ("precision", self.precision, "float32"), ("keep_variants", self.keep_variants, "auto"),
                ("num_workers", self.num_workers, None)) if value != default]
            if flat:
                raise ValueError(f"engine={self.engine!r} holds the engine's settings; do not also set "
                                 f"{', '.join(flat)}: put them in the engine object (or use engine='torch' "
                                 "or 'onnxruntime' with the flat parameters)")
        kind, opts = self._execution()
        if self._ray_backend() is not None:
            if kind == "onnxruntime":
                raise ValueError(f"engine={self.engine!r} runs on backend='local' only; Ray actors run "
                                 "torch: use engine='auto' or 'torch' with backend='ray'")
            if opts["precision"] != "float32":
                raise ValueError(f"precision={opts['precision']!r} applies to the local torch engine on "
                                 "CUDA; Ray actors compute in float32: use precision='float32'")

    def _fit(self, X, y, *, want_losses: bool):
        self._validate_params()
        self._check_combination()
        X = self._check_X(X, reset=True)
        y = column_or_1d(y, warn=True)
        if len(y) != n_samples(X):
            raise ValueError(f"X has {n_samples(X)} samples but y has {len(y)} labels")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise ValueError("y contains NaN or infinity")
        self.classes_, y_idx = np.unique(check_class_labels(y), return_inverse=True)
        self.backbone_ = self._load_backbone()
        data_fp = self._data_fp(X)
        key = self._fit_key(data_fp, y_idx, want_losses)
        self.n_forward_batches_ = 0
        with self._readable(X):
            result = self._cached("fit", key, lambda: self._fit_compute(X, y_idx, want_losses, data_fp))
        self.unreadable_ = _nan_rows(result["losses"])
        self.mask_ratios_ = tuple(result["mask_ratios"])
        self.prototypes_ = result["prototypes"]
        self.calibration_ = result.get("calibration")
        if self.backbone_.collate is not None:
            self.n_tokens_, self.n_tokens_run_ = _token_counts(X, self.backbone_, self.batch_size)
        if key is not None and result["losses"] is not None:
            # Seed transform's cache: transform(X) on the training data is then free.
            outputs = (result["losses"], result["embedding"])
            self._cached("transform", self._transform_key(data_fp), lambda: outputs)
        return result["losses"], result["embedding"]

    def _fit_compute(self, X, y_idx, want_losses, data_fp) -> dict:
        n_classes = len(self.classes_)
        rs = check_random_state(self.random_state)  # one stream for every draw of this fit
        calibration, passes = None, 0
        if isinstance(self.mask_ratios, str) and self.mask_ratios == "auto":
            order = tuple(auto_ratio_order(rs)[: self.max_ratios])
            plan = self._plan(auto=_driver.AutoPath(order, float(self.auto_tol)))
        elif isinstance(self.mask_ratios, str) and self.mask_ratios == "calibrated":
            calibration, rows, feats, passes = self._calibrate(X, y_idx, data_fp)
            plan = self._plan(ratios=calibration.ratios)
        else:
            plan = self._plan(ratios=resolve_mask_ratios(self.mask_ratios, rs))
        if calibration is not None:  # the sample's rows are probed already: the path runs the rest
            rest = np.setdiff1d(np.arange(len(y_idx)), rows)
            source = _driver.ReuseSource(len(y_idx), rows, feats,
                                         self._source(X, "fit", data_fp, rest) if rest.size else None)
        else:
            source = self._source(X, "fit", data_fp)
        out = _driver.fit(plan, source, y_idx, n_classes, want_losses=want_losses, calibration=calibration)
        self.n_forward_batches_ = passes + source.n_forward_batches
        return out.as_dict()

    def _calibrate(self, X, y_idx, data_fp):
        """Probe the masked models on a stratified sample of the data (not of the seed).

        Returns the calibration, the sample's rows, their features at every probed
        ratio (the path reuses them) and the probes' forward batches.
        """
        from . import _calibration

        n_max = _calibration.sample_size(len(y_idx)) if hasattr(_calibration, "sample_size") else 300
        rows = np.asarray(_calibration.sample_rows(y_idx, n_max))
        # positions in the sample, not rows of X: the features come back as (n_sample, D)
        source = self._source(_take(X, rows), "probe", None if data_fp is None else data_fp.take(rows))
        try:
            cal, feats = _driver.calibrate(source, _calibration.probe_grid(self.masking), y_idx[rows],
                                           n_ratios=int(self.n_ratios), skip=self.on_error == "skip")
        except _driver.UnreadableRows as exc:
            raise _driver.UnreadableRows(rows[exc.rows]) from None
        return cal, rows, feats, source.n_forward_batches

    def _transform(self, X, data_fp):
        source = self._source(X, "transform", data_fp)
        plan = self._plan(ratios=self.mask_ratios_)
        return _driver.transform(plan, source, self.mask_ratios_, self.prototypes_)

    def _assemble(self, losses: np.ndarray, emb: np.ndarray | None) -> np.ndarray:
        if not self.embedding:
            return losses
        out = np.empty((len(losses), emb.shape[1] + losses.shape[1]), dtype=np.float64)
        out[:, :emb.shape[1]], out[:, emb.shape[1]:] = emb, losses  # no float64 temporary of emb
        return out


_NO_EXPORT: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # modules that failed to export
_NOTES_SHOWN: set[str] = set()


def _note(verbose, message: str) -> None:
    """A one-line note on stderr, once per process (only when verbose)."""
    if verbose and message not in _NOTES_SHOWN:
        _NOTES_SHOWN.add(message)
        print(f"skdlc: {message}", file=sys.stderr)


def _check_input(scorer, X):
    """X validated as fit would, without recording n_features_in_ on the scorer."""
    return DLCScorer._check_X(copy.copy(scorer), X, reset=True)


def _token_counts(X, backbone, batch_size: int) -> tuple[int, int]:
    """(tokens of the data, tokens one pass runs, padding included), batched as scoring does."""
    order = _driver.length_order(X, backbone)
    rows = list(X) if order is None else [X[i] for i in order]
    batches = make_batches(rows, backbone, batch_size)
    data = run = 0
    for j in range(len(batches)):
        b = batches[j]
        ids = b["input_ids"] if isinstance(b, dict) else b
        mask = b.get("attention_mask") if isinstance(b, dict) else None
        run += int(ids.numel())
        data += int(mask.sum()) if mask is not None else int(ids.numel())
    return data, run


def _nan_rows(losses) -> np.ndarray:
    """Rows left out as unreadable: NaN in the output."""
    if losses is None:
        return np.zeros(0, dtype=np.intp)
    return np.flatnonzero(np.isnan(losses).any(axis=1))


def _take(X, rows: np.ndarray):
    """The rows ``rows`` of scorer input X, as input of the same kind."""
    if isinstance(X, np.ndarray):
        return X[rows]
    if isinstance(X, torch.utils.data.Dataset) and not isinstance(X, (list, tuple)):
        return torch.utils.data.Subset(X, rows.tolist())
    return [X[int(i)] for i in rows]


def _is_rows_of_numbers(X) -> bool:
    if not isinstance(X, (list, tuple)) or not X:
        return False
    first = X[0]
    if isinstance(first, (list, tuple)):
        return all(isinstance(v, Real) for v in first)
    return isinstance(first, np.ndarray) and first.ndim == 1 and first.dtype.kind in "biuf"
