"""The one reader of DLCScorer's output layout: ``[embedding | per-class losses]``.

``DLCScorer.transform`` returns, per row, optionally the full model's embedding, then
one loss column per class in sorted class order. Samplers, the one-call
:func:`skdlc.prune` and the public :func:`skdlc.own_class_scores` read that layout
through these functions only, so the rule lives in one place. The samplers also read
the compact ``[embedding | own-class score]`` (``score_columns="own_class"``): with many
classes, the per-class block is most of the input, and selection reads one entry a row.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SCORE_COLUMNS", "split_columns", "own_class", "class_index"]

#: How X ends: one score column per class, or each row's own-class score alone.
SCORE_COLUMNS = ("per_class", "own_class")


def split_columns(X, n_classes: int, *, need_embedding: bool = False,
                  score_columns: str = "per_class"):
    """``(embedding or None, per_class)`` of a ``(n, [D +] n_classes)`` array.

    ``X`` with a single column is one score per row: it is returned as the per-class
    block (one column) and no embedding. ``need_embedding`` raises when there is none.
    ``score_columns="own_class"``: ``X`` is ``[embedding | own-class score]``; the block
    returned is its last column.
    """
    n_cols = X.shape[1]
    if score_columns == "own_class":
        emb, per_class = (X[:, :-1] if n_cols > 1 else None), X[:, -1:]
    elif n_cols == 1 and n_classes != 1:
        emb, per_class = None, X
    elif n_cols >= n_classes:
        emb = X[:, : n_cols - n_classes] if n_cols > n_classes else None
        per_class = X[:, n_cols - n_classes:]
    else:
        raise ValueError(
            f"X has {n_cols} columns but y has {n_classes} classes: X must be a single "
            f"score column, or end with one score column per class (the last {n_classes} "
            "columns, in sorted class order), as DLCScorer.transform returns."
        )
    if need_embedding and emb is None:
        raise ValueError(
            f"X has no embedding columns (it has {n_cols} columns for {n_classes} classes); "
            "use DLCScorer(embedding=True) so that the full model's embedding comes first"
        )
    return emb, per_class


def class_index(classes: np.ndarray, y) -> np.ndarray:
    """Column of each label in ``classes`` (sorted); names unseen labels in the error."""
    y = np.asarray(y).ravel()
    idx = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
    unknown = classes[idx] != y
    if unknown.any():
        raise ValueError(
            f"y has labels unseen in fit: {np.unique(y[unknown])[:5].tolist()}; "
            f"known classes: {classes[:10].tolist()}"
        )
    return idx


def own_class(per_class: np.ndarray, y_codes: np.ndarray) -> np.ndarray:
    """Each row's entry of its own class (``per_class`` with one column: that column)."""
    per_class = np.asarray(per_class)
    if per_class.shape[1] == 1:
        return per_class[:, 0]
    if len(per_class) != len(y_codes):
        raise ValueError(f"X has {len(per_class)} samples but y has {len(y_codes)}")
    return per_class[np.arange(len(y_codes)), y_codes]
