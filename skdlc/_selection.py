"""Selection rules: which samples of one class to keep, given their hardness scores.

Pure numpy. Every function works on the scores of ONE class (or of one group, e.g. a
whole instruction data set) and returns exactly ``n_keep`` distinct indices into
``scores``, sorted ascending. :class:`skdlc._sampler.FlexRandSampler` calls
:func:`select` once per class.

Conventions shared by all strategies
------------------------------------
Rank
    Samples are ordered by ``(score, index)``: ascending score, ties broken by the
    original position (a stable sort). "Easiest" means lowest rank, "hardest" means
    highest rank. Every tie is therefore resolved deterministically.
Easy / hard split (``gamma``)
    The easy interval is the ``n_easy = round_half_up(gamma * N)`` lowest-ranked
    samples, the hard interval the other ``N - n_easy``. This is the paper's
    ``S < S_gamma`` / ``S >= S_gamma`` split made by rank instead of by value, so that
    ties at the quantile ``S_gamma`` cannot make one interval larger than
    ``gamma * N``; tied samples that straddle the split are assigned by position.
    ``n_easy`` may be 0 or ``N`` for extreme ``gamma`` and tiny classes; the shortfall
    rule below then takes everything from the other interval.
Half shares and shortfall
    ``flexrand`` and ``flexible`` want ``M / 2`` samples from each interval. When one
    interval holds fewer samples than its share, it gives all it has and the other
    interval supplies the rest, so exactly ``M`` are kept.
Rounding
    ``round_half_up(x) = floor(x + 0.5)`` after rounding ``x`` to 9 decimals (so that
    ``0.29 * 50 = 14.499999999999998`` counts as 14.5 and gives 15). Python's built-in
    ``round`` rounds half to even, which is not what the method's "round" means.
"""

import math
from numbers import Integral, Real

import numpy as np

__all__ = [
    "STRATEGIES",
    "round_half_up",
    "n_to_keep",
    "rank_order",
    "n_easy",
    "select",
    "select_flexrand",
    "select_random",
    "select_easy",
    "select_hard",
    "select_flexible",
    "select_bins",
    "drop_hardest_tail",
    "herding_order",
    "select_herding",
]

#: Names accepted by :func:`select`, default first.
STRATEGIES = ("flexrand", "random", "easy", "hard", "flexible", "bins")
#: Every strategy of the sampler family: those of :func:`select`, and ``"herding"``,
#: which reads the embedding (:func:`herd_per_group`).
SAMPLER_STRATEGIES = STRATEGIES + ("herding",)


# --------------------------------------------------------------------------- helpers
def round_half_up(x):
    """Round a non-negative real half up (``2.5 -> 3``), absorbing float error.

    Parameters
    ----------
    x : float
        Value to round.

    Returns
    -------
    n : int
        ``floor(round(x, 9) + 0.5)``.
    """
    return int(math.floor(round(float(x), 9) + 0.5))


def n_to_keep(n_samples, keep_ratio):
    """Number of samples to keep from a group of ``n_samples``: at least one.

    Parameters
    ----------
    n_samples : int
        Size of the group (class), at least 1.
    keep_ratio : float
        Fraction to keep, in ``(0, 1]``.

    Returns
    -------
    n_keep : int
        ``min(n_samples, max(1, round_half_up(keep_ratio * n_samples)))``.
    """
    return min(int(n_samples), max(1, round_half_up(keep_ratio * n_samples)))


def rank_order(scores):
    """Indices of ``scores`` from easiest to hardest (stable: ties by position).

    Parameters
    ----------
    scores : ndarray of shape (n_samples,)
        Hardness scores, higher is harder.

    Returns
    -------
    order : ndarray of shape (n_samples,)
        ``order[0]`` is the easiest sample, ``order[-1]`` the hardest.
    """
    return np.argsort(scores, kind="stable")


