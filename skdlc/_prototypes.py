"""Class prototypes: the mean feature of each class under one (masked) model.

With prototypes as a nearest-class-mean classifier, every masked model becomes a
classifier without any training, which is what lets DLC measure a loss per sample.
The sums are kept apart from the division so that features held in pieces (chunks on
disk, blocks on Ray) give exactly the means of the whole array.
"""

from __future__ import annotations

import numpy as np

__all__ = ["class_sums", "class_means", "means_from_sums"]


def class_sums(features: np.ndarray, y_index: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class feature sums, (n_classes, n_features) float64."""
    sums = np.zeros((n_classes, features.shape[1]), dtype=np.float64)
    np.add.at(sums, y_index, np.asarray(features, dtype=np.float64))
    return sums


def means_from_sums(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Class sums (n_classes, n_features) / counts (n_classes,) -> float32 means."""
    return (sums / counts[:, None]).astype(np.float32)


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
    counts = np.bincount(y_index, minlength=n_classes).astype(np.float64)
    return means_from_sums(class_sums(features, y_index, n_classes), counts)
