"""Figures and a self-contained HTML report of a pruning run.

Every figure function returns a :class:`matplotlib.figure.Figure`, built without pyplot
(nothing global changes; Jupyter displays it, ``fig.savefig(path)`` writes it). Text
from the data (class names, file names) is drawn literally: a ``$`` never starts
matplotlib's math mode;
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
import math
import os
import shlex
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ._report_analysis import (  # noqa: F401  (re-exported: public names)
    _groups,
    _kept_mask,
    _path_dict,
    _selection_dict,
    environment_versions,
    likely_mislabelled,
)
from ._report_figures import (  # noqa: F401  (re-exported: public names)
    _order_by_score,
    _png,
    _shown,
    plot_class_counts,
    plot_examples,
    plot_learning_path,
    plot_mislabelled,
    plot_score_distribution,
    plot_selection,
)
from ._report_html import Section, esc, not_available, page, png_img, table, truncate
from ._report_images import Thumbnails
from ._report_issues import as_labels, duplicates_section, label_issues_section

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

#: Figure file names written under ``figures/`` (a rerun removes the ones it did not make).
FIGURES = ("counts", "scores", "examples", "path", "selection", "mislabelled")


# ------------------------------------------------------------------------ inputs


# ------------------------------------------------------------------------ figures


# ------------------------------------------------------------------------ report


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
    label_issues=None,
    label_summary=None,
    duplicates=None,
    unit: str | None = None,
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
    selection : dict, default=None
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
        ``category`` (or ``group``, a prompt cluster), ``kept``. Given: a "Likely broken
        pairs" section lists them.
    max_classes : int, default=20
        Classes with figures and thumbnails (the counts table lists all).
    n_examples : int, default=6
        Easiest and hardest samples shown per class.
    max_mislabelled : int, default=24
    thumb_size : int, default=64
        Thumbnail side, pixels.
    record_chars : int, default=300
        Longest text record shown.
    label_issues, label_summary : DataFrame and LabelIssueSummary, default=None
        :func:`skdlc.find_label_issues`'s output: the "Label issues" section (flagged
        samples, estimated share of wrong labels per class, confused pairs) replaces
        the losses-only "Likely mislabelled" list.
    duplicates : DataFrame, default=None
        :func:`skdlc.find_duplicates`'s output: a "Duplicates" section, label conflicts
        first.
    unit : {"class", "category"} or None, default=None
        What a label is called: None means "category" for text records without
        ``losses`` (instruction data) and "class" otherwise.

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
    if unit is None:  # instruction records: --category-field
        unit = "category" if paths is None and texts is not None and losses is None else "class"
    if unit not in ("class", "category"):
        raise ValueError(f"unit must be 'class' or 'category', got {unit!r}")
    figs = _Figures()
    sections = [
        _overview(n, kept, names, info, unit),
        _counts(g, names, kept, labels, classes, figs, unit),
        _examples(scores, g, names, kept, paths, texts, thumbs, labels, classes, max_classes,
                  n_examples, record_chars, figs),
        (_mislabelled(losses, labels, classes, kept, paths, texts, thumbs, max_mislabelled, record_chars, figs)
         if label_issues is None or label_summary is None else
         label_issues_section(label_issues, label_summary, kept, paths, texts, thumbs, max_mislabelled,
                              _thumb_cell)),
        *([] if duplicates is None else
          [duplicates_section(duplicates, as_labels(labels, n), kept, paths, texts, thumbs, max_classes,
                              _thumb_cell)]),
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
    rows = [(it.get("line", it["record"]), it.get("category", it.get("group", "")),
             f"{float(it['score']):.4g}" if "score" in it else "",
             "yes" if it.get("kept", kept[it["record"]]) else "",
             truncate(texts[it["record"]], 100) if texts is not None else "")
            for it in items[:max_items]]
    return Section("broken", "Likely broken pairs",
                   note + table(("line", "category / group", "score", "kept", "record"), rows, numeric=(0, 2)))


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
