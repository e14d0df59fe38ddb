"""Choosing FlexRand's ``gamma`` the way the paper does: a cheap linear probe.

The paper tunes ``gamma`` on a 20% validation split: for each candidate in
{0.05, 0.10, ..., 0.95} it prunes the other 80% with FlexRand, trains a cheap linear
classifier on the kept part and measures its accuracy on the validation part. The
winning ``gamma`` is then used to prune *all* the data. :func:`tune_gamma` is that
procedure, on features you already have (the full model's embedding, which
``DLCScorer(embedding=True)`` returns in front of the scores), so no image is read
again.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions, validate_params
from sklearn.utils.validation import column_or_1d
from threadpoolctl import threadpool_limits

from ._sampler import FlexRandSampler
from ._selection import n_to_keep, round_half_up, select_herding

__all__ = [
    "PAPER_GAMMAS",
    "SelectionResult",
    "default_candidates",
    "default_probe",
    "fit_probe",
    "stratified_split",
    "tune_gamma",
    "tune_selection",
]

#: Below this many validation rows in some class (or this many in all), a validation
#: accuracy moves by several points from one draw to the next: the choice is noise.
_MIN_VAL_PER_CLASS = 5
_MIN_VAL_ROWS = 50


def _warn_small_validation(y_val, what: str) -> None:
    _, counts = np.unique(y_val, return_counts=True)
    if counts.size and (counts.min() < _MIN_VAL_PER_CLASS or counts.sum() < _MIN_VAL_ROWS):
        warnings.warn(
            f"{what} holds only {int(counts.sum())} rows ({int(counts.min())} in its "
            "smallest class): validation accuracies this small are mostly noise, so "
            "the choice is unreliable; prefer strategy='random' or more data",
            UserWarning,
            stacklevel=3,
        )

#: The candidates of the paper: 0.05, 0.10, ..., 0.95.
PAPER_GAMMAS = tuple(round(0.05 * i, 2) for i in range(1, 20))

#: Strategies whose selection depends on ``gamma``.
GAMMA_STRATEGIES = ("flexrand", "flexible")


def default_probe():
    """The cheap linear classifier used to compare subsets.

    Standardised features followed by an L2-regularised multinomial logistic
    regression (``C=1``, lbfgs): a stand-in for the paper's linear head trained with
    SGD, fast enough to fit once per candidate ``gamma``.

    Returns
    -------
    estimator : sklearn.pipeline.Pipeline
    """
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))


def fit_probe(estimator, X, y):
    """Fit a clone of ``estimator`` on one subset, quietly and with one BLAS thread.

    The fits are small (one pruned subset each), and multi-threaded BLAS on small
    problems is no faster; on a busy machine it is dozens of times slower (threads
    spin waiting for each other), so each fit runs single-threaded. Convergence
    warnings on tiny subsets are silenced.
    """
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clone(estimator).fit(X, y)


def stratified_split(y, validation_size=0.2, random_state=None):
    """Split row indices into a training and a validation part, class by class.

    Each class ``k`` of ``N_k`` rows sends ``round_half_up(validation_size * N_k)``
    rows, drawn at random, to the validation part, but always leaves at least one
    row in the training part, so every class can still be pruned and learned.
    A class of a single row stays entirely in the training part. Unlike
    :func:`sklearn.model_selection.train_test_split`, tiny classes are therefore fine.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels.
    validation_size : float, default=0.2
        Fraction of each class held out, in ``(0, 1)``.
    random_state : int, RandomState instance or None, default=None
        Draws the held-out rows.

    Returns
    -------
    train, validation : ndarray of int
        Sorted row indices; disjoint, together all rows.

    Examples
    --------
    >>> train, val = stratified_split([0] * 10 + [1] * 5 + [2], random_state=0)
    >>> len(train), len(val)
    (13, 3)
    """
    y = column_or_1d(y)
    rng = check_random_state(random_state)
    _, codes = np.unique(y, return_inverse=True)
    val = []
    for k in range(codes.max() + 1 if codes.size else 0):
        rows = np.flatnonzero(codes == k)
        n_val = min(round_half_up(validation_size * rows.size), rows.size - 1)
        if n_val > 0:
            val.append(rng.choice(rows, size=n_val, replace=False))
    val = np.sort(np.concatenate(val)) if val else np.empty(0, dtype=int)
    train = np.setdiff1d(np.arange(len(y)), val)
    return train, val


def _scores_and_features(X, y, features):
    """Split DLCScorer(embedding=True) output into (what the sampler reads, features)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"X must be 1-d scores or a 2-d array, got shape {X.shape}")
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)} labels")
    n_classes = np.unique(y).size
    if features is None:
        if X.shape[1] <= n_classes:
            raise ValueError(
                "features=None needs X laid out as DLCScorer(embedding=True) output "
                f"(embedding columns, then {n_classes} score columns), but X has only "
                f"{X.shape[1]} columns; pass the probe's features explicitly"
            )
        features = X[:, : X.shape[1] - n_classes]
        X = X[:, X.shape[1] - n_classes :]
    else:
        features = np.asarray(features)
        if features.ndim != 2 or len(features) != len(y):
            raise ValueError(
                f"features must have shape ({len(y)}, n_features), got {features.shape}"
            )
    if features.shape[1] == 0:
        raise ValueError("the probe's features have no columns")
    if not np.isfinite(features).all():
        raise ValueError("the probe's features contain NaN or infinity")
    return X, features


