"""Class prototypes: the mean feature of each class under one (masked) model.

With prototypes as a nearest-class-mean classifier, every masked model becomes a
classifier without any training, which is what lets DLC measure a loss per sample.
"""

from __future__ import annotations

import numpy as np

__all__ = ["class_means"]


def class_means(features: np.ndarray, y_index: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean feature per class.

    Parameters
    ----------
    features : ndarray of shape (n_samples, n_features)
    y_index : ndarray of shape (n_samples,)
        Class index of each sample, in ``range(n_classes)``.
    n_classes : int

    Returns
    -------
    ndarray of shape (n_classes, n_features), float32.
    """
    sums = np.zeros((n_classes, features.shape[1]), dtype=np.float64)
    np.add.at(sums, y_index, features)
    counts = np.bincount(y_index, minlength=n_classes).astype(np.float64)
    return (sums / counts[:, None]).astype(np.float32)
