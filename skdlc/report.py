"""Figures and a self-contained HTML report of a pruning run.

Every figure function returns a :class:`matplotlib.figure.Figure`, built without pyplot
(nothing global changes; Jupyter displays it, ``fig.savefig(path)`` writes it);
:func:`write_report` puts them, with thumbnails of the easiest and hardest images, the
likely mislabelled samples, counts per class, timings, the command and versions, into
one ``report.html`` that opens offline, and the same figures as PNGs in ``figures/``.

Examples
--------
>>> import numpy as np
>>> from skdlc.report import plot_score_distribution
>>> rng = np.random.default_rng(0)
>>> scores, labels = rng.random(40), np.repeat(["a", "b"], 20)
>>> fig = plot_score_distribution(scores, labels, scores < 0.5)
>>> len(fig.axes)
2
"""

from __future__ import annotations

import datetime as _dt
import io
import math
import os
import platform
import shlex
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ._report_html import Section, esc, not_available, page, png_img, table, truncate
from ._report_images import Thumbnails

__all__ = [
    "write_report",
    "likely_mislabelled",
    "plot_score_distribution",
    "plot_class_counts",
    "plot_examples",
    "plot_learning_path",
    "plot_selection",
    "plot_mislabelled",
    "environment_versions",
]

_KEPT, _DROPPED, _ACCENT = "#1f9d55", "#b8bec9", "#d1495b"
#: Figure file names written under ``figures/`` (a rerun removes the ones it did not make).
FIGURES = ("counts", "scores", "examples", "path", "selection", "mislabelled")


# ------------------------------------------------------------------------ inputs
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


# ------------------------------------------------------------------------ figures
def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # lazy: `import skdlc` stays light

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _shown(names: Sequence[str], max_classes: int) -> tuple[list[int], int]:
    shown = list(range(min(len(names), max_classes)))
    return shown, len(names) - len(shown)


