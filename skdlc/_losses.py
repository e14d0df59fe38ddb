"""Losses of samples against class prototypes: logits, then cross-entropy per class.

``per_class_losses`` returns, for every sample and every class k, the cross-entropy the
sample would have if its label were k. The DLC score of a labelled sample is the entry
of its own class; keeping all of them lets ``transform`` work on unlabelled data.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax

__all__ = ["LOGITS", "logits", "per_class_losses"]

LOGITS = ("inverse_distance", "neg_sq_distance", "cosine")


def _sq_distances(z: np.ndarray, protos: np.ndarray) -> np.ndarray:
    # ||z - p||^2 = ||z||^2 - 2 z.p + ||p||^2, computed in float64 to avoid cancellation.
    z = z.astype(np.float64, copy=False)
    p = protos.astype(np.float64, copy=False)
    d = (z * z).sum(1)[:, None] - 2.0 * z @ p.T + (p * p).sum(1)[None, :]
    return np.maximum(d, 0.0)


def logits(z: np.ndarray, protos: np.ndarray, kind: str, temperature: float = 1.0) -> np.ndarray:
    """Similarity of each feature row to each prototype, shape (n_samples, n_classes).

    - ``"inverse_distance"``: 1 / Euclidean distance (the official code).
    - ``"neg_sq_distance"``: minus the squared Euclidean distance (prototypical networks).
    - ``"cosine"``: cosine similarity divided by ``temperature``.
    """
    if kind == "inverse_distance":
        return 1.0 / (np.sqrt(_sq_distances(z, protos)) + 1e-8)
    if kind == "neg_sq_distance":
        return -_sq_distances(z, protos)
    if kind == "cosine":
        zn = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        pn = protos / np.maximum(np.linalg.norm(protos, axis=1, keepdims=True), 1e-12)
        return (zn.astype(np.float64) @ pn.astype(np.float64).T) / temperature
    raise ValueError(f"logits must be one of {LOGITS}, got {kind!r}")


def per_class_losses(
    z: np.ndarray, protos: np.ndarray, kind: str, temperature: float = 1.0
) -> np.ndarray:
    """Cross-entropy of every sample against every class label, (n_samples, n_classes)."""
    return -log_softmax(logits(z, protos, kind, temperature), axis=1)