@validate_params(
    {
        "X": ["array-like"],
        "y": ["array-like"],
        "keep_ratio": [Interval(Real, 0, 1, closed="right")],
        "features": ["array-like", None],
        "gammas": ["array-like", None],
        "strategy": [StrOptions(set(GAMMA_STRATEGIES))],
        "validation_size": [Interval(Real, 0, 1, closed="neither")],
        "n_repeats": [Interval(Integral, 1, None, closed="left")],
        "estimator": [None, HasMethods(["fit", "score"])],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    },
    prefer_skip_nested_validation=True,
)
def tune_gamma(
    X,
    y,
    *,
    keep_ratio,
    features=None,
    gammas=None,
    strategy="flexrand",
    validation_size=0.2,
    n_repeats=3,
    estimator=None,
    random_state=None,
    verbose=False,
):
    """Pick FlexRand's ``gamma`` by pruning a training split and probing a validation split.

    The procedure of the paper (Jiang et al., ICLR 2025): hold out
    ``validation_size`` of every class (:func:`stratified_split`); for every
    candidate ``gamma``, prune the remaining training part to ``keep_ratio`` with
    :class:`~skdlc.FlexRandSampler`, fit a cheap linear classifier (``estimator``,
    by default :func:`default_probe`) on the kept rows' ``features`` and measure its
    accuracy on the validation part. FlexRand draws at random, so each candidate is
    scored ``n_repeats`` times with different sampler seeds (the same seeds for every
    candidate) and the mean accuracy decides. The best ``gamma`` is meant to prune the
    *whole* data set afterwards.

    Scores are used as given: compute them once on all the data (DLC needs no
    training, and the scores of the validation rows are never read here).

    Parameters
    ----------
    X : array-like of shape (n_samples,) or (n_samples, n_columns)
        Hardness scores in any layout :class:`~skdlc.FlexRandSampler` reads: one
        score per row, per-class score columns, or the output of
        ``DLCScorer(embedding=True)`` (embedding columns, then one score column per
        class), in which case the embedding serves as ``features``.
    y : array-like of shape (n_samples,)
        Class labels; at least two classes.
    keep_ratio : float
        Fraction of each class that will be kept, in ``(0, 1]``.
    features : array-like of shape (n_samples, n_features), default=None
        What the probe learns from, e.g. the full model's embedding. ``None``: the
        leading columns of ``X`` (``DLCScorer(embedding=True)`` layout).
    gammas : array-like of float, default=None
        Candidates, each in ``(0, 1)``; ``None`` means :data:`PAPER_GAMMAS`
        (0.05, 0.10, ..., 0.95).
    strategy : {"flexrand", "flexible"}, default="flexrand"
        The sampler strategy being tuned (the others do not use ``gamma``).
    validation_size : float, default=0.2
        Fraction of every class held out for validation.
    n_repeats : int, default=3
        Sampler draws per candidate; their mean accuracy decides.
    estimator : classifier or None, default=None
        The probe; cloned for every fit. ``None``: :func:`default_probe`.
    random_state : int, RandomState instance or None, default=None
        Draws the split and the sampler seeds.
    verbose : bool, default=False
        Show a progress bar over the fits.

    Returns
    -------
    result : sklearn.utils.Bunch
        - ``best_gamma`` (float): the candidate with the highest mean validation
          accuracy; ties go to the candidate closest to 0.5, then the smaller one.
        - ``gammas`` (ndarray of shape (n_gammas,)): the candidates.
        - ``accuracy`` (ndarray of shape (n_gammas, n_repeats)): validation accuracy
          of every fit.
        - ``mean_accuracy``, ``std_accuracy`` (ndarray of shape (n_gammas,)).
        - ``random_accuracy`` (ndarray of shape (n_repeats,)): the same probe on a
          random subset of the same size (``strategy="random"``), for reference.
        - ``train_indices``, ``validation_indices`` (ndarray of int).
        - ``n_kept`` (int): rows the probe was trained on, per fit.

    Raises
    ------
    ValueError
        If ``y`` has fewer than two classes, or no class is large enough to give
        a validation row (at the default 0.2, a class needs at least three rows).

    Notes
    -----
    With ``keep_ratio=1`` every candidate keeps everything; the search then returns
    ``best_gamma=0.5`` without fitting anything.

    Examples
    --------
    >>> import numpy as np
    >>> from skdlc.tuning import tune_gamma
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 40)
    >>> features = rng.normal(size=(80, 5)) + y[:, None]
    >>> scores = rng.random(80)
    >>> result = tune_gamma(scores, y, features=features, keep_ratio=0.5,
    ...                     gammas=[0.25, 0.5, 0.75], random_state=0)
    >>> result.best_gamma in (0.25, 0.5, 0.75), result.accuracy.shape
    (True, (3, 3))
    """
    y = column_or_1d(y)
    X, features = _scores_and_features(X, y, features)
    if np.unique(y).size < 2:
        raise ValueError("tuning gamma needs at least two classes in y")
    gammas = np.asarray(PAPER_GAMMAS if gammas is None else gammas, dtype=float).ravel()
    if gammas.size == 0 or not np.all((gammas > 0) & (gammas < 1)):
        raise ValueError(f"every candidate gamma must be in (0, 1), got {gammas.tolist()}")
    rng = check_random_state(random_state)
    train, val = stratified_split(y, validation_size, rng)
    if val.size == 0:
        raise ValueError(
            f"no class is large enough to hold out a validation row ({validation_size:g} "
            "of every class rounds to 0); tuning gamma needs more data, or pick gamma by hand"
        )
    _warn_small_validation(y[val], "the validation part")
    seeds = rng.randint(np.iinfo(np.int32).max, size=n_repeats)
    probe = default_probe() if estimator is None else estimator
    X_tr, y_tr, F_tr = X[train], y[train], features[train]
    F_val, y_val = features[val], y[val]

    fitted: dict[bytes, float] = {}  # subsets repeat across gammas: fit each once

    def accuracy(sampler) -> float:
        idx = sampler.fit(X_tr, y_tr).sample_indices_
        key = idx.tobytes()
        if key not in fitted:
            model = fit_probe(probe, F_tr[idx], y_tr[idx])
            with threadpool_limits(limits=1, user_api="blas"):
                fitted[key] = float(model.score(F_val, y_val))
        return fitted[key]

    acc = np.full((gammas.size, n_repeats), np.nan)
    rand = np.full(n_repeats, np.nan)
    n_kept = int(FlexRandSampler(keep_ratio, strategy="random").fit(X_tr, y_tr).sample_indices_.size)
    if keep_ratio < 1:
        from tqdm.auto import tqdm

        with tqdm(total=(gammas.size + 1) * n_repeats, desc="tuning gamma", unit="fit",
                  disable=not verbose, leave=False) as bar:
            for r, seed in enumerate(seeds):
                rand[r] = accuracy(FlexRandSampler(keep_ratio, strategy="random", random_state=seed))
                bar.update()
                for g, gamma in enumerate(gammas):
                    acc[g, r] = accuracy(
                        FlexRandSampler(keep_ratio, gamma, strategy=strategy, random_state=seed)
                    )
                    bar.update()
        mean = acc.mean(axis=1)
        # distances to 0.5 rounded: abs(0.95 - 0.5) is 0.44999999999999996 in floats,
        # which would make 0.95 "closer" than 0.05 and break the documented tie rule
        best = max(range(gammas.size), key=lambda g: (round(mean[g], 12), -round(abs(gammas[g] - 0.5), 9), -gammas[g]))
        best_gamma = float(gammas[best])
    else:
        mean = np.full(gammas.size, np.nan)
        best_gamma = 0.5
    return Bunch(
        best_gamma=best_gamma,
        gammas=gammas,
        accuracy=acc,
        mean_accuracy=mean,
        std_accuracy=acc.std(axis=1) if keep_ratio < 1 else mean.copy(),
        random_accuracy=rand,
        train_indices=train,
        validation_indices=val,
        n_kept=n_kept,
    )


