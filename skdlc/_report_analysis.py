"""What the pruning report shows, computed: inputs normalised, likely mislabelled samples.

The drawing is in :mod:`skdlc._report_figures`, the page in :mod:`skdlc.report`.
"""

from __future__ import annotations

import math
import platform
from typing import Mapping

import numpy as np

def _as_dict(obj, attr: str | None = None) -> dict | None:
    """A ``to_dict()``-able object (or a fitted estimator holding one in ``attr``) as a dict."""
    if obj is None:
        return None
    if attr and hasattr(obj, attr) and not isinstance(obj, Mapping):
        obj = getattr(obj, attr)
        if obj is None:
            return None
    if hasattr(obj, "to_dict") and not isinstance(obj, Mapping):
        obj = obj.to_dict()
    if not isinstance(obj, Mapping):
        raise TypeError(f"expected a dict or an object with to_dict(), got {type(obj).__name__}")
    return dict(obj)


def _kept_mask(kept, n: int) -> np.ndarray:
    kept = np.asarray(kept)
    if kept.dtype == bool:
        if kept.shape != (n,):
            raise ValueError(f"kept must be a boolean mask of length {n}, got shape {kept.shape}")
        return kept
    if kept.ndim == 1 and np.issubdtype(kept.dtype, np.integer):  # indices of the kept rows
        mask = np.zeros(n, dtype=bool)
        mask[kept] = True
        return mask
    raise ValueError(f"kept must be a boolean mask or an array of indices, got dtype {kept.dtype}")


def _groups(labels, n: int, classes=None) -> tuple[np.ndarray, list[str]]:
    """Each row's group index and the group names (the classes; one group without labels)."""
    if labels is None:
        return np.zeros(n, dtype=int), ["all"]
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have length {n}, got shape {labels.shape}")
    names = [str(c) for c in (np.unique(labels) if classes is None else classes)]
    lookup = {c: i for i, c in enumerate(names)}
    idx = np.array([lookup.get(str(v), -1) for v in labels.tolist()], dtype=int)
    if (idx < 0).any():  # labels not in `classes`: add them after
        extra = sorted({str(v) for v in labels[idx < 0].tolist()})
        names += extra
        lookup = {c: i for i, c in enumerate(names)}
        idx = np.array([lookup[str(v)] for v in labels.tolist()], dtype=int)
    return idx, names


def _selection_dict(selection) -> dict | None:
    """A ``SelectionResult.to_dict()``; the CLI's older gamma search is converted to it."""
    d = _as_dict(selection)
    if d is not None and hasattr(d.get("table"), "to_dict"):  # a DataFrame, not yet rows
        d["table"] = d["table"].to_dict("records")
    if d is None or "table" in d:
        return d
    if "gammas" in d and "mean_accuracy" in d:  # skdlc prune's gamma_search summary
        n_rep = max(int(d.get("n_repeats", 1) or 1), 1)
        best = d.get("best_gamma")
        rows = [
            {"candidate": f"flexrand gamma={g:g}", "strategy": "flexrand", "gamma": float(g),
             "mean": float(m), "sem": float(s) / math.sqrt(n_rep),
             "chosen": best is not None and float(g) == float(best)}
            for g, m, s in zip(d["gammas"], d["mean_accuracy"], d.get("std_accuracy", [0.0] * len(d["gammas"])))
        ]
        if "random_subset_accuracy" in d:
            rows.append({"candidate": "random subset", "strategy": "random", "gamma": None,
                         "mean": float(d["random_subset_accuracy"]), "sem": None, "chosen": False})
        return {"strategy": "flexrand", "gamma": best, "params": {"gamma": best},
                "rule": d.get("procedure", "highest mean validation accuracy"), "table": rows}
    raise ValueError("selection must be a SelectionResult, its to_dict(), or a gamma-search summary "
                     f"with 'gammas' and 'mean_accuracy'; got keys {sorted(d)}")


def _path_dict(calibration) -> dict | None:
    d = _as_dict(calibration, "calibration_")
    if d is None:
        return None
    missing = [k for k in ("probe_ratios", "accuracies") if k not in d]
    if missing:
        raise ValueError(f"calibration needs keys 'probe_ratios' and 'accuracies'; missing {missing}")
    return d


