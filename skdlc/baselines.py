"""Baseline hardness scores to compare DLC with, as sklearn estimators.

Every scorer here has the shape of :class:`~skdlc.DLCScorer`: ``fit(X, y)`` on the same
images (or other inputs) with the same backbones, ``score_samples(X, y)`` giving one
hardness per labelled sample (higher = harder, or, for the greedy geometric methods,
later in the selection order), and ``fit_transform(X, y)`` giving per-class columns
that :class:`~skdlc.FlexRandSampler` reads exactly as it reads DLC's. So samplers and
benchmarks treat every method alike.

All of them start from the frozen full-model embedding, extracted once by
:func:`extract_embeddings` (:meth:`DLCScorer.embed <skdlc.DLCScorer.embed>`, cached by
content with ``memory=``). Pass ``backbone="precomputed"`` to give embeddings directly
as a 2-d array (what the benchmarks do, so one forward pass serves every method).

Training-based (one-shot training of a linear head on the frozen embedding, torch SGD,
seeded; the paper's schedule: momentum 0.9, batch 128, step decay /10 at 50% and 75% of
the epochs, scaled to a CPU):

- :class:`EL2NScorer` (Paul et al. 2021): ``||softmax - onehot||`` early in training;
- :class:`GraNdScorer` (Paul et al. 2021): the norm of the loss gradient w.r.t. the head;
- :class:`ForgettingScorer` (Toneva et al. 2019): forgetting events over the epochs;
- :class:`UncertaintyScorer` (Coleman et al. 2020): least confidence, entropy, margin;
- :class:`SOptScorer`: the optimization-based learning complexity of the DLC paper,
  each sample's loss summed over the epochs (what DLC approximates without training).

Geometric (no training):

- :class:`HerdingScorer` (Welling 2009) and :class:`KCenterGreedyScorer` (Sener &
  Savarese 2018): the rank in the greedy selection order of each class (0 = picked
  first); keep the lowest ranks (``strategy="easy"``) to reproduce the method;
- :class:`SSPScorer` (self-supervised prototypes, Sorscher et al. 2022): distance to the
  nearest k-means centroid;
- :class:`ModerateScorer` (Xia et al. 2023): distance to the class median; the method
  keeps the samples around the median distance (``strategy="flexible", gamma=0.5``).

Every scorer records ``fit_time_`` (embedding + training + scoring) and
``embedding_time_`` (the forward pass alone; 0 for precomputed input).
"""

from __future__ import annotations

import time
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from scipy.special import log_softmax, softmax
from scipy.stats import spearmanr
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
from torch import nn

__all__ = [
    "extract_embeddings",
    "train_linear_head",
    "class_spearman",
    "EL2NScorer",
    "GraNdScorer",
    "ForgettingScorer",
    "UncertaintyScorer",
    "SOptScorer",
    "HerdingScorer",
    "KCenterGreedyScorer",
    "SSPScorer",
    "ModerateScorer",
    "TRAINING_BASED",
    "GEOMETRIC",
]


# ---------------------------------------------------------------------- shared pieces
def extract_embeddings(
    X,
    backbone="efficientnet_lite0",
    *,
    image_size=None,
    batch_size=64,
    device="auto",
    memory=None,
    verbose=False,
) -> np.ndarray:
    """Full-model (unmasked) embedding of every sample, through DLCScorer's engine.

    One forward pass, the same preprocessing and backbones as :class:`~skdlc.DLCScorer`;
    with ``memory`` the result is cached by content (backbone weights, data, size).

    Parameters
    ----------
    X : images or anything DLCScorer accepts
    backbone : str, torch.nn.Module or Backbone, default="efficientnet_lite0"
    image_size : int or None, default=None
        Input size override, as in DLCScorer.
    batch_size : int, default=64
    device : str or torch.device, default="auto"
    memory : str, path, joblib.Memory or None, default=None
    verbose : bool, default=False

    Returns
    -------
    ndarray of shape (n_samples, n_features), float32.
    """
    from ._scorer import DLCScorer

    scorer = DLCScorer(backbone, image_size=image_size, batch_size=batch_size, device=device,
                       memory=memory, verbose=verbose)
    return scorer.embed(X).astype(np.float32, copy=False)