# ------------------------------------------------------------------ tune_selection
#: How simple each strategy is: the one-standard-error rule prefers lower values.
#: Herding (a representative subset on the embedding) has no parameter and no draw:
#: it is the next simplest after random, ahead of random with a dropped tail (whose
#: tail size is a tuned parameter); herding after a dropped tail ranks with easy and
#: flexible, ahead of FlexRand's gamma.
_COMPLEXITY = {"random": 0, "herding": 1, "easy": 2, "flexible": 2, "flexrand": 3, "bins": 3,
               "hard": 3}
#: Candidate kinds that select on the embedding rather than through FlexRandSampler.
EMBEDDING_STRATEGIES = ("herding",)


def default_candidates() -> list[dict]:
    """The candidate selections :func:`tune_selection` compares by default.

    Random (the reference), random after dropping the hardest 5-30% of each class
    (noise-robust), FlexRand over a gamma grid with and without a dropped tail,
    ``flexible``, ``easy``, and herding (a representative subset on the embedding, per
    class) with and without a dropped hardest tail. Each is a dict of
    :class:`~skdlc.FlexRandSampler` keyword arguments, except ``strategy="herding"``
    (keys ``strategy`` and ``drop_hardest`` only), which selects on the embedding.

    Returns
    -------
    list of dict
    """
    cands: list[dict] = [{"strategy": "random"}]
    cands += [{"strategy": "random", "drop_hardest": q} for q in (0.05, 0.1, 0.2, 0.3)]
    cands += [{"strategy": "flexrand", "gamma": g} for g in (0.1, 0.3, 0.5, 0.7, 0.9)]
    cands += [{"strategy": "flexrand", "gamma": g, "drop_hardest": q}
              for g in (0.3, 0.5) for q in (0.1, 0.2)]
    cands += [{"strategy": "flexible", "gamma": g} for g in (0.3, 0.5, 0.7)]
    cands += [{"strategy": "easy"}]
    cands += [{"strategy": "herding"}]
    cands += [{"strategy": "herding", "drop_hardest": q} for q in (0.05, 0.1, 0.2, 0.3)]
    return cands