def plot_score_distribution(scores, labels, kept, *, classes=None, max_classes: int = 20,
                            bins: int = 20):
    """Histogram of the scores of each class, kept and dropped samples stacked.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Hardness scores (higher is harder).
    labels : array-like of shape (n_samples,) or None
        Class (or category) of each sample; None draws one histogram of all samples.
    kept : array-like of shape (n_samples,) of bool, or indices of the kept samples
    classes : sequence, default=None
        Class order (default: sorted labels).
    max_classes : int, default=20
        At most this many panels (the first classes); the title says how many are left out.
    bins : int, default=20

    Returns
    -------
    matplotlib.figure.Figure
    """
    scores = np.asarray(scores, dtype=float)
    kept = _kept_mask(kept, len(scores))
    g, names = _groups(labels, len(scores), classes)
    shown, hidden = _shown(names, max_classes)
    ncols = min(5, len(shown))
    nrows = math.ceil(len(shown) / ncols)
    fig = _figure(2.6 * ncols + 0.4, 1.9 * nrows + 0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, k in zip(axes.ravel(), shown):
        s, m = scores[g == k], kept[g == k]
        edges = np.histogram_bin_edges(s[np.isfinite(s)], bins=bins) if np.isfinite(s).any() else bins
        # stepfilled: one polygon per series instead of a patch per bar (much faster to draw)
        ax.hist([s[m], s[~m]], bins=edges, stacked=True, histtype="stepfilled", color=[_KEPT, _DROPPED],
                label=["kept", "dropped"])
        ax.set_title(f"{truncate(names[k], 28)}  ({m.sum()}/{len(s)} kept)", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(shown):]:
        ax.set_visible(False)
    axes[0, 0].legend(fontsize=7, frameon=False)
    more = f"; {hidden} more classes not shown" if hidden else ""
    fig.suptitle(f"score per class (higher = harder){more}", fontsize=10)
    fig.supxlabel("score", fontsize=9)
    return fig


def plot_class_counts(labels, kept, *, classes=None, max_classes: int = 60):
    """Bars of each class's size before pruning and after (kept).

    Parameters
    ----------
    labels : array-like of shape (n_samples,) or None
    kept : array-like of shape (n_samples,) of bool, or indices of the kept samples
    classes : sequence, default=None
    max_classes : int, default=60
        At most this many bars (the first classes).

    Returns
    -------
    matplotlib.figure.Figure
    """
    n = len(labels) if labels is not None else len(np.asarray(kept))
    kept = _kept_mask(kept, n)
    g, names = _groups(labels, n, classes)
    before = np.bincount(g, minlength=len(names))
    after = np.bincount(g[kept], minlength=len(names))
    shown, hidden = _shown(names, max_classes)
    x = np.arange(len(shown))
    fig = _figure(min(3 + 0.35 * len(shown), 14), 3.2)
    ax = fig.subplots()
    ax.bar(x, before[shown], color=_DROPPED, label="before")
    ax.bar(x, after[shown], color=_KEPT, label="kept")
    ax.set_xticks(x, [truncate(names[k], 14) for k in shown], rotation=45 if len(shown) > 8 else 0,
                  ha="right" if len(shown) > 8 else "center", fontsize=7)
    ax.set_ylabel("samples")
    ax.legend(fontsize=8, frameon=False)
    more = f" (first {len(shown)} of {len(names)} classes)" if hidden else ""
    ax.set_title(f"samples per class before and after pruning{more}", fontsize=10)
    return fig


def _order_by_score(scores, g, k, n):
    rows = np.flatnonzero(g == k)
    order = rows[np.argsort(scores[rows], kind="stable")]
    return order[:n], order[::-1][:n]  # easiest first; hardest first


def _mosaic(rows, thumbs: Thumbnails, kept, captions, *, gap_after: int | None = None):
    """One RGB array holding rows of outlined thumbnails (fast: a single imshow)."""
    size, border, pad = thumbs.size, 3, 4
    cell = size + 2 * border + pad
    ncols = max(len(r) for r in rows) + (1 if gap_after is not None else 0)
    canvas = np.full((len(rows) * (cell + 12), ncols * cell, 3), 255, dtype=np.uint8)
    positions = []
    for r, row in enumerate(rows):
        for c, i in enumerate(row):
            col = c + (1 if gap_after is not None and c >= gap_after else 0)
            y0, x0 = r * (cell + 12), col * cell
            colour = (31, 157, 85) if kept[i] else (184, 190, 201)
            canvas[y0:y0 + size + 2 * border, x0:x0 + size + 2 * border] = colour
            canvas[y0 + border:y0 + border + size, x0 + border:x0 + border + size] = (238, 240, 244)
            im = thumbs.get(i)
            if im is not None:
                if max(im.size) < size:  # small images (e.g. 28 px digits): enlarge, blocky
                    f = size / max(im.size)
                    im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), 0)
                a = np.asarray(im)
                oy, ox = (size - a.shape[0]) // 2, (size - a.shape[1]) // 2
                canvas[y0 + border + oy:y0 + border + oy + a.shape[0],
                       x0 + border + ox:x0 + border + ox + a.shape[1]] = a
            positions.append((x0 + border + size / 2, y0 + size + 2 * border + 1, captions(i)))
    return canvas, positions