def _standardize(Z: np.ndarray, mean=None, scale=None):
    if mean is None:
        mean = Z.mean(0)
        scale = Z.std(0)
        scale = np.where(scale > 1e-8, scale, 1.0)
    return (Z - mean) / scale, mean, scale


def train_linear_head(
    Z: np.ndarray,
    y_idx: np.ndarray,
    n_classes: int,
    *,
    epochs: int = 50,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 1e-5,
    batch_size: int = 128,
    milestones: tuple[float, ...] = (0.5, 0.75),
    seed: int = 0,
) -> np.ndarray:
    """Train a linear head with SGD; return its weights after every epoch.

    The paper's schedule (momentum 0.9, batch 128, lr divided by 10 at 50% and 75% of
    the epochs), seeded (initialisation and batch order).

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_features)
        Inputs of the head (already standardized).
    y_idx : ndarray of shape (n_samples,)
        Class indices in ``range(n_classes)``.
    n_classes : int
    epochs, lr, momentum, weight_decay, batch_size : SGD settings
    milestones : tuple of float
        Fractions of ``epochs`` after which the learning rate is divided by 10.
    seed : int

    Returns
    -------
    ndarray of shape (epochs, n_classes, n_features + 1)
        ``[e, :, :-1]`` are the weights and ``[e, :, -1]`` the bias after epoch ``e + 1``.
    """
    g = torch.Generator().manual_seed(int(seed))
    Zt = torch.as_tensor(Z, dtype=torch.float32)
    yt = torch.as_tensor(y_idx, dtype=torch.long)
    head = nn.Linear(Z.shape[1], n_classes)
    with torch.no_grad():
        bound = 1.0 / np.sqrt(Z.shape[1])
        head.weight.uniform_(-bound, bound, generator=g)
        head.bias.uniform_(-bound, bound, generator=g)
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    steps = sorted({max(1, int(round(m * epochs))) for m in milestones})
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=steps, gamma=0.1)
    snaps = np.empty((epochs, n_classes, Z.shape[1] + 1), dtype=np.float32)
    n = len(Zt)
    for e in range(epochs):
        perm = torch.randperm(n, generator=g)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(head(Zt[idx]), yt[idx])
            loss.backward()
            opt.step()
        sched.step()
        with torch.no_grad():
            snaps[e, :, :-1] = head.weight.numpy()
            snaps[e, :, -1] = head.bias.numpy()
    return snaps


def _logits(Z: np.ndarray, snap: np.ndarray) -> np.ndarray:
    return Z.astype(np.float64) @ snap[:, :-1].T.astype(np.float64) + snap[:, -1]


def class_spearman(a, b, y) -> float:
    """Spearman correlation of two scores within each class, averaged over classes.

    The ranking a sampler uses is within-class, so this is the agreement that matters
    (the paper's "ranking correlation"). Classes with constant scores are skipped.
    """
    a, b, y = np.asarray(a), np.asarray(b), np.asarray(y)
    rhos = []
    for c in np.unique(y):
        m = y == c
        if m.sum() > 2:
            r = spearmanr(a[m], b[m]).statistic
            if np.isfinite(r):
                rhos.append(r)
    return float(np.mean(rhos)) if rhos else float("nan")