def _candidate_name(c: dict) -> str:
    parts = [c["strategy"]]
    if c.get("gamma") is not None and c["strategy"] in GAMMA_STRATEGIES:
        parts.append(f"gamma={c['gamma']:g}")
    if c.get("drop_hardest"):
        parts.append(f"drop_hardest={c['drop_hardest']:g}")
    return " ".join(parts)


def _complexity(c: dict) -> tuple:
    # a dropped tail adds a tier; within a tier herding (parameter-free) comes first
    tier = _COMPLEXITY.get(c["strategy"], 3) + (1 if c.get("drop_hardest") else 0)
    return (tier, float(c.get("drop_hardest") or 0.0),
            0 if c["strategy"] in EMBEDDING_STRATEGIES else 1)


class _LogisticProbe:
    """Multinomial logistic regression (C=0.1) on fixed, pre-projected features (d <= 128).

    A ridge (least-squares) probe was tried first: it is ten times cheaper but it
    systematically prefers hard-leaning subsets (FlexRand gamma 0.9, flexible 0.7) that a
    logistic downstream does not (benchmarks/results/selection.md); the logistic probe
    ranks the candidates as the downstream does and stays cheap on <= 128 dimensions.
    """

    def __init__(self, Z: np.ndarray, y_idx: np.ndarray, C: float = 0.1):
        self.Z, self.y, self.C = Z, y_idx, C

    def accuracy(self, train: np.ndarray, test: np.ndarray, y_test: np.ndarray) -> float:
        if np.unique(self.y[train]).size < 2:
            return float((y_test == self.y[train][0]).mean())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LogisticRegression(C=self.C, max_iter=200, tol=1e-3).fit(
                self.Z[train], self.y[train])
        return float((model.predict(self.Z[test]) == y_test).mean())


