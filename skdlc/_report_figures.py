"""The pruning report's figures (matplotlib, no pyplot): each ``plot_*`` returns a Figure.

User text (class and file names) is drawn literally: math text is off in every figure.
"""

from __future__ import annotations

import functools
import io
import math
import os
from typing import Sequence

import numpy as np

from ._report_analysis import _groups, _kept_mask, _path_dict, _selection_dict
from ._report_html import truncate
from ._report_images import Thumbnails

_KEPT, _DROPPED, _ACCENT = "#1f9d55", "#b8bec9", "#d1495b"


def _literal_text(make):
    """Build (and draw) a figure with matplotlib's math text off: user text such as a
    class named ``cost $5 and $6`` or ``$\\frac{a$`` is drawn as written, never parsed."""

    @functools.wraps(make)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
            return make(*args, **kwargs)

    return wrapper


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # lazy: `import skdlc` stays light

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _shown(names: Sequence[str], max_classes: int) -> tuple[list[int], int]:
    shown = list(range(min(len(names), max_classes)))
    return shown, len(names) - len(shown)


@_literal_text
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


@_literal_text
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


@_literal_text
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


@_literal_text
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


@_literal_text
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


@_literal_text
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


@_literal_text
def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