# ---------------------------------------------------------------------- base classes
class _BaseScorer(TransformerMixin, BaseEstimator):
    """Common plumbing: embeddings, class bookkeeping, timing, the per-class layout."""

    _parameter_constraints: dict = {
        "backbone": "no_validation",
        "image_size": [Interval(Integral, 8, None, closed="left"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device],
        "memory": "no_validation",
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }
    #: Whether per-class scores are defined for new data (else only for the fitted X).
    _per_class_on_new_data = True

    def _embed(self, X, *, reset: bool) -> np.ndarray:
        if isinstance(self.backbone, str) and self.backbone == "precomputed":
            return validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])
        return extract_embeddings(
            X,
            self.backbone,
            image_size=self.image_size,
            batch_size=self.batch_size,
            device=self.device,
            memory=self.memory,
            verbose=self.verbose,
        )

    def fit(self, X, y) -> "_BaseScorer":
        """Extract embeddings of X and compute every sample's score.

        Parameters
        ----------
        X : images (anything DLCScorer accepts), or (n_samples, n_features) embeddings
            when ``backbone="precomputed"``
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        self._validate_params()
        t0 = time.perf_counter()
        Z = self._embed(X, reset=True)
        t1 = time.perf_counter()
        y = column_or_1d(y, warn=True)
        if len(y) != len(Z):
            raise ValueError(f"X has {len(Z)} samples but y has {len(y)} labels")
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y needs at least 2 classes, got {len(self.classes_)} class")
        self._fit_scores(np.asarray(Z, dtype=np.float64), y_idx)
        self.embedding_time_ = t1 - t0
        self.fit_time_ = time.perf_counter() - t0
        return self

    def fit_transform(self, X, y=None, **fit_params) -> np.ndarray:
        """Fit, then per-class scores of the fitted samples, (n_samples, n_classes)."""
        if y is None:
            raise ValueError(f"{type(self).__name__} needs class labels y")
        self.fit(X, y)
        return self.train_per_class_

    def transform(self, X) -> np.ndarray:
        """Per-class scores, (n_samples, n_classes): column k is the score if y were k."""
        check_is_fitted(self, "classes_")
        if not self._per_class_on_new_data:
            if isinstance(self.backbone, str) and self.backbone == "precomputed":
                # invalid input (NaN, wrong width, 1-d) is reported as such, not as this;
                # images are not embedded just to raise
                self._embed(X, reset=False)
            raise ValueError(
                f"{type(self).__name__} scores are ranks in a greedy order over the "
                "fitted set; use fit_transform(X, y) on the data you prune"
            )
        Z = self._embed(X, reset=False)
        return self._per_class(np.asarray(Z, dtype=np.float64))

    def score_samples(self, X, y) -> np.ndarray:
        """Hardness of each labelled sample (higher = harder / later), (n_samples,)."""
        check_is_fitted(self, "classes_")
        y = column_or_1d(y, warn=True)
        idx = np.searchsorted(self.classes_, y).clip(0, len(self.classes_) - 1)
        if (self.classes_[idx] != y).any():
            raise ValueError("y has labels unseen in fit")
        if not self._per_class_on_new_data:
            Z = self._embed(X, reset=False)
            return self._own_scores(np.asarray(Z, dtype=np.float64), idx)
        return self.transform(X)[np.arange(len(y)), idx]

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "classes_")
        return np.asarray([f"{type(self).__name__.lower()}_{c}" for c in self.classes_], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags


class _TrainedHeadScorer(_BaseScorer):
    """Trains a linear head on the frozen, standardized embedding (the shared part)."""

    _parameter_constraints: dict = {
        **_BaseScorer._parameter_constraints,
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "train_batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_repeats": [Interval(Integral, 1, None, closed="left")],
    }

    def _train(self, Z, y_idx):
        Zs, self.mean_, self.scale_ = _standardize(Z)
        seed0 = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        self.heads_ = np.stack(
            [
                train_linear_head(
                    Zs, y_idx, len(self.classes_), epochs=self._n_epochs(), lr=self.lr,
                    momentum=self.momentum, weight_decay=self.weight_decay,
                    batch_size=self.train_batch_size, seed=seed0 + r,
                )
                for r in range(self.n_repeats)
            ]
        )  # (n_repeats, epochs, K, D + 1)
        return Zs

    def _n_epochs(self) -> int:
        return self.epochs

    def _fit_scores(self, Z, y_idx):
        self._train(Z, y_idx)
        self.train_per_class_ = self._per_class(Z)
        self.scores_ = self.train_per_class_[np.arange(len(y_idx)), y_idx]

    def _probs(self, Zs, epoch: int) -> np.ndarray:
        """Softmax outputs at ``epoch`` (0-based), per repeat: (n_repeats, n, K)."""
        return np.stack([softmax(_logits(Zs, h[epoch]), axis=1) for h in self.heads_])

    def _per_class(self, Z):
        Zs, _, _ = _standardize(Z, self.mean_, self.scale_)
        return self._per_class_std(Zs)


_TRAIN_DOC = """
    backbone : str, torch.nn.Module, Backbone or "precomputed", default="efficientnet_lite0"
        As in :class:`~skdlc.DLCScorer`; ``"precomputed"``: X is already the
        (n_samples, n_features) embedding.
    epochs : int, default=50
        Epochs of head training (the paper's 50).
    lr : float, default=0.01
        SGD learning rate on the standardized embedding (divided by 10 at 50% and 75%).
    momentum : float, default=0.9
    weight_decay : float, default=1e-5
    train_batch_size : int, default=128
    n_repeats : int, default=1
        Independent seeded trainings; scores are averaged (summed for counts).
    image_size, batch_size, device, memory, verbose
        Embedding extraction, as in :class:`~skdlc.DLCScorer`.
    random_state : int, RandomState or None, default=0
        Seeds the head's initialisation and batch order.
"""


def _train_init(self, backbone, epochs, lr, momentum, weight_decay, train_batch_size,
                n_repeats, image_size, batch_size, device, memory, random_state, verbose):
    self.backbone = backbone
    self.epochs = epochs
    self.lr = lr
    self.momentum = momentum
    self.weight_decay = weight_decay
    self.train_batch_size = train_batch_size
    self.n_repeats = n_repeats
    self.image_size = image_size
    self.batch_size = batch_size
    self.device = device
    self.memory = memory
    self.random_state = random_state
    self.verbose = verbose


# ---------------------------------------------------------------------- training-based
class EL2NScorer(_TrainedHeadScorer):
    __doc__ = (
        """EL2N: norm of the error vector ``softmax(f(x)) - onehot(y)`` early in training.

    Paul et al., "Deep Learning on a Data Diet", NeurIPS 2021: scored after a few
    epochs (their epoch 20 of 200), averaged over repeats; keep the highest.

    Parameters
    ----------
    score_epoch : int, default=5
        The epoch (1-based) at which the error is measured; training stops there.
"""
        + _TRAIN_DOC
        + """
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    scores_ : ndarray of shape (n_samples,)
        Scores of the fitted samples (own class).
    heads_ : ndarray of shape (n_repeats, epochs, n_classes, n_features + 1)
        The head after every epoch of every repeat.
    fit_time_ : float
        Seconds for embedding + training + scoring.
    embedding_time_ : float

    Examples
    --------
    >>> import numpy as np
    >>> from skdlc.baselines import EL2NScorer
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(40, 5)); y = np.repeat([0, 1], 20); Z[y == 1] += 1.0
    >>> s = EL2NScorer("precomputed", epochs=10).fit(Z, y)
    >>> s.score_samples(Z, y).shape
    (40,)
    """
    )

    _parameter_constraints: dict = {
        **_TrainedHeadScorer._parameter_constraints,
        "score_epoch": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, backbone="efficientnet_lite0", *, score_epoch=5, epochs=50, lr=0.01,
                 momentum=0.9, weight_decay=1e-5, train_batch_size=128, n_repeats=1,
                 image_size=None, batch_size=64, device="auto", memory=None,
                 random_state=0, verbose=False):
        self.score_epoch = score_epoch
        _train_init(self, backbone, epochs, lr, momentum, weight_decay, train_batch_size,
                    n_repeats, image_size, batch_size, device, memory, random_state, verbose)

    def _n_epochs(self):
        return min(self.score_epoch, self.epochs)

    def _per_class_std(self, Zs):
        p = self._probs(Zs, self._n_epochs() - 1)  # (R, n, K)
        K = p.shape[2]
        # ||p - e_k||^2 = ||p||^2 - 2 p_k + 1
        sq = (p**2).sum(2, keepdims=True) - 2 * p + 1.0
        return np.sqrt(np.maximum(sq, 0)).mean(0).reshape(-1, K)


class GraNdScorer(EL2NScorer):
    __doc__ = (
        """GraNd: norm of the cross-entropy gradient w.r.t. the head's weights and bias.

    For a linear head the gradient is ``(p - onehot(y)) [z, 1]^T``, whose norm is
    ``||p - onehot(y)|| * sqrt(||z||^2 + 1)``. Paul et al. 2021; keep the highest.

    Parameters
    ----------
    score_epoch : int, default=5