def n_easy(n_samples, gamma):
    """Size of the easy interval: ``round_half_up(gamma * n_samples)``.

    Parameters
    ----------
    n_samples : int
        Number of samples in the group.
    gamma : float
        Quantile of the split, in ``(0, 1)``.

    Returns
    -------
    n_easy : int
        Between 0 and ``n_samples``.
    """
    return min(int(n_samples), round_half_up(gamma * n_samples))


def _shares(n_keep, n_lo, n_hi, lo_first):
    """Split ``n_keep`` into half shares from two intervals of sizes ``n_lo``, ``n_hi``.

    ``lo_first`` says whether the low interval gets ``ceil(M/2)`` (True) or
    ``floor(M/2)`` (False) before the shortfall rule is applied.
    """
    want_lo = (n_keep + 1) // 2 if lo_first else n_keep // 2
    take_lo = min(want_lo, n_lo)
    take_hi = n_keep - take_lo
    if take_hi > n_hi:  # the hard interval is short: the easy one makes up for it
        take_hi = n_hi
        take_lo = n_keep - n_hi
    return take_lo, take_hi


def _check_rng(rng):
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    raise TypeError(
        f"rng must be a numpy.random.Generator or None, got {type(rng).__name__}."
    )


def _check_gamma(gamma):
    if (
        not isinstance(gamma, Real)
        or isinstance(gamma, bool)
        or not (0.0 < float(gamma) < 1.0)
    ):
        raise ValueError(f"gamma must be a real number in (0, 1), got {gamma!r}.")
    return float(gamma)


def _check_inputs(scores, n_keep):
    """Validate ``scores`` (1-D, finite, numeric) and ``n_keep`` (int in [0, N])."""
    scores = np.asarray(scores)
    if scores.ndim != 1:
        raise ValueError(
            "scores must be a 1-D array (one class's scores), "
            f"got shape {scores.shape}."
        )
    if scores.dtype.kind not in "biuf":
        raise ValueError(f"scores must be numeric, got dtype {scores.dtype}.")
    scores = scores.astype(np.float64, copy=False)
    n_bad = int(np.count_nonzero(~np.isfinite(scores)))
    if n_bad:
        raise ValueError(
            f"scores contain {n_bad} non-finite value(s) (NaN or inf) out of "
            f"{scores.size}; every sample needs a finite score."
        )
    if not isinstance(n_keep, Integral) or isinstance(n_keep, bool):
        raise TypeError(f"n_keep must be an integer, got {type(n_keep).__name__}.")
    n_keep = int(n_keep)
    if not 0 <= n_keep <= scores.size:
        raise ValueError(
            f"n_keep must be between 0 and the number of scores ({scores.size}), "
            f"got {n_keep}."
        )
    return scores, n_keep


def _done(indices):
    return np.sort(np.asarray(indices, dtype=np.intp))


def drop_hardest_tail(scores, n_keep, drop_hardest):
    """Indices (sorted) of the samples left after removing the hardest tail.

    Removes the ``min(round_half_up(drop_hardest * N), N - n_keep)`` highest-ranked
    samples, so at least ``n_keep`` remain.

    Examples
    --------
    >>> drop_hardest_tail(np.array([0.9, 0.1, 0.5, 0.3]), 2, 0.25)
    array([1, 2, 3])
    """
    scores, n_keep = _check_inputs(scores, n_keep)
    if (not isinstance(drop_hardest, Real) or isinstance(drop_hardest, bool)
            or not 0.0 <= float(drop_hardest) < 1.0):
        raise ValueError(f"drop_hardest must be a real number in [0, 1), got {drop_hardest!r}.")
    n_drop = min(round_half_up(float(drop_hardest) * scores.size), scores.size - n_keep)
    order = rank_order(scores)
    return _done(order[: scores.size - n_drop])


