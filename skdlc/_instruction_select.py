"""Which instruction records to keep, from their scores (``skdlc.select_instructions``).

Every rule of :mod:`skdlc._selection` over the whole set or per group (task, category),
plus ``strategy="auto"``: random selection among the records that
:func:`skdlc.estimate_broken_share` does not flag as broken pairs.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, Sequence

import numpy as np
from sklearn.utils import check_random_state

from ._broken_pairs import BrokenPairs, estimate_broken_share
from ._selection import STRATEGIES, n_to_keep, select, select_per_group

__all__ = ["select_instructions"]


def select_instructions(
    scores: Sequence[float],
    keep: float | int,
    *,
    gamma: float = 0.5,
    strategy: str = "auto",
    groups: Sequence | None = None,
    random_state: Any = None,
    broken: BrokenPairs | Sequence[float] | None = None,
) -> np.ndarray:
    """Indices of the examples to keep: at random without the likely broken pairs (default).

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Hardness scores, e.g. from :class:`InstructionScorer`.
    keep : float in (0, 1] or int >= 1
        Fraction to keep (of each group, at least one per group), or a number of
        examples (only without ``groups``).
    gamma : float, default=0.5
        Easy/hard split quantile of FlexRand (and of "flexible").
    strategy : {"auto", "flexrand", "random", "easy", "hard", "flexible", "bins"}, \
            default="auto"
        ``"auto"``: leave out the likely broken pairs (``broken``) and keep the rest
        uniformly at random; when fewer than the kept number are left, the rest are
        drawn from the flagged ones. It is plain random selection (the same draw as
        ``"random"``) when nothing is flagged. ``"flexrand"`` is the paper's sampler;
        the others are ablations (:func:`skdlc.select_from_scores`).
    groups : array-like of shape (n_samples,) or None
        E.g. a task/category column: each group is pruned on its own, as classes are
        for labelled data. ``None``: the whole set is one group.
    random_state : int, RandomState or None
    broken : BrokenPairs, array-like of shape (n_samples,) or None, default=None
        ``"auto"`` only: the likely broken records, as an estimate from
        :func:`~skdlc.estimate_broken_share`, or the per-record values to estimate them
        from (per group), e.g. ``scores / scorer.response_only_losses(X)`` as
        ``skdlc prune-instructions`` does. ``None``: estimated from ``scores``.

    Returns
    -------
    indices : ndarray of int, sorted ascending.

    Examples
    --------
    >>> import numpy as np
    >>> from skdlc import select_instructions
    >>> scores = np.array([0.5, 2.0, 1.0, 3.0, 0.1, 1.5])
    >>> select_instructions(scores, 0.5, strategy="easy")
    array([0, 2, 4])
    >>> select_instructions(scores, 2, strategy="hard")
    array([1, 3])
    >>> select_instructions(scores, 0.5, strategy="easy", groups=list("aaabbb"))
    array([0, 2, 4, 5])
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-d, got shape {scores.shape}")
    n = scores.size
    if strategy not in ("auto", *STRATEGIES):
        raise ValueError(f"strategy must be one of {('auto', *STRATEGIES)}, got {strategy!r}")
    is_count = isinstance(keep, Integral) and not isinstance(keep, bool)
    if is_count:
        if not 1 <= keep <= n:
            raise ValueError(f"keep as a count must be in [1, {n}], got {keep}")
        if groups is not None:
            raise ValueError("keep must be a fraction when groups are given")
    elif not (isinstance(keep, Real) and 0.0 < float(keep) <= 1.0):
        raise ValueError(f"keep must be a fraction in (0, 1] or a count >= 1, got {keep!r}")
    rs = check_random_state(random_state)
    seed = int(rs.randint(np.iinfo(np.int32).max))
    if groups is not None:
        groups = np.asarray(groups, dtype=object)
        if groups.shape != (n,):
            raise ValueError(f"groups must have one entry per score ({n}), got {groups.shape}")
    if strategy == "auto":
        return _select_auto(scores, keep, is_count, groups, broken, seed)
    if groups is None:
        m = int(keep) if is_count else n_to_keep(n, float(keep))
        return select(scores, m, strategy, gamma, np.random.default_rng(seed))
    labels, codes = np.unique(groups.astype(str), return_inverse=True)
    return select_per_group(scores, codes, labels.size, float(keep), strategy, gamma, seed)[0]


def _select_auto(scores, keep, is_count, groups, broken, seed) -> np.ndarray:
    """Random selection among the records not flagged as broken, per group."""
    n = scores.size
    if not isinstance(broken, BrokenPairs):
        broken = estimate_broken_share(scores if broken is None else broken, groups=groups)
    flagged = np.asarray(broken.flagged, dtype=bool)
    if flagged.shape != (n,):
        raise ValueError(f"broken must describe the {n} records, got {flagged.shape[0]}")
    if groups is None:
        parts = [(np.arange(n), int(keep) if is_count else n_to_keep(n, float(keep)),
                  np.random.default_rng(seed))]
    else:
        labels, codes = np.unique(groups.astype(str), return_inverse=True)
        seeds = np.random.SeedSequence(seed).spawn(labels.size)
        parts = []
        for k in range(labels.size):
            rows = np.flatnonzero(codes == k)
            parts.append((rows, n_to_keep(rows.size, float(keep)), np.random.default_rng(seeds[k])))
    kept = []
    for rows, m, rng in parts:
        ok, bad = rows[~flagged[rows]], rows[flagged[rows]]
        if ok.size >= m:
            kept.append(rng.choice(ok, size=m, replace=False))
        else:
            kept += [ok, rng.choice(bad, size=m - ok.size, replace=False)]
    return np.sort(np.concatenate(kept)).astype(np.intp)