"""
        + _TRAIN_DOC
        + """
    Attributes
    ----------
    scores_, heads_, fit_time_, embedding_time_, classes_ : as EL2NScorer

    Examples
    --------
    >>> import numpy as np
    >>> from skdlc.baselines import GraNdScorer
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(40, 5)); y = np.repeat([0, 1], 20)
    >>> GraNdScorer("precomputed", epochs=5).fit_transform(Z, y).shape
    (40, 2)
    """
    )

    def _per_class_std(self, Zs):
        el2n = super()._per_class_std(Zs)
        return el2n * np.sqrt((Zs**2).sum(1) + 1.0)[:, None]


class ForgettingScorer(_TrainedHeadScorer):
    __doc__ = (
        """Forgetting events: how often a sample goes from correct to wrong between epochs.

    Toneva et al., ICLR 2019. Accuracy is read after every epoch; samples never
    learned count as forgotten ``epochs`` times (the paper's convention); counts are
    summed over repeats, with the final loss (scaled to less than one event) breaking
    ties. Keep the highest.

    Parameters
    ----------
"""
        + _TRAIN_DOC
        + """
    Attributes
    ----------
    scores_, heads_, fit_time_, embedding_time_, classes_ : as EL2NScorer

    Examples
    --------
    >>> import numpy as np
    >>> from skdlc.baselines import ForgettingScorer
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(40, 5)); y = np.repeat([0, 1], 20)
    >>> ForgettingScorer("precomputed", epochs=5).fit(Z, y).scores_.shape
    (40,)
    """
    )

    def __init__(self, backbone="efficientnet_lite0", *, epochs=50, lr=0.01, momentum=0.9,
                 weight_decay=1e-5, train_batch_size=128, n_repeats=1, image_size=None,
                 batch_size=64, device="auto", memory=None, random_state=0, verbose=False):
        _train_init(self, backbone, epochs, lr, momentum, weight_decay, train_batch_size,
                    n_repeats, image_size, batch_size, device, memory, random_state, verbose)

    def _per_class_std(self, Zs):
        n, K = len(Zs), len(self.classes_)
        out = np.zeros((n, K))
        for h in self.heads_:
            pred = np.stack([_logits(Zs, s).argmax(1) for s in h])  # (E, n)
            last_loss = -log_softmax(_logits(Zs, h[-1]), axis=1)
            for k in range(K):
                correct = pred == k
                events = (correct[:-1] & ~correct[1:]).sum(0).astype(float)
                events[~correct.any(0)] = len(h)
                out[:, k] += events + 0.5 * last_loss[:, k] / (1.0 + last_loss[:, k])
        return out


class UncertaintyScorer(_TrainedHeadScorer):
    __doc__ = (
        """Uncertainty of the trained head: least confidence, entropy or margin.

    Coleman et al., "Selection via Proxy", ICLR 2020 (as in DeepCore). The scores do
    not depend on the label: every class column holds the same value. Keep the highest.

    Parameters
    ----------
    kind : {"least_confidence", "entropy", "margin"}, default="least_confidence"
        ``1 - max p``; ``-sum p log p``; ``1 - (p_top1 - p_top2)``.
