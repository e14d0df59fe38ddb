"""FlexRandSampler: an imbalanced-learn sampler that prunes data by hardness score."""

from numbers import Integral, Real

import numpy as np
from imblearn.base import BaseSampler
from imblearn.utils import check_target_type
from scipy import sparse
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import validate_data

from ._layout import SCORE_COLUMNS, own_class, split_columns
from ._selection import SAMPLER_STRATEGIES, herd_per_group, pca_projection, select_per_group

__all__ = ["FlexRandSampler", "SelectingSampler"]


class SelectingSampler(BaseSampler):
    """Base of skdlc's samplers: ``_select(X, y)`` picks the rows; the rest is shared.

    ``fit`` selects without copying the kept rows (``sample_indices_`` names them);
    ``fit_resample`` also returns them. Every class is pruned (imbalanced-learn's
    "clean-sampling" kind), by ``keep_ratio`` rather than a ``sampling_strategy``.
    """

    # Removes samples without a per-class target dict: imbalanced-learn's
    # "clean-sampling" kind (under-sampling would require a sampling_strategy dict).
    _sampling_type = "clean-sampling"

    @property
    def sampling_strategy(self):
        # BaseSampler validates this before `_fit_resample`; not a parameter here: the
        # per-class counts come from `keep_ratio`, and every class is pruned.
        return "all"

    def fit(self, X, y):
        """Select the rows to keep; see ``fit_resample``.

        Unlike ``fit_resample``, no copy of the kept rows is made (``sample_indices_``
        says which they are): what a large data set needs.

        Parameters
        ----------
        X : {array-like, dataframe, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : object
            The fitted sampler.
        """
        self._validate_params()
        X, y, _ = self._check_X_y(X, y)
        self._select(X, y)
        return self

    def _check_X_y(self, X, y, accept_sparse=None):
        # Like BaseSampler's, but non-finite values pass here: each sampler checks the
        # entries it reads (scores, embedding) with a message that names them.
        y, binarize_y = check_target_type(y, indicate_one_vs_all=True)
        X, y = validate_data(self, X=X, y=y, reset=True, accept_sparse=["csr", "csc"],
                             ensure_all_finite=False)
        return X, y, binarize_y

    def _fit_resample(self, X, y):
        idx = self._select(X, y)
        return _safe_indexing(X, idx), _safe_indexing(y, idx)

    def _select(self, X, y) -> np.ndarray:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.sampler_tags.sample_indices = True
        return tags