def _pca(embedding: np.ndarray, n_components: int = 128, random_state=None) -> np.ndarray:
    """Centred PCA projection of the embedding (label-free, fitted on all rows)."""
    from sklearn.decomposition import PCA

    E = np.asarray(embedding, dtype=np.float64)
    k = min(n_components, E.shape[1], max(1, E.shape[0] - 1))
    with threadpool_limits(limits=1, user_api="blas"):
        return PCA(k, svd_solver="randomized" if k < min(E.shape) // 2 else "full",
                   random_state=random_state).fit_transform(E) if k < E.shape[1] else E - E.mean(0)


def _standardise(Z: np.ndarray) -> np.ndarray:
    sd = Z.std(0)
    return Z / np.where(sd > 1e-12, sd, 1.0)


def _project(embedding: np.ndarray, n_components: int = 128, random_state=None) -> np.ndarray:
    """Standardised PCA projection of the embedding (label-free, fitted on all rows)."""
    return _standardise(_pca(embedding, n_components, random_state))


def _herd(P: np.ndarray, own: np.ndarray, codes: np.ndarray, keep_ratio: float,
          drop_hardest: float) -> np.ndarray:
    """Per-class herding on the rows given: ``n_to_keep`` of each class, sorted indices.

    ``P`` is the *unstandardised* PCA projection: herding follows the class mean in the
    embedding's own geometry (whitening would give the low-variance directions, mostly
    noise, as much weight as the main ones).
    """
    kept = []
    for k in np.unique(codes):
        rows = np.flatnonzero(codes == k)
        picked = select_herding(own[rows], P[rows], n_to_keep(rows.size, keep_ratio),
                                drop_hardest=float(drop_hardest or 0.0))
        kept.append(rows[picked])
    return np.sort(np.concatenate(kept))


from dataclasses import dataclass, field  # noqa: E402  (kept next to its only user)