"""
        + _TRAIN_DOC
        + """
    Attributes
    ----------
    scores_, heads_, fit_time_, embedding_time_, classes_ : as EL2NScorer

    Examples
    --------
    >>> import numpy as np
    >>> from skdlc.baselines import UncertaintyScorer
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(40, 5)); y = np.repeat([0, 1], 20)
    >>> s = UncertaintyScorer("precomputed", kind="margin", epochs=5).fit(Z, y)
    >>> bool((s.scores_ >= 0).all() and (s.scores_ <= 1).all())
    True
    """
    )

    _parameter_constraints: dict = {
        **_TrainedHeadScorer._parameter_constraints,
        "kind": [StrOptions({"least_confidence", "entropy", "margin"})],
    }

    def __init__(self, backbone="efficientnet_lite0", *, kind="least_confidence", epochs=50,
                 lr=0.01, momentum=0.9, weight_decay=1e-5, train_batch_size=128, n_repeats=1,
                 image_size=None, batch_size=64, device="auto", memory=None, random_state=0,
                 verbose=False):
        self.kind = kind
        _train_init(self, backbone, epochs, lr, momentum, weight_decay, train_batch_size,
                    n_repeats, image_size, batch_size, device, memory, random_state, verbose)

    def _per_class_std(self, Zs):
        p = self._probs(Zs, self.epochs - 1)
        if self.kind == "least_confidence":
            s = 1.0 - p.max(2)
        elif self.kind == "entropy":
            s = -(p * np.log(np.clip(p, 1e-12, None))).sum(2)
        else:
            top = np.sort(p, axis=2)
            s = 1.0 - (top[..., -1] - top[..., -2])
        s = s.mean(0)
        return np.repeat(s[:, None], len(self.classes_), axis=1)


class SOptScorer(_TrainedHeadScorer):
    __doc__ = (
        """S_Opt: the optimization-based learning complexity (loss summed over epochs).

    The quantity DLC estimates without training (Jiang et al., ICLR 2025, Sec. 3): each
    sample's cross-entropy after every epoch of fine-tuning, summed (averaged over
    repeats). Used to validate DLC (:func:`class_spearman`, ``skdlc validate``).

    Parameters
    ----------