# ------------------------------------------------------------------------ strategies
def select_flexrand(scores, n_keep, gamma=0.5, rng=None):
    """FlexRand: half of the kept samples at random from each side of the gamma split.

    The easy interval is the ``round_half_up(gamma * N)`` lowest-ranked samples, the
    hard interval the rest (see the module docstring for rank and ties). ``M / 2``
    samples are drawn uniformly without replacement from each interval. For odd
    ``M`` the extra sample goes to the easy or the hard interval with probability
    1/2 (a coin from ``rng``), so that each interval gets ``M / 2`` samples in
    expectation, as in the paper's ``p(x) = M / (2 N gamma)``. When an interval holds
    fewer samples than its share, all of them are kept and the other interval
    supplies the rest, so exactly ``M`` samples are kept.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Hardness scores of one class, higher is harder.
    n_keep : int
        Number of samples to keep, ``0 <= n_keep <= n_samples``.
    gamma : float, default=0.5
        Quantile of the easy/hard split, in ``(0, 1)``.
    rng : numpy.random.Generator, default=None
        Source of randomness; None uses a fresh unseeded generator.

    Returns
    -------
    indices : ndarray of shape (n_keep,)
        Sorted distinct indices into ``scores``.
    """
    scores, n_keep = _check_inputs(scores, n_keep)
    gamma = _check_gamma(gamma)
    rng = _check_rng(rng)
    order = rank_order(scores)
    n_lo = n_easy(scores.size, gamma)
    easy_gets_odd = bool(n_keep % 2) and bool(rng.integers(2))
    take_lo, take_hi = _shares(n_keep, n_lo, scores.size - n_lo, easy_gets_odd)
    lo = rng.choice(order[:n_lo], size=take_lo, replace=False)
    hi = rng.choice(order[n_lo:], size=take_hi, replace=False)
    return _done(np.concatenate([lo, hi]))


def select_random(scores, n_keep, rng=None):
    """Keep ``n_keep`` samples uniformly at random, ignoring the scores.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Hardness scores of one class (only their number and validity matter).
    n_keep : int
        Number of samples to keep.
    rng : numpy.random.Generator, default=None
        Source of randomness.

    Returns
    -------
    indices : ndarray of shape (n_keep,)
        Sorted distinct indices into ``scores``.
    """
    scores, n_keep = _check_inputs(scores, n_keep)
    rng = _check_rng(rng)
    return _done(rng.choice(scores.size, size=n_keep, replace=False))


def select_easy(scores, n_keep):
    """Top-K easiest (T-E): the ``n_keep`` lowest-ranked samples.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Hardness scores of one class.
    n_keep : int
        Number of samples to keep.

    Returns
    -------
    indices : ndarray of shape (n_keep,)
        Sorted distinct indices into ``scores``.
    """
    scores, n_keep = _check_inputs(scores, n_keep)
    return _done(rank_order(scores)[:n_keep])


def select_hard(scores, n_keep):
    """Top-K hardest (T-H): the ``n_keep`` highest-ranked samples.

    Among tied scores the later position counts as harder (same rank as everywhere).

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Hardness scores of one class.
    n_keep : int
        Number of samples to keep.

    Returns
    -------
    indices : ndarray of shape (n_keep,)
        Sorted distinct indices into ``scores``.
    """
    scores, n_keep = _check_inputs(scores, n_keep)
    return _done(rank_order(scores)[scores.size - n_keep :])


def select_flexible(scores, n_keep, gamma=0.5):
    """Top-K flexible (T-F): the deterministic counterpart of FlexRand.

    Same easy/hard split and the same half shares as :func:`select_flexrand`, but
    instead of drawing at random each interval gives the samples nearest to the
    split point ``S_gamma``: the hardest ``ceil(M/2)`` of the easy interval and the
    easiest ``floor(M/2)`` of the hard interval (for odd ``M`` the extra sample is
    the easy side's). With the shortfall rule, the result is the contiguous window of
    ``M`` ranks around rank ``n_easy``, clipped to the ends of the ranking.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Hardness scores of one class.
    n_keep : int
        Number of samples to keep.
    gamma : float, default=0.5
        Quantile of the easy/hard split, in ``(0, 1)``.

    Returns
    -------
    indices : ndarray of shape (n_keep,)
        Sorted distinct indices into ``scores``.
    """
    scores, n_keep = _check_inputs(scores, n_keep)
    gamma = _check_gamma(gamma)
    order = rank_order(scores)
    n_lo = n_easy(scores.size, gamma)
    take_lo, take_hi = _shares(n_keep, n_lo, scores.size - n_lo, True)
    return _done(order[n_lo - take_lo : n_lo + take_hi])