@dataclass
class SelectionResult:
    """The selection :func:`tune_selection` chose, and how every candidate did.

    Attributes
    ----------
    strategy : str
        The chosen ``FlexRandSampler`` strategy.
    gamma : float or None
        Its gamma (None for strategies that do not use one).
    params : dict
        Keyword arguments for :class:`~skdlc.FlexRandSampler` (besides ``keep_ratio``).
    table : pandas.DataFrame
        One row per candidate: ``candidate``, ``strategy``, ``gamma``,
        ``drop_hardest``, ``complexity``, ``mean``, ``sem``, ``fold_0`` ...,
        ``chosen``.
    rule : str
        The decision rule, in words.
    """

    strategy: str
    gamma: float | None
    params: dict
    table: "object"
    rule: str = field(default="")

    def to_dict(self) -> dict:
        """JSON-ready: ``{"strategy", "gamma", "params", "rule", "table": [rows]}``."""
        rows = [
            {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            for row in self.table.to_dict(orient="records")
        ]
        for row in rows:  # JSON has no NaN
            for k, v in row.items():
                if isinstance(v, float) and not np.isfinite(v):
                    row[k] = None
        return {"strategy": self.strategy, "gamma": self.gamma, "params": dict(self.params),
                "rule": self.rule, "table": rows}

    def select(self, embedding, scores, y, keep_ratio, random_state=None) -> np.ndarray:
        """Apply the chosen candidate to the full data: the indices of the kept rows.

        Parameters
        ----------
        embedding : array-like of shape (n_samples, n_features) or None
            The same embedding given to :func:`tune_selection`; needed by the
            herding candidates (``None`` is accepted for the others).
        scores : array-like of shape (n_samples,) or (n_samples, n_classes)
            Hardness scores, as given to :func:`tune_selection`.
        y : array-like of shape (n_samples,)
        keep_ratio : float in (0, 1]
            Fraction of every class kept (``n_to_keep`` rows per class, at least one).
        random_state : int, RandomState or None
            Seeds the draws of the random and FlexRand candidates (herding is
            deterministic).

        Returns
        -------
        indices : ndarray of int, sorted
        """
        y = column_or_1d(y)
        classes, codes = np.unique(y, return_inverse=True)
        own = _own_scores(scores, codes, classes.size)
        if not (isinstance(keep_ratio, Real) and 0 < keep_ratio <= 1):
            raise ValueError(f"keep_ratio must be a float in (0, 1], got {keep_ratio!r}")
        if self.params.get("strategy") in EMBEDDING_STRATEGIES:
            if embedding is None:
                raise ValueError(f"the chosen selection ({self.params['strategy']}) needs "
                                 "the embedding; got embedding=None")
            E = _check_embedding(embedding, len(y))
            return _herd(_pca(E, random_state=0), own, codes, keep_ratio,
                         self.params.get("drop_hardest", 0.0))
        return FlexRandSampler(keep_ratio, random_state=random_state,
                               **{"gamma": 0.5, **self.params}).fit(
            own[:, None], codes).sample_indices_


def _check_embedding(embedding, n: int) -> np.ndarray:
    E = np.asarray(embedding, dtype=np.float64)
    if E.ndim != 2 or len(E) != n:
        raise ValueError(f"embedding must have shape ({n}, n_features), got {E.shape}")
    if not np.isfinite(E).all():
        raise ValueError("embedding contains NaN or infinity")
    return E


def _own_scores(scores, y_codes: np.ndarray, n_classes: int) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim == 2:
        if s.shape[1] != n_classes:
            raise ValueError(
                f"scores must be 1-d or have one column per class ({n_classes}), "
                f"got shape {s.shape}"
            )
        s = s[np.arange(len(s)), y_codes]
    if s.ndim != 1 or len(s) != len(y_codes):
        raise ValueError(f"scores must have {len(y_codes)} rows, got shape {np.shape(scores)}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinity")
    return s


def _check_candidates(candidates) -> list[dict]:
    out = []
    for c in candidates:
        if not isinstance(c, dict) or "strategy" not in c:
            raise ValueError(f"each candidate must be a dict with a 'strategy' key, got {c!r}")
        c = dict(c)
        if c["strategy"] in EMBEDDING_STRATEGIES:
            extra = set(c) - {"strategy", "drop_hardest"}
            q = c.get("drop_hardest", 0.0)
            if extra or not (isinstance(q, Real) and 0 <= q < 1):
                raise ValueError(
                    f"a {c['strategy']!r} candidate takes only 'drop_hardest' in [0, 1), "
                    f"got {c!r}")
        else:
            # validated by the sampler itself, with its own messages
            FlexRandSampler(0.5, **c)._validate_params()
        out.append(c)
    if not any(c["strategy"] == "random" and not c.get("drop_hardest") for c in out):
        out.insert(0, {"strategy": "random"})  # the reference is always compared
    return out


def tune_selection(embedding, scores, y, keep_ratio, *, cv=5, candidates=None,
                   random_state=None) -> SelectionResult:
    """Choose how to select the kept samples by K-fold cross-validation on the pool.

    For each of ``cv`` stratified folds, the other folds are pruned to ``keep_ratio``
    by every candidate (a :class:`~skdlc.FlexRandSampler` configuration), a logistic
    regression probe (C=0.1) is fitted on the kept rows of the embedding (standardised PCA to at most
    128 dimensions, computed once) and scored on the held-out fold. The candidate
    chosen is the **simplest within one standard error of the best** mean accuracy,
    random selection being the simplest: the default never trades a sure Random for
    a win that is within the folds' noise. Complexity order: ``random`` <
    ``herding`` < ``random`` with a dropped hardest tail (smaller tail first) <
    ``easy`` = ``flexible`` < ``herding`` with a dropped tail < ``flexrand`` <
    ``flexrand`` with a dropped tail. Herding (per class, the greedy order that keeps
    the kept rows' mean on the class mean, in the embedding's PCA) is deterministic and
    has no parameter, hence its place right after random.

    Apply the choice to the full data with :meth:`SelectionResult.select`.

    Only the embedding already computed by the scoring passes is used: no image is
    read again.

    Parameters
    ----------
    embedding : array-like of shape (n_samples, n_features)
        Features the probe learns from, e.g. the full model's embedding
        (``DLCScorer(embedding=True)`` puts it before the score columns).
    scores : array-like of shape (n_samples,) or (n_samples, n_classes)
        Hardness scores (higher is harder); per-class columns in sorted class order
        are read at each row's own class.
    y : array-like of shape (n_samples,)
        Labels (possibly noisy: symmetric noise lowers every candidate's validation
        accuracy alike, so the comparison still ranks them).
    keep_ratio : float in (0, 1]
    cv : int, default=5
        Folds; lowered to the smallest class size when a class is smaller.
    candidates : list of dict or None
        FlexRandSampler keyword arguments per candidate; None: :func:`default_candidates`.
        ``{"strategy": "random"}`` is added when missing.
    random_state : int, RandomState or None
        Folds and the candidates' draws (the same draw seed for every candidate of a
        fold, so the comparison is paired).

    Returns
    -------
    SelectionResult

    Warns
    -----
    UserWarning
        When the folds' validation parts are tiny (under 5 rows of some class or 50
        rows in all), or cross-validation is impossible (then random is returned).

    Examples
    --------
    >>> import numpy as np
    >>> from skdlc.tuning import tune_selection
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1, 2], 60)
    >>> emb = rng.normal(size=(180, 8)) + y[:, None]
    >>> res = tune_selection(emb, rng.random(180), y, 0.5, random_state=0)
    >>> res.strategy in {"random", "flexrand", "flexible", "easy", "herding"}, len(res.table) > 5
    (True, True)
    >>> kept = res.select(emb, rng.random(180), y, 0.5, random_state=0)
    >>> len(kept)
    90
    """
    import pandas as pd
    from sklearn.model_selection import StratifiedKFold

    y = column_or_1d(y)
    classes, codes = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise ValueError(f"tune_selection needs at least two classes in y, got {classes.size}")
    if not (isinstance(keep_ratio, Real) and 0 < keep_ratio <= 1):
        raise ValueError(f"keep_ratio must be a float in (0, 1], got {keep_ratio!r}")
    if not (isinstance(cv, Integral) and cv >= 2):
        raise ValueError(f"cv must be an int >= 2, got {cv!r}")
    E = _check_embedding(embedding, len(y))
    own = _own_scores(scores, codes, classes.size)
    cands = _check_candidates(default_candidates() if candidates is None else candidates)
    rng = check_random_state(random_state)
    n_folds = min(int(cv), int(np.bincount(codes).min()))
    rule = ("simplest candidate within one standard error of the best mean "
            f"{n_folds}-fold accuracy (random is the simplest)")

    rows = [{"candidate": _candidate_name(c), "strategy": c["strategy"],
             "gamma": c.get("gamma") if c["strategy"] in GAMMA_STRATEGIES else None,
             "drop_hardest": float(c.get("drop_hardest") or 0.0),
             "complexity": _complexity(c)[0]} for c in cands]
    if keep_ratio >= 1 or n_folds < 2:
        if n_folds < 2:
            warnings.warn(
                "a class has a single row: cross-validation is impossible; "
                "falling back to random selection", UserWarning, stacklevel=2)
        table = pd.DataFrame(rows).assign(mean=np.nan, sem=np.nan,
                                          chosen=[i == 0 for i in range(len(rows))])
        ref = next(i for i, c in enumerate(cands) if c["strategy"] == "random"
                   and not c.get("drop_hardest"))
        table["chosen"] = [i == ref for i in range(len(rows))]
        return SelectionResult("random", None, {"strategy": "random"}, table,
                               rule + ("; everything is kept" if keep_ratio >= 1 else ""))

    folds = list(StratifiedKFold(n_folds, shuffle=True,
                                 random_state=rng.randint(np.iinfo(np.int32).max)).split(E, codes))
    _warn_small_validation(codes[folds[0][1]], "each cross-validation fold")
    P = _pca(E, random_state=0)
    probe = _LogisticProbe(_standardise(P), codes)
    acc = np.zeros((len(cands), n_folds))
    with threadpool_limits(limits=1, user_api="blas"):
        for f, (tr, va) in enumerate(folds):
            seed = int(rng.randint(np.iinfo(np.int32).max))
            X_tr = own[tr][:, None]
            for i, c in enumerate(cands):
                if c["strategy"] in EMBEDDING_STRATEGIES:
                    kept = _herd(P[tr], own[tr], codes[tr], keep_ratio, c.get("drop_hardest"))
                else:
                    kept = FlexRandSampler(keep_ratio, random_state=seed, **c).fit(
                        X_tr, codes[tr]).sample_indices_
                acc[i, f] = probe.accuracy(tr[kept], va, codes[va])
    mean = acc.mean(1)
    sem = acc.std(1, ddof=1) / np.sqrt(n_folds)
    best = int(np.argmax(mean))
    ok = [i for i in range(len(cands)) if mean[i] >= mean[best] - sem[best] - 1e-12]
    chosen = min(ok, key=lambda i: (_complexity(cands[i]), -mean[i]))
    table = pd.DataFrame(rows)
    table["mean"] = mean
    table["sem"] = sem
    for f in range(n_folds):
        table[f"fold_{f}"] = acc[:, f]
    table["chosen"] = [i == chosen for i in range(len(cands))]
    c = cands[chosen]
    gamma = float(c["gamma"]) if c["strategy"] in GAMMA_STRATEGIES and "gamma" in c else None
    return SelectionResult(c["strategy"], gamma, dict(c), table, rule)
