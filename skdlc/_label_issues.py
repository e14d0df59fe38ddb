"""Label issues from the per-class losses DLC already computes: no model, no extra pass.

:meth:`DLCScorer.transform` gives, for every sample and every class k, the cross-entropy
the sample would have if its label were k (nearest-prototype logits). ``softmax(-losses)``
turns that row back into class probabilities (for the unmasked model alone, exactly the
nearest-class-mean classifier's probabilities; for the path average, their normalised
geometric mean over the masked models). Confident learning (Northcutt et al., JAIR 2021;
the rules of cleanlab's ``find_label_issues``) then needs only those probabilities and the
given labels:

- per class k, a threshold t_k: the mean probability of class k over the samples labelled k;
- the confident joint C[i, j]: samples labelled i whose probability of j reaches t_j (the
  most probable such j), calibrated so that each row sums to the count of label i;
- ``"prune_by_noise_rate"`` flags, for every off-diagonal cell (i, j), the C[i, j]
  samples labelled i with the largest margin p_j - p_i; ``"confident_learning"`` flags the
  off-diagonal members of the confident joint; ``"predicted_neq_given"`` flags every
  sample whose most probable class is not its label. A sample whose most probable class
  is its own label is never flagged.

The rule, the quality score and the loss (path average or unmasked model) were chosen on
``benchmarks/label_issues.py`` (docs/label_issues.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import softmax

__all__ = ["LabelIssueSummary", "find_label_issues", "label_probabilities", "unmasked_losses"]

FILTERS = ("prune_by_noise_rate", "confident_learning", "predicted_neq_given")
QUALITIES = ("self_confidence", "normalized_margin")
_EPS = 1e-6  # cleanlab's slack when comparing a probability with its class threshold


@dataclass(frozen=True)
class LabelIssueSummary:
    """What :func:`find_label_issues` estimated about the whole data set.

    Attributes
    ----------
    n_samples, n_issues : int
        Rows, and rows flagged as label issues.
    noise_rate : pandas.Series
        Per given class (index ``classes``): the estimated share of its samples whose
        label is wrong (off-diagonal mass of the calibrated confident joint's row).
    confused_pairs : pandas.DataFrame
        The most confused (given label, suggested label) pairs, most first: columns
        ``given_label``, ``suggested_label``, ``estimated_count`` (calibrated confident
        joint), ``share_of_given`` (of the given class's samples) and ``n_flagged``
        (flagged rows with that pair).
    joint : ndarray of shape (n_classes, n_classes)
        The calibrated confident joint: estimated counts of (given label i, true label j).
    filter_by : str
        The flagging rule used.
    """

    n_samples: int
    n_issues: int
    noise_rate: pd.Series
    confused_pairs: pd.DataFrame
    joint: np.ndarray = field(repr=False)
    filter_by: str = "prune_by_noise_rate"

    @property
    def estimated_noise(self) -> float:
        """Estimated share of wrong labels in the whole data set."""
        off = self.joint.sum() - np.trace(self.joint)
        return float(off / max(self.joint.sum(), 1))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (plain ints, floats and strings), e.g. for ``summary.json``."""
        return {
            "n_samples": int(self.n_samples),
            "n_issues": int(self.n_issues),
            "estimated_noise": self.estimated_noise,
            "filter_by": self.filter_by,
            "noise_rate": {_plain(k): float(v) for k, v in self.noise_rate.items()},
            "confused_pairs": [
                {k: _plain(v) for k, v in row.items()} for row in self.confused_pairs.to_dict("records")
            ],
        }


def label_probabilities(losses) -> np.ndarray:
    """Class probabilities from per-class losses: ``softmax(-losses)`` row by row.

    Parameters
    ----------
    losses : array-like of shape (n_samples, n_classes)
        Cross-entropy of each sample against each class, e.g. the last ``n_classes``
        columns of :meth:`DLCScorer.transform`.

    Returns
    -------
    ndarray of shape (n_samples, n_classes), rows summing to 1.
    """
    losses = np.asarray(losses, dtype=np.float64)
    return softmax(-losses, axis=1)


def unmasked_losses(embedding, y, *, classes=None, logits: str = "cosine", temperature: float = 0.1) -> np.ndarray:
    """The unmasked model's per-class losses, from its embedding alone (no pass).

    The first point of DLC's path: prototypes are the class means of the full model's
    embedding (``DLCScorer.embed``, or the embedding block of ``transform`` with
    ``embedding=True``), the loss is the cross-entropy of the prototype logits. The
    same arithmetic as the scorer's ratio 0 (``logits``/``temperature`` as the scorer's).

    Returns
    -------
    ndarray of shape (n_samples, n_classes), columns in ``classes`` order.
    """
    from ._losses import per_class_losses
    from ._prototypes import class_means

    E = np.asarray(embedding, dtype=np.float32)
    if E.ndim != 2 or len(E) != len(y):
        raise ValueError(f"embedding must be 2-d with one row per label ({len(y)}), got shape {E.shape}")
    _, classes, y_idx = _check_inputs(np.zeros((len(E), len(np.unique(y)) if classes is None else len(classes))),
                                      y, classes)
    return per_class_losses(E, class_means(E, y_idx, len(classes)), logits, float(temperature))


def find_label_issues(
    losses,
    y,
    *,
    classes=None,
    filter_by: str = "prune_by_noise_rate",
    quality: str = "normalized_margin",
    n_pairs: int = 10,
) -> tuple[pd.DataFrame, LabelIssueSummary]:
    """Flag likely mislabelled samples from DLC's per-class losses, without training.

    Parameters
    ----------
    losses : array-like of shape (n_samples, n_classes)
        Per-class losses, column k for ``classes[k]``: the output of
        :meth:`DLCScorer.transform` (its last ``n_classes`` columns when
        ``embedding=True``), or any cross-entropy of each sample against each class.
    y : array-like of shape (n_samples,)
        The given labels.
    classes : array-like of shape (n_classes,), default=None
        The label of each loss column (``scorer.classes_``). None: the sorted unique
        values of ``y``, which must then contain every class.
    filter_by : {"prune_by_noise_rate", "confident_learning", "predicted_neq_given"}, \
default="prune_by_noise_rate"
        The flagging rule (module documentation; cleanlab's names).
    quality : {"normalized_margin", "self_confidence"}, default="normalized_margin"
        ``label_quality``: the probability of the given label minus the largest other
        class probability, mapped to [0, 1] (ranks flipped labels best, see
        docs/label_issues.md), or the probability of the given label.
    n_pairs : int, default=10
        Most confused class pairs kept in the summary.

    Returns
    -------
    issues : pandas.DataFrame
        One row per sample, in input order: ``is_label_issue`` (bool),
        ``label_quality`` (in [0, 1]; higher = the given label is more likely right),
        ``given_label`` and ``suggested_label`` (the most probable class).
    summary : LabelIssueSummary
        Estimated share of wrong labels per class, the most confused pairs, the
        calibrated confident joint.

    Examples
    --------
    >>> import numpy as np
    >>> from skdlc import find_label_issues
    >>> losses = -np.log(np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3],
    ...                            [0.1, 0.9], [0.2, 0.8], [0.95, 0.05]]))
    >>> issues, summary = find_label_issues(losses, [0, 0, 0, 1, 1, 1])
    >>> issues["is_label_issue"].tolist()
    [False, False, False, False, False, True]
    >>> int(issues.loc[5, "suggested_label"])
    0
    """
    if filter_by not in FILTERS:
        raise ValueError(f"filter_by must be one of {FILTERS}, got {filter_by!r}")
    if quality not in QUALITIES:
        raise ValueError(f"quality must be one of {QUALITIES}, got {quality!r}")
    if not isinstance(n_pairs, (int, np.integer)) or n_pairs < 0:
        raise ValueError(f"n_pairs must be a non-negative int, got {n_pairs!r}")
    losses, classes, y_idx = _check_inputs(losses, y, classes)
    P = label_probabilities(losses)
    K = len(classes)
    counts = np.bincount(y_idx, minlength=K)
    joint, off_rows = confident_joint(P, y_idx, K)

    if filter_by == "prune_by_noise_rate":
        flag = _prune_by_noise_rate(P, y_idx, _keep_at_least_one(joint))
    elif filter_by == "confident_learning":
        flag = np.zeros(len(y_idx), bool)
        flag[off_rows] = True
    else:
        flag = P.argmax(1) != y_idx
    rows = np.arange(len(y_idx))
    own = P[rows, y_idx].copy()
    flag &= ~_predicts_given(P, y_idx)  # never flag a sample its own class wins

    suggested = P.argmax(1)
    if quality == "self_confidence":
        score = own
    else:
        other = P.copy()
        other[rows, y_idx] = -np.inf
        score = (own - other.max(1) + 1.0) / 2.0
    issues = pd.DataFrame({
        "is_label_issue": flag,
        "label_quality": score,
        "given_label": classes[y_idx],
        "suggested_label": classes[suggested],
    })
    summary = _summary(joint, counts, classes, y_idx, suggested, flag, filter_by, int(n_pairs))
    return issues, summary


# --------------------------------------------------------------------- confident learning
def confident_joint(P: np.ndarray, y_idx: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated confident joint (given i, true j) and the rows off its diagonal.

    The rules of cleanlab's ``compute_confident_joint(calibrate=True)``: per-class
    thresholds are the mean self-confidence of each class; a sample counts for the class
    it reaches the threshold of (the most probable one when it reaches several).
    """
    n = len(y_idx)
    counts = np.bincount(y_idx, minlength=K)
    thresholds = np.array([P[y_idx == k, k].mean() if counts[k] else 0.0 for k in range(K)])
    above = P >= thresholds - _EPS
    n_above = above.sum(1)
    guess = np.where(n_above > 1, P.argmax(1), above.argmax(1))
    confident = n_above > 0
    C = np.zeros((K, K), dtype=np.int64)
    np.add.at(C, (y_idx[confident], guess[confident]), 1)
    np.fill_diagonal(C, np.maximum(C.diagonal(), 1))
    off_rows = np.arange(n)[confident][guess[confident] != y_idx[confident]]
    # calibrate: each row sums to its label's count, the whole to n
    cal = C / np.maximum(C.sum(1, keepdims=True), 1e-6) * counts[:, None]
    cal = cal / max(cal.sum(), 1e-6) * counts.sum()
    return np.vstack([_round_preserving_sum(r) for r in cal]), off_rows


def _round_preserving_sum(values: np.ndarray) -> np.ndarray:
    """Round to ints whose sum is the rounded sum of ``values`` (largest remainders first)."""
    ints = np.round(values)
    diff = int(np.round(values.sum()) - ints.sum())
    if diff:
        order = np.argsort(values - ints)
        order = order[::-1][:diff] if diff > 0 else order[:-diff]
        ints[order] += np.sign(diff)
    return ints.astype(np.int64)


def _keep_at_least_one(joint: np.ndarray) -> np.ndarray:
    """Raise a zero diagonal to 1, taking the difference evenly from that row's other counts.

    cleanlab's ``_keep_at_least_n_per_class`` with n=1 (it works on the transpose).
    """
    out = joint.astype(np.float64).copy()
    diag = out.diagonal().copy()
    lift = np.maximum(diag, 1) - diag
    n_off = np.maximum(np.count_nonzero(out, axis=1) - 1.0, 1.0)
    out = np.maximum(out - (lift / n_off)[:, None], 0)
    np.fill_diagonal(out, np.maximum(diag, 1))
    return np.vstack([_round_preserving_sum(r) for r in out])


def _prune_by_noise_rate(P: np.ndarray, y_idx: np.ndarray, joint: np.ndarray) -> np.ndarray:
    """For each off-diagonal (i, j): the joint[i, j] rows labelled i with the largest p_j - p_i."""
    flag = np.zeros(len(y_idx), bool)
    for i in range(len(joint)):
        rows = np.flatnonzero(y_idx == i)
        if len(rows) <= 1:
            continue
        for j in np.flatnonzero(joint[i] > 0):
            if j == i:
                continue
            margin = P[rows, j] - P[rows, i]
            top = np.argsort(-margin, kind="stable")[: int(joint[i, j])]
            flag[rows[top]] = True
    return flag


def _predicts_given(P: np.ndarray, y_idx: np.ndarray) -> np.ndarray:
    Q = P.copy()
    Q[np.arange(len(y_idx)), y_idx] += _EPS
    return Q.argmax(1) == y_idx


# ------------------------------------------------------------------------------ helpers
def _summary(joint, counts, classes, y_idx, suggested, flag, filter_by, n_pairs) -> LabelIssueSummary:
    K = len(classes)
    off = joint.sum(1) - joint.diagonal()
    noise = pd.Series(off / np.maximum(counts, 1), index=pd.Index(classes, name="given_label"),
                      name="estimated_noise_rate")
    flagged = np.zeros((K, K), dtype=np.int64)
    np.add.at(flagged, (y_idx[flag], suggested[flag]), 1)
    i, j = np.nonzero(~np.eye(K, dtype=bool) & ((joint > 0) | (flagged > 0)))
    order = np.lexsort((-flagged[i, j], -joint[i, j]))[:n_pairs]
    i, j = i[order], j[order]
    pairs = pd.DataFrame({
        "given_label": classes[i],
        "suggested_label": classes[j],
        "estimated_count": joint[i, j],
        "share_of_given": joint[i, j] / np.maximum(counts[i], 1),
        "n_flagged": flagged[i, j],
    })
    return LabelIssueSummary(n_samples=len(y_idx), n_issues=int(flag.sum()), noise_rate=noise,
                             confused_pairs=pairs, joint=joint, filter_by=filter_by)


def _check_inputs(losses, y, classes):
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim != 2:
        raise ValueError(f"losses must be 2-d (n_samples, n_classes), got shape {losses.shape}")
    if not np.isfinite(losses).all():
        raise ValueError("losses contain NaN or infinity")
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(losses):
        raise ValueError(f"y must be 1-d with one label per row of losses ({len(losses)}), "
                         f"got shape {y.shape}")
    if classes is None:
        classes = np.unique(y)
    else:
        classes = np.asarray(classes)
        if classes.ndim != 1 or len(np.unique(classes)) != len(classes):
            raise ValueError("classes must be 1-d and unique (the label of each loss column)")
    if losses.shape[1] != len(classes):
        raise ValueError(
            f"losses has {losses.shape[1]} columns but there are {len(classes)} classes; pass the "
            "per-class block only (with DLCScorer(embedding=True): out[:, -len(scorer.classes_):]) "
            "and classes=scorer.classes_")
    order = np.argsort(classes, kind="stable")
    pos = np.searchsorted(classes[order], y)
    pos = np.clip(pos, 0, len(classes) - 1)
    unknown = classes[order][pos] != y
    if unknown.any():
        raise ValueError(f"y holds labels that are not in classes: {np.unique(y[unknown])[:5].tolist()}")
    if len(classes) < 2:
        raise ValueError(f"label issues need at least 2 classes, got {len(classes)}")
    return losses, classes, order[pos]


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v