def _bin_quotas(sizes, n_keep, rng):
    """Water-filling: spread ``n_keep`` over bins as evenly as their sizes allow.

    Bins too small for the even share give all their samples; the rest is spread
    evenly over the others; a remainder smaller than the number of open bins goes one
    each to bins chosen uniformly at random.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    quotas = np.zeros_like(sizes)
    open_ = np.ones(sizes.size, dtype=bool)
    left = n_keep
    while left > 0:
        n_open = int(open_.sum())
        share = left // n_open
        full = open_ & (sizes - quotas <= share)
        if full.any():  # these bins cannot take a full share: take all of them
            left -= int((sizes[full] - quotas[full]).sum())
            quotas[full] = sizes[full]
            open_ &= ~full
            continue
        quotas[open_] += share
        left -= share * n_open
        if left:  # fewer than n_open left; each open bin still has room for one more
            lucky = rng.choice(np.flatnonzero(open_), size=left, replace=False)
            quotas[lucky] += 1
            left = 0
    return quotas


def select_bins(scores, n_keep, n_bins=10, rng=None):
    """Dataset-Quantization-style bins: equal-count score bins, random within each.

    The samples are sorted by rank and cut into ``min(n_bins, N)`` contiguous bins of
    equal count (sizes differ by at most one; the first ``N % n_bins`` bins are the
    larger ones). Each bin gets ``M // n_bins`` samples, drawn uniformly without
    replacement; the ``M % n_bins`` remaining samples go one each to bins chosen
    uniformly at random. A bin too small for its share gives all it has and the
    excess spills over evenly to the other bins, so exactly ``M`` are kept.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Hardness scores of one class.
    n_keep : int
        Number of samples to keep.
    n_bins : int, default=10
        Number of bins, at least 1.
    rng : numpy.random.Generator, default=None
        Source of randomness.

    Returns
    -------
    indices : ndarray of shape (n_keep,)
        Sorted distinct indices into ``scores``.
    """
    scores, n_keep = _check_inputs(scores, n_keep)
    if not isinstance(n_bins, Integral) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}.")
    rng = _check_rng(rng)
    if scores.size == 0:
        return _done([])
    bins = np.array_split(rank_order(scores), min(int(n_bins), scores.size))
    quotas = _bin_quotas([b.size for b in bins], n_keep, rng)
    picked = [rng.choice(b, size=q, replace=False) for b, q in zip(bins, quotas)]
    return _done(np.concatenate(picked))


def select(scores, n_keep, strategy="flexrand", gamma=0.5, rng=None, *, n_bins=10,
           drop_hardest=0.0):
    """Select ``n_keep`` samples of one class by the named strategy.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Hardness scores of one class, higher is harder. Must be finite.
    n_keep : int
        Number of samples to keep, ``0 <= n_keep <= n_samples``.
    strategy : {"flexrand", "random", "easy", "hard", "flexible", "bins"}, \
            default="flexrand"
        ``"flexrand"``: :func:`select_flexrand`; ``"random"``: :func:`select_random`;
        ``"easy"`` (T-E): :func:`select_easy`; ``"hard"`` (T-H): :func:`select_hard`;
        ``"flexible"`` (T-F): :func:`select_flexible`; ``"bins"``:
        :func:`select_bins`.
    gamma : float, default=0.5
        Quantile of the easy/hard split, in ``(0, 1)``. Used by ``"flexrand"`` and
        ``"flexible"``; validated for every strategy.
    rng : numpy.random.Generator, default=None
        Source of randomness for ``"flexrand"``, ``"random"`` and ``"bins"``.
    n_bins : int, default=10
        Number of bins for ``"bins"``.
    drop_hardest : float, default=0.0
        Fraction, in ``[0, 1)``, of the group's hardest samples left out before the
        strategy runs: ``min(round_half_up(drop_hardest * N), N - n_keep)`` samples
        (never so many that fewer than ``n_keep`` remain). With noisy labels the
        hardest samples are mostly the mislabelled ones (:func:`drop_hardest_tail`).

    Returns
    -------
    indices : ndarray of shape (n_keep,)
        Sorted distinct indices into ``scores``.

    Examples
    --------
    >>> import numpy as np
    >>> from skdlc import select_from_scores as select
    >>> scores = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2])
    >>> select(scores, 2, "easy")
    array([1, 5])
    >>> select(scores, 2, "hard")
    array([0, 4])
    >>> select(scores, 2, "flexible", gamma=0.5)
    array([2, 3])
    >>> len(select(scores, 4, "flexrand", rng=np.random.default_rng(0)))
    4
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")
    gamma = _check_gamma(gamma)
    if drop_hardest:
        rest = drop_hardest_tail(scores, n_keep, drop_hardest)
        picked = select(np.asarray(scores)[rest], n_keep, strategy, gamma, rng, n_bins=n_bins)
        return _done(rest[picked])
    if strategy == "flexrand":
        return select_flexrand(scores, n_keep, gamma, rng)
    if strategy == "random":
        return select_random(scores, n_keep, rng)
    if strategy == "easy":
        return select_easy(scores, n_keep)
    if strategy == "hard":
        return select_hard(scores, n_keep)
    if strategy == "flexible":
        return select_flexible(scores, n_keep, gamma)
    return select_bins(scores, n_keep, n_bins, rng)