class FlexRandSampler(SelectingSampler):
    """Keep a per-class fraction of the samples, chosen from their hardness scores.

    The sampler reads one hardness score per row from ``X`` (higher is harder), then,
    class by class, keeps ``M_k = max(1, round_half_up(keep_ratio * N_k))`` of the
    ``N_k`` rows of class ``k`` with the chosen ``strategy`` (FlexRand by default).
    Kept rows are returned unchanged, all columns included, so in an
    :class:`imblearn.pipeline.Pipeline` the estimator after it is fitted on the full
    rows of the pruned subset; like every sampler, it is skipped at predict time.

    **Where the scores come from.** If ``X`` has one column, that column is the score.
    Otherwise the last ``n_classes`` columns of ``X`` are per-class scores
    (``n_classes = len(np.unique(y))``; column ``j`` of that block belongs to the
    ``j``-th class of ``np.unique(y)``) and the score of row ``i`` is the entry of its
    own class. That is the output layout of skdlc's ``DLCScorer``: optionally the full
    model's embedding first, then one score column per class in sorted class order.
    ``X`` with more than one but fewer than ``n_classes`` columns is an error. With
    ``score_columns="own_class"``, the last column of ``X`` is every row's score (its
    own class's entry, :func:`skdlc.own_class_scores`) and the columns before it are
    the embedding: with many classes, an input ``n_classes`` times smaller. Only
    the score entries must be finite; other columns may hold any float (NaN included)
    and are passed through untouched.

    **Rounding.** ``round_half_up(x) = floor(x + 0.5)`` (after rounding ``x`` to 9
    decimals to absorb float error), not Python's round-half-to-even.

    Parameters
    ----------
    keep_ratio : float, default=0.5
        Fraction of each class to keep, in ``(0, 1]``. At least one sample of every
        class is kept; ``1.0`` keeps everything.

    gamma : float or "auto", default=0.5
        Quantile, in ``(0, 1)``, of the split between the easy interval (the
        ``round_half_up(gamma * N_k)`` lowest-scored samples of the class) and the
        hard interval (the rest). Small ``gamma`` favours easy samples, large
        ``gamma`` hard ones. Used by ``"flexrand"`` and ``"flexible"``. ``"auto"``:
        the paper's procedure, :func:`skdlc.tune_gamma` (0.05, ..., 0.95 on a
        stratified 80/20 split, a linear probe on the embedding columns of ``X``,
        which must be ``DLCScorer(embedding=True)`` output); the result is in
        ``gamma_`` and ``gamma_search_``.

    strategy : {"flexrand", "random", "easy", "hard", "flexible", "bins", "herding"}, \
            default="flexrand"
        How the ``M_k`` samples of each class are chosen:

        - ``"flexrand"``: ``M/2`` uniformly at random from each interval (the odd
          sample goes to either with probability 1/2; an interval that is too small
          gives all it has and the other makes up the rest);
        - ``"random"``: uniformly at random, scores ignored (the baseline);
        - ``"easy"`` (T-E): the ``M`` lowest scores;
        - ``"hard"`` (T-H): the ``M`` highest scores;
        - ``"flexible"`` (T-F): deterministic FlexRand, the ``ceil(M/2)`` hardest of
          the easy interval and the ``floor(M/2)`` easiest of the hard interval,
          i.e. the samples nearest the split;
        - ``"bins"``: Dataset-Quantization style, ``n_bins`` equal-count score bins
          and ``M / n_bins`` at random from each;
        - ``"herding"``: a representative subset, not a hardness-based one: per class,
          the greedy order that keeps the kept rows' mean on the class mean (Welling
          2009), in a PCA projection (at most 128 dimensions) of the embedding columns
          of ``X``, fitted on the rows given. Needs ``DLCScorer(embedding=True)``
          output; deterministic. With ``drop_hardest``, the class's hardest tail is
          left out first.

        Ties in score are broken by row order (a stable sort); see
        :func:`skdlc.select_from_scores` for the exact rules.

    n_bins : int, default=10
        Number of bins of the ``"bins"`` strategy, at least 1.

    drop_hardest : float, default=0.0
        Fraction, in ``[0, 1)``, of each class's hardest samples left out before the
        strategy chooses (never so many that fewer than ``M_k`` remain). With noisy
        labels the hardest samples are mostly mislabelled ones: ``strategy="random",
        drop_hardest=0.2`` is random selection among the 80% easiest of each class.
        :class:`~skdlc.SelectionSampler` chooses it by cross-validation.

    random_state : int, RandomState instance or None, default=None
        Seeds the random strategies. Each class gets its own generator, spawned from
        one seed drawn from ``random_state``, so a fixed int gives the same subset on
        every call.

    score_columns : {"per_class", "own_class"}, default="per_class"
        How ``X`` ends. ``"per_class"``: one score column per class, as
        ``DLCScorer.transform`` returns (or a single score column). ``"own_class"``:
        one last column holding each row's own-class score, after the embedding
        (``np.column_stack([embedding, own_class_scores(Xt, classes, y)])``).

    Attributes
    ----------
    sample_indices_ : ndarray of shape (n_kept,)
        Sorted indices of the kept rows of ``X``.

    scores_ : ndarray of shape (n_samples,)
        The score of every input row, as read from ``X``.

    n_kept_per_class_ : dict
        Class label -> number of rows kept of that class (``M_k``).

    gamma_ : float
        The gamma used (``gamma``, or the one ``gamma="auto"`` chose).

    gamma_search_ : sklearn.utils.Bunch or None
        With ``gamma="auto"``: what :func:`skdlc.tune_gamma` returned; else None.

    sampling_strategy_ : dict
        Same content as ``n_kept_per_class_`` (imbalanced-learn's name for the number
        of samples kept per class).

    n_features_in_ : int
        Number of columns of ``X`` seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the columns of ``X`` seen during fit. Defined only when ``X`` has
        feature names that are all strings.

    See Also
    --------
    skdlc.select_from_scores : The selection rules on one group's scores.
    imblearn.under_sampling.RandomUnderSampler : Random under-sampling to balance
        classes (this sampler keeps class proportions instead).

    Notes
    -----
    ``fit`` does the whole selection (it is ``fit_resample`` without returning the
    data). Like every imbalanced-learn sampler, ``y`` must hold at least two classes;
    to prune a single group (e.g. instruction data, one "class"), call
    :func:`skdlc.select_from_scores` on its scores directly.

    Method: Jiang et al., "Exploring Learning Complexity for Efficient Downstream
    Dataset Pruning", ICLR 2025 (FlexRand).

    Examples
    --------
    >>> import numpy as np
    >>> from skdlc import FlexRandSampler
    >>> scores = np.array([[0.1], [0.9], [0.5], [0.3], [0.2], [0.8], [0.7], [0.4]])
    >>> y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    >>> sampler = FlexRandSampler(keep_ratio=0.5, strategy="easy")
    >>> X_res, y_res = sampler.fit_resample(scores, y)
    >>> sampler.sample_indices_
    array([0, 3, 4, 7])
    >>> sampler.n_kept_per_class_
    {0: 2, 1: 2}

    DLC layout: embedding columns first, then one score column per class.

    >>> X = np.hstack([np.ones((8, 3)), scores, 1.0 - scores])
    >>> sampler = FlexRandSampler(keep_ratio=0.5, strategy="hard").fit(X, y)
    >>> sampler.sample_indices_
    array([1, 2, 4, 7])
    >>> X_res, y_res = FlexRandSampler(random_state=0).fit_resample(X, y)
    >>> X_res.shape
    (4, 5)
    """

    _parameter_constraints: dict = {
        "keep_ratio": [Interval(Real, 0, 1, closed="right")],
        "gamma": [Interval(Real, 0, 1, closed="neither"), StrOptions({"auto"})],
        "strategy": [StrOptions(set(SAMPLER_STRATEGIES))],
        "n_bins": [Interval(Integral, 1, None, closed="left")],
        "drop_hardest": [Interval(Real, 0, 1, closed="left")],
        "random_state": ["random_state"],
        "score_columns": [StrOptions(set(SCORE_COLUMNS))],
    }

    def __init__(
        self, keep_ratio=0.5, gamma=0.5, *, strategy="flexrand", n_bins=10,
        drop_hardest=0.0, random_state=None, score_columns="per_class",
    ):
        self.keep_ratio = keep_ratio
        self.gamma = gamma
        self.strategy = strategy
        self.n_bins = n_bins
        self.drop_hardest = drop_hardest
        self.random_state = random_state
        self.score_columns = score_columns

    def _read_scores(self, X, y_codes, n_classes):
        X = X.toarray() if sparse.issparse(X) else np.asarray(X)
        emb, per_class = split_columns(X, n_classes, need_embedding=self.strategy == "herding",
                                       score_columns=self.score_columns)
        try:
            scores = own_class(per_class, y_codes).astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"Scores in X must be numeric: {exc}") from exc
        bad = ~np.isfinite(scores)
        if bad.any():
            raise ValueError(
                f"{int(bad.sum())} of {scores.size} rows have a non-finite score (NaN "
                f"or inf), e.g. row {int(np.flatnonzero(bad)[0])}; every row needs a "
                "finite score."
            )
        return scores, emb


    def _select(self, X, y):
        classes, y_codes = np.unique(y, return_inverse=True)
        y_codes = y_codes.ravel()
        scores, emb = self._read_scores(X, y_codes, classes.size)

        self.gamma_, self.gamma_search_ = self.gamma, None
        if self.gamma == "auto":
            self.gamma_search_ = self._tune_gamma(scores, emb, y)
            self.gamma_ = self.gamma_search_.best_gamma
        if self.strategy == "herding":
            idx, counts = herd_per_group(scores, pca_projection(emb), y_codes, classes.size,
                                         self.keep_ratio, drop_hardest=self.drop_hardest)
        else:
            random_state = check_random_state(self.random_state)
            seed = int(random_state.randint(np.iinfo(np.int32).max))
            idx, counts = select_per_group(scores, y_codes, classes.size, self.keep_ratio,
                                           self.strategy, self.gamma_, seed, n_bins=self.n_bins,
                                           drop_hardest=self.drop_hardest)
        n_kept = dict(zip(classes.tolist(), counts))
        self.sample_indices_ = idx
        self.scores_ = scores
        self.n_kept_per_class_ = n_kept
        self.sampling_strategy_ = dict(n_kept)
        return idx

    def _tune_gamma(self, scores, emb, y):
        from .tuning import GAMMA_STRATEGIES, tune_gamma

        if self.strategy not in GAMMA_STRATEGIES:
            raise ValueError(f"gamma='auto' tunes the split of {GAMMA_STRATEGIES}; strategy "
                             f"{self.strategy!r} does not use gamma")
        # the scores already read, whatever the layout; the embedding is the probe's input
        return tune_gamma(scores, y, features=emb, keep_ratio=self.keep_ratio,
                          strategy=self.strategy, random_state=self.random_state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # outside the score entries, which are checked
        return tags
