"""How many instruction records look broken, and which: a mixture model on the scores.

A broken (instruction, response) pair (a response written for another prompt, cut
short, or in the wrong format) is one the model finds far less likely than the clean
pairs of its kind: its response loss sits in a separate high mode. Per group (a task or
category column, or the whole set), :func:`estimate_broken_share` fits one and two
Gaussians to the log of the scores and calls the high component "broken" only when the
two-component model is clearly better (BIC), the high component is the minority and the
two are well separated; otherwise nothing is flagged. The flagged records are the
``round(share * N)`` hardest of the group, so the flags always form a hardest tail.

Selection: :func:`skdlc.select_instructions` with ``strategy="auto"`` (the default of
``skdlc prune-instructions``) drops that tail and keeps the rest uniformly at random
(see ``benchmarks/results/instruction_selection.md`` for the evidence).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

__all__ = ["BrokenPairs", "estimate_broken_share"]

#: Smallest group the mixture is fitted to (fewer records: nothing is flagged).
MIN_GROUP = 20


@dataclass(frozen=True)
class BrokenPairs:
    """Estimated broken records of a data set (from :func:`estimate_broken_share`).

    Attributes
    ----------
    share : float
        Estimated share of broken records, ``flagged.mean()``.
    flagged : ndarray of bool, shape (n_samples,)
        The likely broken records: the hardest ``round(share_g * N_g)`` of each group.
    groups : dict
        Per group: ``n``, ``share``, ``threshold`` (lowest flagged score, or None),
        and the mixture's fit (``bic_gain``, ``separation``, ``weight``) or the reason
        nothing was fitted.
    """

    share: float
    flagged: np.ndarray
    groups: dict = field(default_factory=dict)

    @property
    def n_flagged(self) -> int:
        """Number of likely broken records."""
        return int(self.flagged.sum())

    def indices(self, scores: Sequence[float] | None = None) -> np.ndarray:
        """Indices of the flagged records, hardest first when ``scores`` are given."""
        idx = np.flatnonzero(self.flagged)
        if scores is not None:
            s = np.asarray(scores, dtype=float)[idx]
            idx = idx[np.argsort(-s, kind="stable")]
        return idx

    def to_dict(self) -> dict:
        """JSON-ready summary (no per-record arrays)."""
        return {"share": float(self.share), "n_flagged": self.n_flagged,
                "groups": {str(k): v for k, v in self.groups.items()}}


def _fit_group(x: np.ndarray, min_separation: float, min_bic_gain: float,
               max_share: float, random_state: int) -> tuple[float, dict]:
    """Estimated broken share of one group's log-scores, and the fit's numbers."""
    from sklearn.mixture import GaussianMixture

    n = x.size
    if n < MIN_GROUP:
        return 0.0, {"fitted": False, "reason": f"fewer than {MIN_GROUP} records"}
    if np.ptp(x) <= 1e-9:
        return 0.0, {"fitted": False, "reason": "all scores equal"}
    X = x[:, None]
    one = GaussianMixture(1, random_state=random_state).fit(X)
    two = GaussianMixture(2, n_init=3, random_state=random_state, reg_covar=1e-4).fit(X)
    means, var = two.means_.ravel(), two.covariances_.ravel()
    hi = int(np.argmax(means))
    lo = 1 - hi
    separation = float((means[hi] - means[lo]) / math.sqrt((var[hi] + var[lo]) / 2))
    weight = float(two.weights_[hi])
    # BIC gain per record: a fixed margin would demand more evidence of small groups
    gain = float((one.bic(X) - two.bic(X)) / n)
    info = {"fitted": True, "bic_gain": round(gain, 4), "separation": round(separation, 3),
            "weight": round(weight, 4), "means": np.exp(means[[lo, hi]]).round(4).tolist()}
    if gain < min_bic_gain or separation < min_separation or weight > max_share:
        info["reason"] = ("one mode fits as well" if gain < min_bic_gain else
                          "modes overlap" if separation < min_separation else
                          "the high mode is the majority")
        return 0.0, info
    post = two.predict_proba(X)[:, hi]
    return float(np.mean(post > 0.5)), info


def estimate_broken_share(
    scores: Sequence[float],
    *,
    groups: Sequence | None = None,
    min_separation: float = 2.0,
    min_bic_gain: float = 0.02,
    max_share: float = 0.5,
    random_state: Any = 0,
) -> BrokenPairs:
    """Estimate the share of broken instruction records and flag the likely ones.

    Per group, a two-component Gaussian mixture on ``log(scores)`` (on the scores
    themselves when some are not positive) against one Gaussian: the high component counts as broken pairs only when the mixture gains at
    least ``min_bic_gain`` BIC per record, its two means are at least
    ``min_separation`` pooled standard deviations apart and the high component holds at
    most ``max_share`` of the group. The share is the fraction of the group whose
    posterior of the high component exceeds 1/2; the flagged records are that many of
    the group's hardest.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Positive hardness scores, e.g. :class:`InstructionScorer` mean response losses.
    groups : array-like of shape (n_samples,) or None, default=None
        A task/category column: each group gets its own mixture (loss scales differ
        between tasks). ``None``: one group.
    min_separation : float, default=2.0
        Smallest distance between the two log-score means, in pooled standard
        deviations.
    min_bic_gain : float, default=0.02
        Smallest BIC improvement per record of two components over one.
    max_share : float, default=0.5
        Largest share of a group that can be flagged.
    random_state : int, RandomState or None, default=0
        Seeds the mixture's initialisation.

    Returns
    -------
    BrokenPairs
        ``share``, ``flagged`` (bool per record) and the per-group fits.

    Examples
    --------
    >>> import numpy as np
    >>> from skdlc import estimate_broken_share
    >>> rng = np.random.default_rng(0)
    >>> scores = np.r_[rng.lognormal(0.5, 0.3, 160), rng.lognormal(2.0, 0.2, 40)]
    >>> est = estimate_broken_share(scores)
    >>> round(est.share, 2), bool(est.flagged[160:].all())
    (0.2, True)
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-d, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"scores must be finite; {int((~np.isfinite(s)).sum())} are not")
    for name, v, lo, hi in (("min_separation", min_separation, 0, math.inf),
                            ("min_bic_gain", min_bic_gain, -math.inf, math.inf),
                            ("max_share", max_share, 0, 1)):
        if not (isinstance(v, (int, float)) and lo <= float(v) <= hi):
            raise ValueError(f"{name} must be a number in [{lo}, {hi}], got {v!r}")
    from sklearn.utils import check_random_state

    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    if groups is None:
        codes, labels = np.zeros(s.size, dtype=int), np.array(["all"], dtype=object)
    else:
        g = np.asarray(groups, dtype=object)
        if g.shape != s.shape:
            raise ValueError(f"groups must have one entry per score ({s.size}), got {g.shape}")
        labels, codes = np.unique(g.astype(str), return_inverse=True)
    flagged = np.zeros(s.size, dtype=bool)
    info = {}
    for k, label in enumerate(labels):
        rows = np.flatnonzero(codes == k)
        # losses are positive and skewed: their logs; other scores as they are
        x = np.log(s[rows]) if (s[rows] > 0).all() else s[rows]
        share, fit = _fit_group(x, float(min_separation), float(min_bic_gain),
                                float(max_share), seed)
        m = int(math.floor(share * rows.size + 0.5))
        order = rows[np.lexsort((rows, s[rows]))]  # ascending (score, index), as in ._selection
        top = order[rows.size - m:] if m else order[:0]
        flagged[top] = True
        info[label] = {"n": int(rows.size), "share": round(m / rows.size, 4),
                       "threshold": float(s[top].min()) if m else None, **fit}
    return BrokenPairs(share=float(flagged.mean()) if s.size else 0.0, flagged=flagged,
                       groups=info)