def plot_examples(paths, scores, labels, kept, *, classes=None, n: int = 6, max_classes: int = 8,
                  thumb_size: int = 64, _thumbs: Thumbnails | None = None):
    """The ``n`` easiest and ``n`` hardest images of each class, the kept ones outlined in green.

    Parameters
    ----------
    paths : sequence of str or path of shape (n_samples,)
        Image files.
    scores : array-like of shape (n_samples,)
    labels : array-like of shape (n_samples,) or None
    kept : array-like of shape (n_samples,) of bool, or indices of the kept samples
    classes : sequence, default=None
    n : int, default=6
        Images per side (easiest, hardest).
    max_classes : int, default=8
        Rows (the first classes).
    thumb_size : int, default=64
        Thumbnail side in pixels.

    Returns
    -------
    matplotlib.figure.Figure
    """
    scores = np.asarray(scores, dtype=float)
    kept = _kept_mask(kept, len(scores))
    g, names = _groups(labels, len(scores), classes)
    thumbs = _thumbs or Thumbnails(paths, thumb_size)
    shown, hidden = _shown(names, max_classes)
    rows = []
    for k in shown:
        easy, hard = _order_by_score(scores, g, k, n)
        rows.append(list(easy) + list(hard[::-1]))  # hardest at the far right
    canvas, pos = _mosaic(rows, thumbs, kept, lambda i: truncate(os.path.basename(os.fspath(paths[i])), 11),
                          gap_after=None)
    h, w = canvas.shape[:2]
    fig = _figure(w / 80 + 1.4, h / 80 + 0.6)
    ax = fig.subplots()
    ax.imshow(canvas, interpolation="nearest")
    for x, y, text in pos:
        ax.text(x, y, text, ha="center", va="top", fontsize=4.5, color="#3a4150")
    row_h = h / max(len(rows), 1)
    for r, k in enumerate(shown):
        ax.text(-6, r * row_h + thumbs.size / 2, truncate(names[k], 16), ha="right", va="center", fontsize=7)
    ax.set_axis_off()
    more = f"; {hidden} more classes in the report" if hidden else ""
    fig.suptitle(f"easiest (left) to hardest (right) per class; green outline = kept{more}", fontsize=9)
    return fig


def _path_dict(calibration) -> dict | None:
    d = _as_dict(calibration, "calibration_")
    if d is None:
        return None
    missing = [k for k in ("probe_ratios", "accuracies") if k not in d]
    if missing:
        raise ValueError(f"calibration needs keys 'probe_ratios' and 'accuracies'; missing {missing}")
    return d