#: The strategies that draw at random (the others ignore ``rng``).
_DRAWING = ("flexrand", "random", "bins")


def group_rows(codes, n_groups: int) -> list[np.ndarray]:
    """The rows of each group ``0..n_groups-1``, ascending: one sort, not one scan per group."""
    codes = np.asarray(codes).ravel()
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(1, n_groups))
    return np.split(order, bounds)


def select_per_group(scores, codes, n_groups, keep_ratio, strategy="flexrand", gamma=0.5, seed=0, *,
                     n_bins=10, drop_hardest=0.0):
    """:func:`select` within every group (class): the kept rows, sorted, and the count per group.

    ``codes[i]`` in ``range(n_groups)`` is row i's group; each group keeps
    ``n_to_keep(size, keep_ratio)`` rows. Group k draws from its own stream, child k of
    ``numpy.random.SeedSequence(seed)``, so a group's draw does not depend on the others.
    """
    scores = np.asarray(scores)
    seeds = np.random.SeedSequence(seed).spawn(n_groups)
    draws = strategy in _DRAWING
    kept, counts = [], []
    for k, rows in enumerate(group_rows(codes, n_groups)):
        m = n_to_keep(rows.size, keep_ratio)
        rng = np.random.default_rng(seeds[k]) if draws else None  # a Generator costs 20 us
        kept.append(rows[select(scores[rows], m, strategy, gamma, rng,
                                n_bins=n_bins, drop_hardest=drop_hardest)])
        counts.append(m)
    idx = np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.intp)
    return idx, counts

#: Public name (``skdlc.select_from_scores``): one group's selection, no classes needed.
select_from_scores = select


# --------------------------------------------------------------------------- herding
#: Classes up to this many rows are herded exactly ...
HERDING_EXACT_MAX = 2048
#: ... larger ones in blocks of at most this many rows (:func:`_blocked_herding`), so
#: that a step costs O(block x features) instead of O(class size x features).
#: Measured (benchmarks/results/scaling.md): 512-row blocks run 3x faster than
#: 2048-row ones for a 1.2x larger mean error, still 15x below a random subset's.
HERDING_BLOCK = 512