"""
        + _TRAIN_DOC
        + """
    Attributes
    ----------
    scores_, heads_, fit_time_, embedding_time_, classes_ : as EL2NScorer

    Examples
    --------
    >>> import numpy as np
    >>> from skdlc.baselines import SOptScorer
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(40, 5)); y = np.repeat([0, 1], 20); Z[y == 1] += 2.0
    >>> s = SOptScorer("precomputed", epochs=10).fit(Z, y)
    >>> bool(s.scores_.min() > 0)
    True
    """
    )

    def __init__(self, backbone="efficientnet_lite0", *, epochs=50, lr=0.01, momentum=0.9,
                 weight_decay=1e-5, train_batch_size=128, n_repeats=1, image_size=None,
                 batch_size=64, device="auto", memory=None, random_state=0, verbose=False):
        _train_init(self, backbone, epochs, lr, momentum, weight_decay, train_batch_size,
                    n_repeats, image_size, batch_size, device, memory, random_state, verbose)

    def _per_class_std(self, Zs):
        out = np.zeros((len(Zs), len(self.classes_)))
        for h in self.heads_:
            for s in h:
                out += -log_softmax(_logits(Zs, s), axis=1)
        return out / len(self.heads_)


# ---------------------------------------------------------------------- geometric
_GEO_DOC = """
    backbone : str, torch.nn.Module, Backbone or "precomputed", default="efficientnet_lite0"
    image_size, batch_size, device, memory, verbose
        Embedding extraction, as in :class:`~skdlc.DLCScorer`.
"""


class _GeometricScorer(_BaseScorer):
    def __init__(self, backbone="efficientnet_lite0", *, image_size=None, batch_size=64,
                 device="auto", memory=None, random_state=0, verbose=False):
        self.backbone = backbone
        self.image_size = image_size
        self.batch_size = batch_size
        self.device = device
        self.memory = memory
        self.random_state = random_state
        self.verbose = verbose


class _GreedyOrderScorer(_GeometricScorer):
    _per_class_on_new_data = False

    def _fit_scores(self, Z, y_idx):
        self.scores_ = self._own_scores(Z, y_idx)
        self.train_per_class_ = np.repeat(self.scores_[:, None], len(self.classes_), axis=1)

    def _own_scores(self, Z, y_idx):
        ranks = np.empty(len(Z))
        for k in np.unique(y_idx):
            rows = np.flatnonzero(y_idx == k)
            order = self._order(Z[rows])
            ranks[rows[order]] = np.arange(len(rows))
        return ranks


class HerdingScorer(_GreedyOrderScorer):
    __doc__ = (
        """Herding: rank in the greedy order that keeps the running mean near the class mean.

    Welling, ICML 2009 (as in DeepCore). Within each class, step t picks the sample
    that brings the mean of the picked set closest to the class mean. The score is
    the step (0 = first); keep the lowest (``FlexRandSampler(strategy="easy")``).

    Parameters
    ----------