def likely_mislabelled(losses, labels, *, classes=None, hard_quantile: float = 0.9):
    """Samples that are hard under their own label and look like ordinary members of another class.

    A sample is flagged when (a) its own-class loss is at or above its class's
    ``hard_quantile`` quantile (among the hardest of its class), (b) another class has
    a lower loss, and (c) that loss is below the same quantile of that other class's
    members' own losses: under the other label it would not be among the hard ones.
    (a) and (c) compare each loss only with losses of the same kind, so the test does
    not depend on the loss's scale (logit kind, temperature). Ranked by the margin,
    own loss minus the other class's loss.

    Parameters
    ----------
    losses : array-like of shape (n_samples, n_classes)
        Per-class losses, e.g. the last ``n_classes`` columns of
        :meth:`skdlc.DLCScorer.transform`.
    labels : array-like of shape (n_samples,)
    classes : sequence of length n_classes, default=None
        The class of each column (default: the sorted labels, as ``DLCScorer.classes_``).
    hard_quantile : float, default=0.9

    Returns
    -------
    pandas.DataFrame
        One row per flagged sample, most suspicious first: ``index``, ``label``,
        ``suggested``, ``own_loss``, ``suggested_loss``, ``margin``.

    Examples
    --------
    >>> import numpy as np
    >>> losses = np.array([[0.1, 2.0], [0.2, 1.9], [3.0, 0.1], [2.0, 0.2], [2.1, 0.3]])
    >>> likely_mislabelled(losses, ["a", "a", "a", "b", "b"])[["index", "label", "suggested"]].values.tolist()
    [[2, 'a', 'b']]
    """
    import pandas as pd

    losses = np.asarray(losses, dtype=float)
    labels = np.asarray(labels)
    if losses.ndim != 2 or losses.shape[0] != labels.shape[0]:
        raise ValueError(f"losses must have shape (n_samples, n_classes) with n_samples={labels.shape[0]}, "
                         f"got {losses.shape}")
    names = [str(c) for c in (np.unique(labels) if classes is None else classes)]
    if len(names) != losses.shape[1]:
        raise ValueError(f"losses has {losses.shape[1]} columns for {len(names)} classes")
    lookup = {c: i for i, c in enumerate(names)}
    y = np.array([lookup.get(str(v), -1) for v in labels.tolist()], dtype=int)
    if (y < 0).any():
        raise ValueError(f"label {labels[y < 0][0]!r} is not one of the classes")
    n, K = losses.shape
    own = losses[np.arange(n), y]
    other = losses.copy()
    other[np.arange(n), y] = np.inf
    alt = other.argmin(1)
    alt_loss = other[np.arange(n), alt]
    hard_cut = np.full(K, -np.inf)  # a class without members takes no one in
    for k in range(K):
        mine = own[y == k]
        if mine.size:
            hard_cut[k] = np.quantile(mine, hard_quantile)
    flag = (own >= hard_cut[y]) & (alt_loss < own) & (alt_loss < hard_cut[alt]) & (K > 1)
    idx = np.flatnonzero(flag)
    margin = own[idx] - alt_loss[idx]
    idx = idx[np.argsort(-margin, kind="stable")]
    return pd.DataFrame({
        "index": idx,
        "label": [names[k] for k in y[idx]],
        "suggested": [names[k] for k in alt[idx]],
        "own_loss": own[idx],
        "suggested_loss": alt_loss[idx],
        "margin": own[idx] - alt_loss[idx],
    })


def environment_versions() -> dict[str, str]:
    """Python, platform and the versions of skdlc and its main dependencies (those installed).

    Read from package metadata: nothing is imported.
    """
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("skdlc", "numpy", "scipy", "scikit-learn", "imbalanced-learn", "torch", "torchvision",
                 "timm", "onnx", "onnxruntime", "transformers", "pillow", "matplotlib", "ray"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    if "skdlc" not in out:
        from . import __version__

        out["skdlc"] = __version__
    return out
