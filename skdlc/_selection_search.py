"""Comparing selections by cross-validation on the pool, with a cheap linear probe.

One search serves both tuners: :class:`skdlc.SelectionSampler` (every candidate
strategy, K folds, the one-standard-error rule of sklearn's "balance model complexity
and cross-validated score" example) and :func:`skdlc.tune_gamma` (the paper's gamma
grid on one 80/20 split). Each candidate is a :class:`FlexRandSampler` setting that
prunes a fold's training part; the probe (the same for both tuners) is fitted on the
kept rows of the fold's projection of the embedding (fitted on the training part
only) and scored on the held-out part. The results have sklearn's ``cv_results_``
layout.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

__all__ = [
    "EMBEDDING_STRATEGIES",
    "candidate_name",
    "complexity",
    "default_candidates",
    "default_probe",
    "fold_projection",
    "one_standard_error",
    "run_search",
]

#: How simple each strategy is: the one-standard-error rule prefers lower values.
#: Herding has no parameter and no draw: the next simplest after random, ahead of
#: random with a dropped tail (whose tail size is a tuned parameter).
_TIER = {"random": 0, "herding": 1, "easy": 2, "flexible": 2, "flexrand": 3, "bins": 3, "hard": 3}
#: Strategies that read the embedding rather than the scores.
EMBEDDING_STRATEGIES = ("herding",)
#: Strategies whose selection depends on ``gamma``.
GAMMA_STRATEGIES = ("flexrand", "flexible")


def default_candidates() -> list[dict]:
    """The candidate selections :class:`~skdlc.SelectionSampler` compares by default.

    Random (the reference), random after dropping the hardest 5-30% of each class
    (noise-robust), FlexRand over a gamma grid with and without a dropped tail,
    ``flexible``, ``easy``, and herding with and without a dropped hardest tail: 23
    :class:`~skdlc.FlexRandSampler` settings (dicts of its keyword arguments).

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


def candidate_name(c: dict) -> str:
    """``"flexrand gamma=0.3 drop_hardest=0.1"``: a candidate in words."""
    parts = [c["strategy"]]
    if c.get("gamma") is not None and c["strategy"] in GAMMA_STRATEGIES:
        parts.append(f"gamma={c['gamma']:g}")
    if c.get("drop_hardest"):
        parts.append(f"drop_hardest={c['drop_hardest']:g}")
    return " ".join(parts)


def complexity(c: dict) -> tuple:
    """Sort key: simpler first. A dropped tail adds a tier; herding first within a tier."""
    tier = _TIER.get(c["strategy"], 3) + (1 if c.get("drop_hardest") else 0)
    return (tier, float(c.get("drop_hardest") or 0.0),
            0 if c["strategy"] in EMBEDDING_STRATEGIES else 1)


def default_probe(C: float = 0.1):
    """The cheap linear classifier that compares subsets (both tuners use it).

    A multinomial logistic regression with ``C=0.1``, fitted on the kept rows of the
    fold's projection (:func:`fold_projection`: the embedding's PCA to at most 128
    dimensions, standardised, fitted on the fold's training rows). A ridge probe was
    tried first: ten times cheaper, but it prefers hard-leaning subsets that a logistic
    downstream does not (benchmarks/results/selection.md).

    Returns
    -------
    estimator : sklearn.linear_model.LogisticRegression
    """
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=200, tol=1e-3)


def fold_projection(E, train, n_components: int = 128):
    """PCA of the embedding fitted on a fold's training rows, applied to every row.

    Returns ``(P, scale)``: the unstandardised projection (float32; herding follows the
    class mean in this geometry) and the training rows' standard deviation per
    component (the probe reads ``P / scale``). Label-free; the held-out rows never
    enter the fit.
    """
    from ._selection import _Projection

    P = _Projection(E, train, n_components).transform(E)
    sd = P[train].std(0)
    return P, np.where(sd > 1e-12, sd, 1.0).astype(np.float32)


def _probe_accuracy(probe, Z_train, y_train, Z_test, y_test) -> float:
    from sklearn.base import clone

    if np.unique(y_train).size < 2:  # a subset of one class: predict it
        return float(np.mean(y_test == y_train[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = clone(default_probe() if probe is None else probe).fit(Z_train, y_train)
    return float(model.score(Z_test, y_test))


def one_standard_error(cv_results: dict, candidates: list[dict]) -> int:
    """Index of the simplest candidate whose mean is within one standard error of the best.

    The ``refit=`` rule of sklearn's "balance model complexity and cross-validated
    score" example, with :func:`complexity` as the order (random is the simplest).
    """
    mean = np.asarray(cv_results["mean_test_score"], dtype=float)
    n_folds = sum(1 for k in cv_results if k.startswith("split") and k.endswith("_test_score"))
    sem = np.asarray(cv_results["std_test_score"], dtype=float) * np.sqrt(n_folds / max(n_folds - 1, 1))
    sem /= np.sqrt(max(n_folds, 1))
    best = int(np.nanargmax(mean))
    ok = [i for i in range(len(mean)) if mean[i] >= mean[best] - sem[best] - 1e-12]
    return min(ok, key=lambda i: (complexity(candidates[i]), -mean[i]))


def run_search(X, codes, n_classes: int, keep_ratio: float, candidates: list[dict], cv, *,
               probe=None, random_state: int = 0, score_columns: str = "per_class") -> dict:
    """Cross-validate sampler candidates: a ``cv_results_``-style dict, one entry per candidate.

    ``X`` is ``[embedding | per-class scores]`` (``score_columns="own_class"``:
    ``[embedding | own-class score]``); ``codes`` the class index of each row (in
    ``range(n_classes)``; classes may be absent); ``cv`` a list of (train, test) index
    pairs. Per fold the embedding is projected once (:func:`fold_projection`, fitted on
    the training rows); every candidate (a :class:`FlexRandSampler` setting, drawing
    with the same seed, so the comparison is paired) prunes the training rows,
    ``probe`` is fitted on the kept rows' standardised projection and scored on the
    held-out rows. One projection per fold rather than per candidate: refitting it in
    a GridSearchCV pipeline for each of the 23 candidates made the search 20 times
    slower.
    """
    from ._layout import own_class, split_columns
    from ._sampler import FlexRandSampler

    emb, block = split_columns(X, n_classes, score_columns=score_columns)
    # each row's own score, read once: the candidates see [projection | score], which
    # holds whatever classes a fold's training rows lack
    own = own_class(block, codes).astype(np.float32)[:, None]
    acc = np.zeros((len(candidates), len(cv)))
    with threadpool_limits(limits=1, user_api="blas"):
        for f, (tr, te) in enumerate(cv):
            P, scale = fold_projection(emb, tr)
            Xf = np.hstack([P, own])
            Z = P / scale
            for i, c in enumerate(candidates):
                kept = tr[FlexRandSampler(keep_ratio, random_state=random_state,
                                          score_columns="own_class", **c).fit(
                    Xf[tr], codes[tr]).sample_indices_]
                acc[i, f] = _probe_accuracy(probe, Z[kept], codes[kept], Z[te], codes[te])
    res = {f"split{f}_test_score": acc[:, f] for f in range(len(cv))}
    res.update(params=list(candidates), mean_test_score=acc.mean(1), std_test_score=acc.std(1))
    return res