"""
        + _GEO_DOC
        + """    random_state : ignored (deterministic), kept for a uniform interface.

    Attributes
    ----------
    classes_, scores_, fit_time_, embedding_time_

    Examples
    --------
    >>> import numpy as np
    >>> from skdlc.baselines import HerdingScorer
    >>> Z = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [12.0]])
    >>> HerdingScorer("precomputed").fit(Z, [0, 0, 0, 1, 1, 1]).scores_
    array([1., 0., 2., 1., 0., 2.])
    """
    )

    def _order(self, Z):
        from ._selection import herding_order  # shared with the herding strategy

        return herding_order(Z)


class KCenterGreedyScorer(_GreedyOrderScorer):
    __doc__ = (
        """k-Center Greedy: rank in the farthest-first traversal of each class.

    Sener & Savarese, ICLR 2018. Starts from the sample nearest the class mean, then
    repeatedly picks the sample farthest from everything picked. Keep the lowest
    ranks (``strategy="easy"``).

    Parameters
    ----------
"""
        + _GEO_DOC
        + """    random_state : ignored (deterministic start), kept for a uniform interface.

    Attributes
    ----------
    classes_, scores_, fit_time_, embedding_time_

    Examples
    --------
    >>> import numpy as np
    >>> from skdlc.baselines import KCenterGreedyScorer
    >>> Z = np.array([[0.0], [1.0], [2.0], [5.0], [20.0], [21.0]])
    >>> KCenterGreedyScorer("precomputed").fit(Z, [0, 0, 0, 0, 1, 1]).scores_
    array([2., 3., 0., 1., 0., 1.])
    """
    )

    def _order(self, Z):
        sq = (Z**2).sum(1)
        start = int(np.argmin(((Z - Z.mean(0)) ** 2).sum(1)))
        mind = np.maximum(sq + sq[start] - 2 * Z @ Z[start], 0)
        order = [start]
        mind[start] = -1
        for _ in range(len(Z) - 1):
            i = int(np.argmax(mind))
            order.append(i)
            d = np.maximum(sq + sq[i] - 2 * Z @ Z[i], 0)
            mind = np.where(mind < 0, mind, np.minimum(mind, d))
            mind[i] = -1
        return np.asarray(order)


class SSPScorer(_GeometricScorer):
    __doc__ = (
        """Self-supervised prototypes: distance to the nearest k-means centroid.

    Sorscher et al., "Beyond neural scaling laws", NeurIPS 2022: k-means on the
    (L2-normalized) embedding, label-free; far from every prototype = hard. Keep the
    highest (the paper keeps the easiest when little data is kept).

    Parameters
    ----------
    n_clusters : int or None, default=None
        None: one cluster per class.
