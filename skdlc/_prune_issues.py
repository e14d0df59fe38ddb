"""Label issues and duplicates for :func:`skdlc.prune`, from the pass it already made.

The scoring pass gives every sample's loss under every class and the full model's
embedding; :func:`find_issues` turns them into the label-issue table and summary
(:func:`skdlc.find_label_issues`) and the duplicate groups (:func:`skdlc.find_duplicates`,
with content hashes of the input when it has them). No extra forward pass.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from ._duplicates import content_hashes, find_duplicates, keep_one_per_group
from ._label_issues import find_label_issues, unmasked_losses

__all__ = ["find_issues", "input_hashes", "score_columns", "issues_summary", "kept_after_duplicates"]

#: Which losses the label-issue flags read: "unmasked" (the full model's prototype
#: losses, recomputed from the embedding) or "path" (the DLC path average).
#: Chosen on benchmarks/results/label_issues.md (docs/label_issues.md).
LABEL_LOSSES = "path"
#: Near-duplicate rule on the embedding (benchmarks/results/duplicates.md): "auto" is
#: scale-free (a share of the median nearest-neighbour distance), which matters because
#: the embedding's cosines crowd near 1 at small input sizes.
DUPLICATE_THRESHOLD = "auto"


def input_hashes(X) -> np.ndarray | None:
    """Content hashes of prune's input: decoded pixels of arrays, file bytes of paths,
    UTF-8 of texts; None for inputs without a cheap content (a torch Dataset)."""
    if isinstance(X, np.ndarray) and X.dtype != object:
        return content_hashes(X)
    if isinstance(X, (list, tuple)) and len(X):
        first = X[0]
        if isinstance(first, str) and not os.path.isfile(first):
            return content_hashes(X, text=True)
        if isinstance(first, (str, os.PathLike, np.ndarray)):
            try:
                return content_hashes(X)
            except OSError:  # a file that went away: no exact duplicates, not a failure
                return None
    return None


def find_issues(X, embedding, losses, labels, classes, scorer) -> dict[str, Any]:
    """``{"label_issues", "label_summary", "duplicates", "seconds"}`` for one prune run."""
    t0 = time.perf_counter()
    if LABEL_LOSSES == "unmasked" and embedding is not None:
        issue_losses = unmasked_losses(embedding, labels, classes=classes, logits=scorer.logits,
                                       temperature=scorer.temperature)
    else:
        issue_losses = losses
    issues, summary = find_label_issues(issue_losses, labels, classes=classes)
    dups = None
    if embedding is not None:
        dups = find_duplicates(embedding, y=labels, hashes=input_hashes(X), threshold=DUPLICATE_THRESHOLD)
    return {"label_issues": issues, "label_summary": summary, "duplicates": dups,
            "seconds": time.perf_counter() - t0}


def kept_after_duplicates(duplicates, n: int, scores) -> np.ndarray:
    """Rows left when each duplicate group keeps its easiest row (lowest DLC score)."""
    if duplicates is None:
        return np.arange(n)
    return keep_one_per_group(duplicates, n, prefer=scores)


def score_columns(result) -> tuple[tuple[str, ...], list[tuple]]:
    """Extra ``scores.csv`` columns: ``label_issue``, ``label_quality``, ``suggested_label``,
    ``duplicate_group`` (empty when the row has no duplicate), one tuple per row."""
    n = len(result.scores)
    issues = result.label_issues
    group = [""] * n
    if result.duplicates is not None:
        for r, g in zip(result.duplicates["row"].tolist(), result.duplicates["group"].tolist()):
            group[r] = int(g)
    if issues is None:
        return ("duplicate_group",), [(g,) for g in group]
    flags = issues["is_label_issue"].to_numpy()
    quality = issues["label_quality"].to_numpy()
    suggested = issues["suggested_label"].tolist()
    return (("label_issue", "label_quality", "suggested_label", "duplicate_group"),
            [(int(f), f"{q:.6g}", s, g) for f, q, s, g in zip(flags, quality, suggested, group)])


def issues_summary(result) -> dict[str, Any]:
    """The ``summary.json`` keys ``label_issues`` and ``duplicates``."""
    out: dict[str, Any] = {}
    if result.label_summary is not None:
        out["label_issues"] = {**result.label_summary.to_dict(), "losses": LABEL_LOSSES}
    d = result.duplicates
    if d is not None:
        groups = d.groupby("group")
        out["duplicates"] = {
            "threshold": d.attrs.get("threshold", DUPLICATE_THRESHOLD),
            "n_groups": int(groups.ngroups),
            "n_rows": int(len(d)),
            "n_exact_rows": int((d["kind"] == "exact").sum()),
            "n_near_rows": int((d["kind"] == "near").sum()),
            "n_label_conflict_groups": int(groups["cross_class"].first().sum()) if len(d) else 0,
            "dropped_before_selection": int(getattr(result, "n_dropped_duplicates", 0)),
        }
    return out