def herding_order(Z, n_steps=None, *, exact_max=HERDING_EXACT_MAX, block_size=HERDING_BLOCK):
    """Greedy herding order (Welling 2009): each step keeps the picked mean near the mean.

    Step ``t`` picks the row ``z`` that brings the mean of the picked rows closest to
    the mean of all rows of ``Z``: ``argmin ||S + z - t * mu||^2`` over the rows not yet
    picked (``S`` the sum of the picked rows), that is ``argmin 2 z.(S - t mu) + ||z||^2``,
    one matrix-vector product per step. Deterministic: ties go to the lowest index.

    Up to ``exact_max`` rows this is exact (float64). Beyond, a step looks only at
    the rows of one block (a fixed random partition of the rows into blocks of at
    most ``block_size``, visited in turn), with the state ``S`` and ``t`` of the whole
    class, in float32: the cost grows linearly with the number of rows (quadratically
    when exact), memory is one float32 copy of ``Z``, and every prefix of the order
    still follows the class mean (see benchmarks/results/scaling.md for the
    quality against exact herding).

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_features)
    n_steps : int or None
        Stop after this many picks (``None``: order every row).
    exact_max : int, default=2048
    block_size : int, default=512

    Returns
    -------
    order : ndarray of int, shape (n_steps,)

    Examples
    --------
    >>> herding_order(np.array([[0.0], [1.0], [2.0]])).tolist()
    [1, 0, 2]
    """
    Z = np.asarray(Z)
    n = len(Z)
    n_steps = n if n_steps is None else min(int(n_steps), n)
    if n > exact_max:
        return _blocked_herding(Z, n_steps, int(block_size))
    Z = np.asarray(Z, dtype=np.float64)
    mu = Z.mean(0) if n else np.zeros(Z.shape[1:])
    sq = np.einsum("ij,ij->i", Z, Z)
    total = np.zeros(Z.shape[1])
    picked = np.zeros(n, dtype=bool)
    order = np.empty(n_steps, dtype=np.intp)
    for t in range(1, n_steps + 1):
        d = 2.0 * (Z @ (total - t * mu)) + sq
        d[picked] = np.inf
        i = int(np.argmin(d))
        picked[i] = True
        total += Z[i]
        order[t - 1] = i
    return order