"""
        + _GEO_DOC
        + """    random_state : int, RandomState or None, default=0
        Seeds k-means.

    Attributes
    ----------
    classes_, scores_, fit_time_, embedding_time_
    centroids_ : ndarray of shape (n_clusters, n_features)

    Examples
    --------
    >>> import numpy as np
    >>> from skdlc.baselines import SSPScorer
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(40, 5)); y = np.repeat([0, 1], 20)
    >>> SSPScorer("precomputed").fit(Z, y).centroids_.shape
    (2, 5)
    """
    )

    _parameter_constraints: dict = {
        **_BaseScorer._parameter_constraints,
        "n_clusters": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(self, backbone="efficientnet_lite0", *, n_clusters=None, image_size=None,
                 batch_size=64, device="auto", memory=None, random_state=0, verbose=False):
        self.n_clusters = n_clusters
        super().__init__(backbone, image_size=image_size, batch_size=batch_size, device=device,
                         memory=memory, random_state=random_state, verbose=verbose)

    @staticmethod
    def _norm(Z):
        return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)

    def _fit_scores(self, Z, y_idx):
        from sklearn.cluster import KMeans

        k = self.n_clusters or len(self.classes_)
        km = KMeans(n_clusters=min(k, len(Z)), n_init=3, random_state=self.random_state)
        km.fit(self._norm(Z))
        self.centroids_ = km.cluster_centers_
        self.train_per_class_ = self._per_class(Z)
        self.scores_ = self.train_per_class_[:, 0].copy()

    def _per_class(self, Z):
        Zn = self._norm(Z)
        d = ((Zn[:, None, :] - self.centroids_[None]) ** 2).sum(2).min(1)
        return np.repeat(np.sqrt(d)[:, None], len(self.classes_), axis=1)


class ModerateScorer(_GeometricScorer):
    __doc__ = (
        """Moderate coreset: Euclidean distance to the class median of the embedding.

    Xia et al., ICLR 2023. The method keeps the samples whose distance is nearest the
    median distance: ``FlexRandSampler(strategy="flexible", gamma=0.5)`` on these
    scores does exactly that.

    Parameters
    ----------
"""
        + _GEO_DOC
        + """    random_state : ignored, kept for a uniform interface.

    Attributes
    ----------
    classes_, scores_, fit_time_, embedding_time_
    medians_ : ndarray of shape (n_classes, n_features)

    Examples
    --------
    >>> import numpy as np
    >>> from skdlc.baselines import ModerateScorer
    >>> Z = np.array([[0.0], [1.0], [5.0], [10.0], [11.0], [12.0]])
    >>> ModerateScorer("precomputed").fit(Z, [0, 0, 0, 1, 1, 1]).scores_
    array([1., 0., 4., 1., 0., 1.])
    """
    )

    def _fit_scores(self, Z, y_idx):
        self.medians_ = np.stack([np.median(Z[y_idx == k], axis=0) for k in range(len(self.classes_))])
        self.train_per_class_ = self._per_class(Z)
        self.scores_ = self.train_per_class_[np.arange(len(Z)), y_idx]

    def _per_class(self, Z):
        d = (Z**2).sum(1)[:, None] - 2 * Z @ self.medians_.T + (self.medians_**2).sum(1)[None]
        return np.sqrt(np.maximum(d, 0))


#: name -> (factory(backbone, random_state), the method's own selection strategy)
TRAINING_BASED = {
    "EL2N": (lambda bb, rs, **kw: EL2NScorer(bb, random_state=rs, **kw), "hard"),
    "GraNd": (lambda bb, rs, **kw: GraNdScorer(bb, random_state=rs, **kw), "hard"),
    "Forgetting": (lambda bb, rs, **kw: ForgettingScorer(bb, random_state=rs, **kw), "hard"),
    "LeastConf": (lambda bb, rs, **kw: UncertaintyScorer(bb, kind="least_confidence", random_state=rs, **kw), "hard"),
    "Entropy": (lambda bb, rs, **kw: UncertaintyScorer(bb, kind="entropy", random_state=rs, **kw), "hard"),
    "Margin": (lambda bb, rs, **kw: UncertaintyScorer(bb, kind="margin", random_state=rs, **kw), "hard"),
}
GEOMETRIC = {
    "Herding": (lambda bb, rs, **kw: HerdingScorer(bb, **kw), "easy"),
    "kCenterGreedy": (lambda bb, rs, **kw: KCenterGreedyScorer(bb, **kw), "easy"),
    "SSP": (lambda bb, rs, **kw: SSPScorer(bb, random_state=rs, **kw), "hard"),
    "Moderate": (lambda bb, rs, **kw: ModerateScorer(bb, **kw), "flexible"),
}
