"""Checks of user input shared by the estimators and the command line, one wording."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["check_class_labels", "single_class_message"]


def single_class_message(what: str, label: Any, count: int, unit: str = "samples") -> str:
    return (
        f"{what} has only one class ({str(label)!r}, {count} {unit}); DLC scores compare a "
        "sample with every class's prototype, so it needs at least two"
    )


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is np.ma.masked


def _kind(v: Any) -> str:
    if isinstance(v, (str, np.str_, bytes)):
        return "string"
    if isinstance(v, (bool, np.bool_)):
        return "bool"
    if isinstance(v, numbers.Number):
        return "number"
    return type(v).__name__


def check_class_labels(
    y: Any, *, what: str = "y", unit: str = "samples"
) -> np.ndarray:
    """Class labels as a 1-d array, or a ``ValueError`` naming what is wrong.

    Refused: a missing label (``None`` or NaN), labels mixing types (numbers and
    strings, which cannot be sorted into classes), and a single class (DLC compares
    each sample with every class's prototype).

    Parameters
    ----------
    y : array-like of shape (n_samples,)
    what : str, default="y"
        How messages name the labels (the command line passes its DATA).
    unit : str, default="samples"

    Returns
    -------
    y : ndarray of shape (n_samples,)
    """
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-d class labels, got an array of shape {arr.shape}")
    if arr.dtype == object:
        values = arr.tolist()
        missing = [i for i, v in enumerate(values) if _is_missing(v)]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise ValueError(
                f"{what} has a missing label (None or NaN) at index {missing[0]}{more}; "
                "every sample needs a class label"
            )
        kinds: dict[str, Any] = {}
        for v in values:
            kinds.setdefault(_kind(v), v)
        if len(kinds) > 1:
            shown = " and ".join(f"{k}s (e.g. {v!r})" for k, v in sorted(kinds.items()))
            raise ValueError(
                f"{what} mixes label types: {shown}; use one type for every label "
                "(e.g. all strings)"
            )
    elif arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
        i = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(
            f"{what} has a missing label (NaN or infinity) at index {i}; every sample needs "
            "a class label"
        )
    classes, counts = np.unique(arr, return_counts=True)
    if len(classes) == 1:
        raise ValueError(single_class_message(what, classes[0], int(counts[0]), unit))
    return arr