def plot_learning_path(calibration):
    """Nearest-class-mean accuracy of each probed masked model against its ratio.

    A model whose accuracy falls to the chance line has collapsed: its losses carry no
    information about the samples. The ratios of the chosen path are marked.

    Parameters
    ----------
    calibration : Calibration, its ``to_dict()``, or a fitted scorer with ``calibration_``
        Needs ``probe_ratios`` and ``accuracies``; ``chance`` and ``ratios`` are drawn
        when present.

    Returns
    -------
    matplotlib.figure.Figure
    """
    d = _path_dict(calibration)
    if d is None:
        raise ValueError("no calibration: the scorer's path was not calibrated")
    r = np.asarray(d["probe_ratios"], dtype=float)
    a = np.asarray(d["accuracies"], dtype=float)
    fig = _figure(6.4, 3.4)
    ax = fig.subplots()
    ax.plot(r, a, "o-", color="#2456a6", ms=4, lw=1.5, label="probed model")
    if d.get("chance") is not None:
        ax.axhline(float(d["chance"]), color="#777", ls="--", lw=1, label="chance")
    chosen = np.asarray(d.get("ratios") or [], dtype=float)
    if chosen.size:
        on = np.isin(np.round(r, 6), np.round(chosen, 6))
        ax.plot(r[on], a[on], "o", ms=10, mfc="none", mec=_ACCENT, mew=2, label="chosen path")
        for x in chosen[~np.isin(np.round(chosen, 6), np.round(r, 6))]:
            ax.axvline(x, color=_ACCENT, lw=1, ls=":")
    ax.set_xlabel("mask ratio (share of weights zeroed)")
    ax.set_ylabel("nearest-class-mean accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, frameon=False)
    ax.set_title("learning path: accuracy of each masked model", fontsize=10)
    return fig


def plot_selection(selection):
    """Validation score of every selection candidate, the chosen one marked.

    One horizontal bar per candidate (mean +- standard error over the folds, in the
    table's order, simplest first), the chosen one in the accent colour, and the
    one-standard-error line of the best candidate: the rule picks the simplest candidate
    at or right of it.

    Parameters
    ----------
    selection : SelectionResult or its ``to_dict()``
        ``table`` rows with ``candidate``, ``mean``, ``sem``, ``chosen``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    d = _selection_dict(selection)
    if d is None:
        raise ValueError("no selection result")
    rows = list(d.get("table") or [])
    if not rows:
        raise ValueError("the selection result has an empty table")

    def num(v, default=float("nan")):
        return default if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    means = np.array([num(r.get("mean")) for r in rows])
    sems = np.array([num(r.get("sem"), 0.0) for r in rows])
    names = [truncate(str(r.get("candidate")), 34) for r in rows]
    colors = [_ACCENT if r.get("chosen") else "#9aa5b1" for r in rows]
    fig = _figure(6.4, 0.8 + 0.24 * len(rows))
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]  # the first (simplest) candidate on top
    ax.barh(y, means, xerr=sems, color=colors, height=0.7, capsize=2, error_kw={"lw": 0.8})
    ax.set_yticks(y, names, fontsize=7)
    finite = np.isfinite(means)
    if finite.any():
        best = int(np.nanargmax(means))
        ax.axvline(means[best] - sems[best], ls="--", lw=1, color="k",
                   label="best mean - 1 standard error")
        lo, hi = np.nanmin(means - sems), np.nanmax(means + sems)
        pad = max((hi - lo) * 0.15, 1e-3)
        ax.set_xlim(lo - pad, hi + pad)
        ax.legend(fontsize=7, frameon=False, loc="lower right")
    ax.set_xlabel("validation accuracy (mean over folds)")
    gamma = num(d.get("gamma"))
    chosen = f": {d.get('strategy')}" + ("" if math.isnan(gamma) else f", gamma {gamma:g}")
    ax.set_title(f"how the selection was chosen{chosen}", fontsize=10)
    return fig


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


def plot_mislabelled(paths, suspects, kept, *, max_items: int = 24, thumb_size: int = 64,
                     _thumbs: Thumbnails | None = None):
    """Thumbnails of the likely mislabelled images, captioned ``label -> suggested``.

    Parameters
    ----------
    paths : sequence of str or path of shape (n_samples,)
    suspects : pandas.DataFrame
        The output of :func:`likely_mislabelled`.
    kept : array-like of shape (n_samples,) of bool, or indices of the kept samples
    max_items : int, default=24
    thumb_size : int, default=64

    Returns
    -------
    matplotlib.figure.Figure
    """
    kept = _kept_mask(kept, len(paths))
    thumbs = _thumbs or Thumbnails(paths, thumb_size)
    s = suspects.head(max_items)
    idx = s["index"].to_numpy()
    caption = {int(i): f"{truncate(a, 7)}\u2192{truncate(b, 7)}" for i, a, b in zip(idx, s["label"], s["suggested"])}
    per_row = 12
    rows = [list(idx[j:j + per_row]) for j in range(0, len(idx), per_row)] or [[]]
    fig_rows = [r for r in rows if r]
    if not fig_rows:
        fig = _figure(5, 1)
        fig.text(0.5, 0.5, "no sample flagged", ha="center", va="center")
        return fig
    canvas, pos = _mosaic(fig_rows, thumbs, kept, lambda i: caption[int(i)])
    h, w = canvas.shape[:2]
    fig = _figure(w / 80 + 0.4, h / 80 + 0.6)
    ax = fig.subplots()
    ax.imshow(canvas, interpolation="nearest")
    for x, y, text in pos:
        ax.text(x, y, text, ha="center", va="top", fontsize=5, color="#3a4150")
    ax.set_axis_off()
    more = f" (first {len(s)} of {len(suspects)})" if len(suspects) > len(s) else ""
    fig.suptitle(f"likely mislabelled{more}: label \u2192 closer class; green outline = kept", fontsize=9)
    return fig


# ------------------------------------------------------------------------ report
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


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


class _Figures:
    """Renders each figure once: PNG bytes for the HTML and for ``figures/``."""

    def __init__(self):
        self.png: dict[str, bytes] = {}
        self.seconds: dict[str, float] = {}

    def add(self, name: str, make, *, embed: bool = True) -> str:
        t = time.perf_counter()
        self.png[name] = _png(make())
        self.seconds[name] = time.perf_counter() - t
        return png_img(self.png[name], name) if embed else ""


def _thumb_cell(i: int, thumbs: Thumbnails, name: str, caption: str, kept: bool) -> str:
    uri = thumbs.data_uri(i)
    img = (f'<img src="{uri}" alt="{esc(name)}">' if uri
           else '<div class="ph" title="unreadable">?</div>')
    cls = "t kept" if kept else "t"
    return (f'<figure class="{cls}" title="{esc(name)}">{img}'
            f"<figcaption>{esc(truncate(name, 40))}</figcaption><figcaption>{esc(caption)}</figcaption></figure>")


def _record_item(text: str, score: float, kept: bool, n_chars: int) -> str:
    tag = '<span class="tag k">kept</span>' if kept else '<span class="tag d">dropped</span>'
    cls = "kept" if kept else ""
    return f'<li class="{cls}">{tag}<b>{score:.4g}</b> <code>{esc(truncate(text, n_chars))}</code></li>'


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def write_report(
    folder,
    *,
    scores,
    labels,
    kept,
    paths: Sequence | None = None,
    texts: Sequence[str] | None = None,
    losses=None,
    classes: Sequence | None = None,
    calibration=None,
    selection=None,
    timings: Mapping[str, float] | None = None,
    command: str | Sequence[str] | None = None,
    versions: Mapping[str, str] | None = None,
    title: str = "skdlc pruning report",
    info: Mapping[str, Any] | None = None,
    likely_broken: Sequence[Mapping[str, Any]] | None = None,
    max_classes: int = 20,
    n_examples: int = 6,
    max_mislabelled: int = 24,
    thumb_size: int = 64,
    record_chars: int = 300,
) -> Path:
    """Write ``report.html`` (self-contained, opens offline) and ``figures/*.png`` into ``folder``.

    Sections: overview, counts per class, score distribution, easiest and hardest
    samples (image thumbnails with file names, or truncated text records), learning
    path, selection, likely mislabelled samples, and the run (timings, command,
    versions). A section whose input is missing says "not available". All user text
    is HTML-escaped; only the images shown are read, as small JPEG thumbnails, so the
    report's size and time do not grow with the data set beyond the tables.

    Parameters
    ----------
    folder : str or path
        Created if needed.
    scores : array-like of shape (n_samples,)
        Hardness scores (higher is harder).
    labels : array-like of shape (n_samples,) or None
        Class of each sample (for text: the category, or None).
    kept : array-like of shape (n_samples,) of bool, or indices of the kept samples
    paths : sequence of shape (n_samples,), default=None
        Image files: thumbnails in the report.
    texts : sequence of str of shape (n_samples,), default=None
        Text records (when there are no images): the easiest and hardest are listed.
    losses : array-like of shape (n_samples, n_classes), default=None
        Per-class losses (the last ``n_classes`` columns of ``DLCScorer.transform``):
        the likely-mislabelled list.
    classes : sequence of length n_classes, default=None
        The class of each column of ``losses`` (``DLCScorer.classes_``); default: the
        sorted labels.
    calibration : Calibration, its ``to_dict()`` or a fitted scorer, default=None
        The learning path (``probe_ratios``, ``accuracies``, ``chance``, ``ratios``).
    selection : SelectionResult or its ``to_dict()``, default=None
        The validation table of the selection candidates (the summary of
        ``skdlc prune --gamma auto``'s search is accepted too).
    timings : mapping of str to float, default=None
        Seconds per step.
    command : str or sequence of str, default=None
        The command line (e.g. ``sys.argv``).
    versions : mapping of str to str, default=None
        Default: :func:`environment_versions`.
    title : str, default="skdlc pruning report"
    info : mapping, default=None
        More facts for the overview (data, backbone, keep ratio, ...).
    likely_broken : sequence of mapping, default=None
        Records flagged as likely broken pairs (``skdlc prune-instructions``), hardest
        first: each with ``record`` (index) and optionally ``line``, ``score``,
        ``category``, ``kept``. Given: a "Likely broken pairs" section lists them.
    max_classes : int, default=20
        Classes with figures and thumbnails (the counts table lists all).
    n_examples : int, default=6
        Easiest and hardest samples shown per class.
    max_mislabelled : int, default=24
    thumb_size : int, default=64
        Thumbnail side, pixels.
    record_chars : int, default=300
        Longest text record shown.

    Returns
    -------
    pathlib.Path
        The path of ``report.html``.
    """
    t_start = time.perf_counter()
    folder = Path(folder)
    scores = np.asarray(scores, dtype=float).ravel()
    n = len(scores)
    kept = _kept_mask(kept, n)
    g, names = _groups(labels, n, classes)
    for what, seq in (("paths", paths), ("texts", texts)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{what} must have one entry per score ({n}), got {len(seq)}")
    thumbs = Thumbnails(paths, thumb_size) if paths is not None else None
    unit = "category" if paths is None and texts is not None else "class"  # text records: --category-field
    figs = _Figures()
    sections = [
        _overview(n, kept, names, info, unit),
        _counts(g, names, kept, labels, classes, figs, unit),
        _examples(scores, g, names, kept, paths, texts, thumbs, labels, classes, max_classes,
                  n_examples, record_chars, figs),
        _mislabelled(losses, labels, classes, kept, paths, texts, thumbs, max_mislabelled, record_chars, figs),
        *([] if likely_broken is None else [_likely_broken(likely_broken, n, kept, texts, max_mislabelled)]),
        _scores(scores, labels, kept, classes, names, max_classes, figs),
        _path(calibration, figs),
        _selection(selection, figs),
    ]
    # the run section last, so that it can say how long the report itself took
    timings = dict(timings or {})
    timings["report"] = round(time.perf_counter() - t_start, 3)
    sections.append(_run(timings, command, versions))
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    html_text = page(title, f"{n} samples, {int(kept.sum())} kept; written {when} by skdlc", sections)
    _write_outputs(folder, html_text, figs.png)
    return folder / "report.html"


def _write_outputs(folder: Path, html_text: str, pngs: Mapping[str, bytes]) -> None:
    from ._io import atomic_write

    fig_dir = folder / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    for name in FIGURES:  # a figure an earlier run drew and this one could not
        if name not in pngs:
            (fig_dir / f"{name}.png").unlink(missing_ok=True)
    for name, data in pngs.items():
        with atomic_write(fig_dir / f"{name}.png", "wb") as f:
            f.write(data)
    with atomic_write(folder / "report.html", "w", encoding="utf-8") as f:
        f.write(html_text)
    # the temporary files are created private (0600); a report is meant to be shared
    mode = 0o666 & ~_umask()
    for p in [folder / "report.html", *(fig_dir / f"{name}.png" for name in pngs)]:
        os.chmod(p, mode)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------------ sections
def _overview(n, kept, names, info, unit) -> Section:
    rows = [("samples", n), ("kept", f"{int(kept.sum())} ({100 * kept.mean():.1f}%)" if n else "0"),
            ({"class": "classes", "category": "categories"}[unit] if names != ["all"] else "groups",
             len(names))]
    rows += [(k, _fmt(v)) for k, v in (info or {}).items() if v is not None]
    return Section("overview", "Overview", table(None, rows))


def _counts(g, names, kept, labels, classes, figs, unit) -> Section:
    before = np.bincount(g, minlength=len(names))
    after = np.bincount(g[kept], minlength=len(names))
    rows = [(c, b, a, f"{100 * a / b:.1f}%" if b else "") for c, b, a in zip(names, before, after)]
    rows.append(("total", int(before.sum()), int(after.sum()),
                 f"{100 * after.sum() / max(before.sum(), 1):.1f}%"))
    head = (unit if labels is not None else "group", "before", "kept", "kept share")
    fig = figs.add("counts", lambda: plot_class_counts(labels, kept, classes=classes)) if len(names) > 1 else ""
    return Section("counts", f"Counts per {unit}", '<div class="pair">' + fig
                   + table(head, rows, numeric=(1, 2, 3), scroll=len(rows) > 12) + "</div>")


def _scores(scores, labels, kept, classes, names, max_classes, figs) -> Section:
    if not np.isfinite(scores).any():
        return Section("scores", "Score distribution", not_available("no finite score"))
    fig = figs.add("scores", lambda: plot_score_distribution(scores, labels, kept, classes=classes,
                                                            max_classes=max_classes))
    return Section("scores", "Score distribution",
                   '<p class="note">Green: kept; grey: dropped. Higher score = harder sample.</p>' + fig)


def _examples(scores, g, names, kept, paths, texts, thumbs, labels, classes, max_classes, n_ex,
              record_chars, figs) -> Section:
    title = "Easiest and hardest samples"
    if paths is None and texts is None:
        return Section("examples", title, not_available("no image paths or texts were given"))
    shown, hidden = _shown(names, max_classes)
    parts = []
    if paths is not None:
        parts.append('<p class="legend">Per class, the easiest (left) to the hardest (right), with file name and '
                     'score; outline:<span class="k"></span>kept<span></span>dropped. Hover for the full name.</p>')
    for k in shown:
        easy, hard = _order_by_score(scores, g, k, n_ex)
        if paths is not None:
            cells = [_thumb_cell(i, thumbs, os.path.basename(os.fspath(paths[i])), f"{scores[i]:.3g}", kept[i])
                     for i in list(easy) + list(hard[::-1])]
            parts.append(f'<div class="row"><div class="cname">{esc(names[k])}</div>{"".join(cells[:len(easy)])}'
                         f'<div class="gap">\u2026</div>{"".join(cells[len(easy):])}</div>')
            continue
        if len(names) > 1 or labels is not None:
            parts.append(f"<h3>{esc(names[k])}</h3>")
        for side, rows in (("easiest", easy), ("hardest", hard)):
            items = "".join(_record_item(texts[i], scores[i], kept[i], record_chars) for i in rows)
            parts.append(f'<div class="note">{side}</div><ol class="rec">{items}</ol>')
    if hidden:
        parts.append(f'<p class="note">{hidden} more classes not shown.</p>')
    if paths is not None:  # the same grid as a PNG in figures/ (not embedded twice)
        figs.add("examples", lambda: plot_examples(paths, scores, labels, kept, classes=classes, n=n_ex,
                                                   _thumbs=thumbs), embed=False)
    return Section("examples", title, "\n".join(parts))


def _path(calibration, figs) -> Section:
    title = "Learning path"
    d = _path_dict(calibration)
    if d is None:
        return Section("path", title, not_available("the masking path was not calibrated (no calibration given)"))
    fig = figs.add("path", lambda: plot_learning_path(d))
    rows = [(f"{r:g}", f"{a:.3f}", "yes" if any(abs(r - c) < 1e-9 for c in d.get("ratios") or []) else "")
            for r, a in zip(d["probe_ratios"], d["accuracies"])]
    chance = f" Chance: {float(d['chance']):.3f}." if d.get("chance") is not None else ""
    note = ('<p class="note">Nearest-class-mean accuracy of each probed masked model on a sample of the '
            f"data; a model at the chance line has collapsed.{esc(chance)}</p>")
    return Section("path", title, note + fig + table(("ratio", "accuracy", "on the path"), rows, numeric=(0, 1)))


def _cell(v) -> str:
    """A table cell; rows may come from a pandas table (numpy bools, NaN for "no gamma")."""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else ""
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else _fmt(v)


def _selection(selection, figs) -> Section:
    title = "Selection"
    d = _selection_dict(selection)
    if d is None:
        return Section("selection", title, not_available("no selection search was run (fixed settings)"))
    rows = list(d.get("table") or [])
    if not rows:
        return Section("selection", title, not_available("the selection table is empty"))
    fig = figs.add("selection", lambda: plot_selection(d))
    chosen = next((r for r in rows if r.get("chosen")), None)
    head = (f"<p>Chosen: <b>{esc(d.get('strategy'))}</b>"
            + (f", gamma {esc(_cell(d['gamma']))}" if _cell(d.get("gamma")) else "")
            + (f" (candidate {esc(chosen.get('candidate'))})" if chosen else "") + ". "
            + f"Rule: {esc(d.get('rule', ''))}</p>")
    cols = ("candidate", "strategy", "gamma", "mean", "sem", "chosen")
    trows = [tuple(_cell(r.get(c)) for c in cols) for r in rows]
    return Section("selection", title, head + fig + table(cols, trows, numeric=(2, 3, 4), scroll=len(rows) > 14))


def _mislabelled(losses, labels, classes, kept, paths, texts, thumbs, max_items, record_chars, figs) -> Section:
    title = "Likely mislabelled"
    if losses is None:
        return Section("mislabelled", title, not_available("no per-class losses were given"))
    if labels is None:
        return Section("mislabelled", title, not_available("the samples have no labels"))
    try:
        sus = likely_mislabelled(losses, labels, classes=classes)
    except ValueError as exc:
        return Section("mislabelled", title, not_available(str(exc)))
    note = ('<p class="note">Among the hardest of their own class, closer to another class\'s prototype, '
            "and not among the hard ones of that class (per-class losses). Ranked by margin. "
            f"{len(sus)} flagged{f', first {max_items} shown' if len(sus) > max_items else ''}.</p>")
    if sus.empty:
        return Section("mislabelled", title, note + "<p>No sample flagged.</p>")
    top = [dict(r, index=int(r["index"])) for r in sus.head(max_items).to_dict("records")]
    parts = [note]
    if paths is not None:
        cells = "".join(
            _thumb_cell(r["index"], thumbs, os.path.basename(os.fspath(paths[r["index"]])),
                        f"{truncate(r['label'], 8)} \u2192 {truncate(r['suggested'], 8)}", kept[r["index"]])
            for r in top)
        parts.append(f'<div class="row">{cells}</div>')
    rows = [((os.fspath(paths[r["index"]]) if paths is not None else
              truncate(texts[r["index"]], 80) if texts is not None else r["index"]),
             r["label"], r["suggested"], f"{r['margin']:.3g}", "yes" if kept[r["index"]] else "")
            for r in top]
    parts.append(table(("sample", "label", "closer to", "margin", "kept"), rows, numeric=(3,)))
    if paths is not None:
        figs.add("mislabelled", lambda: plot_mislabelled(paths, sus, kept, max_items=max_items, _thumbs=thumbs),
                 embed=False)  # the thumbnails above, as a PNG in figures/
    return Section("mislabelled", title, "\n".join(parts))


def _likely_broken(items, n, kept, texts, max_items) -> Section:
    """The records flagged as broken pairs, with the estimated share (a text-data section)."""
    items = list(items)
    note = (f'<p class="note">Estimated share of broken pairs: {len(items) / max(n, 1):.1%} '
            f"({len(items)} of {n} records): the high mode of a two-component mixture of "
            "the log-scores, hardest first"
            f"{f'; first {max_items} shown' if len(items) > max_items else ''}.</p>")
    if not items:
        return Section("broken", "Likely broken pairs", note + "<p>No record flagged.</p>")
    rows = [(it.get("line", it["record"]), it.get("category", ""),
             f"{float(it['score']):.4g}" if "score" in it else "",
             "yes" if it.get("kept", kept[it["record"]]) else "",
             truncate(texts[it["record"]], 100) if texts is not None else "")
            for it in items[:max_items]]
    return Section("broken", "Likely broken pairs",
                   note + table(("line", "category", "score", "kept", "record"), rows, numeric=(0, 2)))


def _run(timings, command, versions) -> Section:
    parts = ["<h3>Timings</h3>"]
    parts.append(table(("step", "seconds"), [(k, f"{float(v):.2f}") for k, v in timings.items()], numeric=(1,)))
    parts.append("<h3>Command</h3>")
    if command is None:
        parts.append(not_available("the command was not given"))
    else:
        cmd = command if isinstance(command, str) else shlex.join([os.fspath(c) for c in command])
        parts.append(f"<pre>{esc(cmd)}</pre>")
    parts.append("<h3>Versions</h3>")
    versions = dict(versions) if versions is not None else environment_versions()
    parts.append(table(("package", "version"), versions.items()))
    return Section("run", "Run", "\n".join(parts))