def _blocked_herding(Z, n_steps, block_size):
    """Herding whose step ``t`` chooses within block ``t mod n_blocks`` (see :func:`herding_order`).

    The blocks are a partition of the rows by a fixed permutation (seed 0), of equal
    sizes within one row, so each block is a random sample of the class and the
    blocks run out together; the greedy criterion is the exact one, against the
    whole class's mean and the sum of everything picked so far, so an error made
    in one block is corrected by the next picks, whichever block they come from.
    """
    n, d = Z.shape
    n_blocks = -(-n // block_size)
    blocks = np.array_split(np.random.default_rng(0).permutation(n), n_blocks)
    mu = Z.mean(0, dtype=np.float64)
    rows = [np.ascontiguousarray(Z[b], dtype=np.float32) for b in blocks]  # one float32 copy
    sq = [np.einsum("ij,ij->i", r, r) for r in rows]
    picked = [np.zeros(len(b), dtype=bool) for b in blocks]
    left = [len(b) for b in blocks]
    total = np.zeros(d)
    order = np.empty(n_steps, dtype=np.intp)
    k = 0
    for t in range(1, n_steps + 1):
        while not left[k]:
            k = (k + 1) % n_blocks
        dist = 2.0 * (rows[k] @ (total - t * mu).astype(np.float32)) + sq[k]
        dist[picked[k]] = np.inf
        i = int(np.argmin(dist))
        picked[k][i] = True
        left[k] -= 1
        total += rows[k][i]
        order[t - 1] = blocks[k][i]
        k = (k + 1) % n_blocks
    return order


def select_herding(scores, Z, n_keep, drop_hardest=0.0):
    """Herding within one class, optionally after dropping its hardest tail.

    The hardest ``drop_hardest`` of the rows (by ``scores``, see
    :func:`drop_hardest_tail`) are removed first; the ``n_keep`` rows are then the first
    picks of :func:`herding_order` on the rest, so the kept set's mean follows the mean
    of the (cleaned) class: a representative subset rather than a hardness-based one.
    Classes above ``HERDING_EXACT_MAX`` rows are herded in blocks (linear cost).

    Returns
    -------
    indices : ndarray of int, sorted, ``n_keep`` distinct rows.

    Examples
    --------
    >>> Z = np.array([[0.0], [1.0], [2.0], [9.0]])
    >>> select_herding(np.array([0.1, 0.2, 0.3, 0.9]), Z, 2, drop_hardest=0.25).tolist()
    [0, 1]
    """
    scores, n_keep = _check_inputs(scores, n_keep)
    Z = np.asarray(Z)  # no float64 copy here: herding_order casts what it uses
    if Z.ndim != 2 or len(Z) != scores.size:
        raise ValueError(f"Z must have shape ({scores.size}, n_features), got {Z.shape}.")
    if not drop_hardest:
        return _done(herding_order(Z, n_keep))
    rows = drop_hardest_tail(scores, n_keep, drop_hardest)
    return _done(rows[herding_order(Z[rows], n_keep)])


class _Projection:
    """A PCA (or just centring, when it would not reduce) fitted on some rows of ``E``."""

    def __init__(self, E, rows, n_components=128, max_fit_rows=5000):
        from sklearn.decomposition import PCA
        from threadpoolctl import threadpool_limits

        rows = np.asarray(rows)
        if rows.size > max_fit_rows:  # the leading directions need no more rows
            rows = np.sort(np.random.default_rng(0).choice(rows, max_fit_rows, replace=False))
        F = np.asarray(E[rows], dtype=np.float32)
        _check_finite_features(F)
        self.k = min(int(n_components), F.shape[1], max(1, F.shape[0] - 1))
        self.mean = F.mean(0)
        self.pca = None
        if self.k < F.shape[1]:
            solver = "randomized" if self.k < min(F.shape) // 2 else "full"
            with threadpool_limits(limits=1, user_api="blas"):
                self.pca = PCA(self.k, svd_solver=solver, random_state=0).fit(F)

    def transform(self, E, block=65536) -> np.ndarray:
        """Every row of ``E``, projected in blocks (float32; no full-size float64 copy)."""
        from threadpoolctl import threadpool_limits

        out = np.empty((len(E), self.k if self.pca is not None else E.shape[1]), dtype=np.float32)
        with threadpool_limits(limits=1, user_api="blas"):
            for a in range(0, len(E), block):
                part = np.asarray(E[a:a + block], dtype=np.float32)
                _check_finite_features(part)
                out[a:a + block] = part - self.mean if self.pca is None else self.pca.transform(part)
        return out


def pca_projection(E, n_components=128):
    """Centred PCA projection (float32) of ``E`` to at most ``n_components`` dimensions.

    Label-free, fitted on the rows given (inside a cross-validation fold, only that
    fold's rows), on at most 5,000 of them (a fixed random sample), and applied in
    blocks: cost and memory grow linearly with the rows. Herding follows the class
    mean in this projection: the embedding's own geometry, without the noise of its
    many low-variance directions.
    """
    return _Projection(E, np.arange(len(E)), n_components).transform(E)


def _check_finite_features(F) -> None:
    if not np.isfinite(F).all():
        raise ValueError("the embedding columns of X contain NaN or infinity; herding and "
                         "the selection's probe need finite features")


def herd_per_group(scores, Z, codes, n_groups, keep_ratio, *, drop_hardest=0.0):
    """:func:`select_herding` within every group: the kept rows, sorted, and the counts."""
    kept, counts = [], []
    for rows in group_rows(codes, n_groups):
        m = n_to_keep(rows.size, keep_ratio)
        kept.append(rows[select_herding(scores[rows], Z[rows], m, drop_hardest=drop_hardest)])
        counts.append(m)
    idx = np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.intp)
    return idx, counts
