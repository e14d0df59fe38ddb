"""Choosing a selection by a cheap linear probe: the paper's gamma search and its pieces.

The paper tunes ``gamma`` on a 20% validation split: for each candidate in
{0.05, 0.10, ..., 0.95} it prunes the other 80% with FlexRand, trains a cheap linear
classifier on the kept part and measures its accuracy on the validation part. The
winning ``gamma`` is then used to prune *all* the data. :func:`tune_gamma` is that
procedure, on features you already have (the full model's embedding, which
``DLCScorer(embedding=True)`` returns in front of the scores), so no image is read
again. It runs the same search and the same probe (:func:`default_probe`) as
:class:`skdlc.SelectionSampler`, which compares every strategy by K-fold
cross-validation and is skdlc's default.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions, validate_params
from sklearn.utils.validation import column_or_1d
from threadpoolctl import threadpool_limits

from ._layout import own_class, split_columns
from ._sampler import FlexRandSampler
from ._selection import round_half_up
from ._selection_search import GAMMA_STRATEGIES, default_candidates, default_probe, run_search  # noqa: F401

__all__ = [
    "PAPER_GAMMAS",
    "default_candidates",
    "default_probe",
    "fit_probe",
    "stratified_split",
    "tune_gamma",
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


def _layout_for_search(X, y_codes, n_classes, features) -> np.ndarray:
    """``[features | own-class score]`` (``score_columns="own_class"``), what the search's
    sampler and probe read."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"X must be 1-d scores or a 2-d array, got shape {X.shape}")
    if len(X) != len(y_codes):
        raise ValueError(f"X has {len(X)} rows but y has {len(y_codes)} labels")
    emb, per_class = split_columns(X, n_classes)
    if features is None and emb is None:
        raise ValueError(
            "features=None needs X laid out as DLCScorer(embedding=True) output (embedding "
            f"columns, then {n_classes} score columns), but X has only {X.shape[1]} "
            "column(s); pass the probe's features explicitly")
    if features is not None:
        emb = np.asarray(features)
        if emb.ndim != 2 or len(emb) != len(y_codes):
            raise ValueError(f"features must have shape ({len(y_codes)}, n_features), got {emb.shape}")
    if emb.shape[1] == 0:
        raise ValueError("the probe's features have no columns")
    if not np.isfinite(emb).all():
        raise ValueError("the probe's features contain NaN or infinity")
    own = own_class(per_class, y_codes)
    if not np.isfinite(own).all():
        raise ValueError("scores contain NaN or infinity")
    return np.column_stack([emb, own])


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
    classes, codes = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise ValueError("tuning gamma needs at least two classes in y")
    X = _layout_for_search(X, codes, classes.size, features)
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
    n_kept = int(FlexRandSampler(keep_ratio, strategy="random", score_columns="own_class")
                 .fit(X[train], codes[train]).sample_indices_.size)
    acc = np.full((gammas.size, n_repeats), np.nan)
    rand = np.full(n_repeats, np.nan)
    if keep_ratio < 1:
        from tqdm.auto import tqdm

        cands = [{"strategy": "random"}] + [{"strategy": strategy, "gamma": float(g)} for g in gammas]
        # one split; each repeat is the same search with another sampler seed
        for r in tqdm(range(n_repeats), desc="tuning gamma", unit="repeat", disable=not verbose, leave=False):
            res = run_search(X, codes, classes.size, keep_ratio, cands, [(train, val)],
                             probe=estimator, random_state=int(seeds[r]), score_columns="own_class")
            rand[r] = res["mean_test_score"][0]
            acc[:, r] = res["mean_test_score"][1:]
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
