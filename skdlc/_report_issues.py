"""Report sections for label issues and duplicates (:func:`skdlc.prune`'s findings).

Kept apart from :mod:`skdlc.report` so that each file holds one idea; the page layout,
thumbnails and tables are the report's own helpers.
"""

from __future__ import annotations

import os

import numpy as np

from ._report_html import Section, esc, not_available, table, truncate

__all__ = ["label_issues_section", "duplicates_section"]


def _name(i: int, paths, texts) -> str:
    if paths is not None:
        return os.fspath(paths[i])
    if texts is not None:
        return truncate(texts[i], 80)
    return str(i)


def label_issues_section(issues, summary, kept, paths, texts, thumbs, max_items: int, thumb_cell) -> Section:
    """Flagged samples (lowest label quality first), estimated noise per class, confused pairs."""
    title = "Label issues"
    if issues is None:
        return Section("mislabelled", title, not_available("the run did not look for label issues"))
    flagged = issues[issues["is_label_issue"]].sort_values("label_quality", kind="stable")
    n = len(issues)
    note = (f'<p class="note">{len(flagged)} of {n} samples ({100 * len(flagged) / max(n, 1):.1f}%) flagged '
            "by confident learning on the DLC per-class losses (probabilities = softmax of minus the "
            "losses; per-class thresholds, cleanlab's <code>prune_by_noise_rate</code>); "
            f"estimated share of wrong labels: {100 * summary.estimated_noise:.1f}%. Label quality: the "
            "given label's probability minus the best other one, mapped to [0, 1] (higher = more likely "
            "right). "
            f"{f'First {max_items} shown.' if len(flagged) > max_items else ''}</p>")
    parts = [note]
    top = flagged.head(max_items)
    if paths is not None and len(top):
        cells = "".join(
            thumb_cell(int(i), thumbs, os.path.basename(os.fspath(paths[int(i)])),
                       f"{truncate(r.given_label, 8)} \u2192 {truncate(r.suggested_label, 8)}", kept[int(i)])
            for i, r in top.iterrows())
        parts.append(f'<div class="row">{cells}</div>')
    if len(top):
        rows = [(_name(int(i), paths, texts), r.given_label, r.suggested_label, f"{r.label_quality:.3g}",
                 "yes" if kept[int(i)] else "") for i, r in top.iterrows()]
        parts.append(table(("sample", "label", "suggested", "label quality", "kept"), rows, numeric=(3,)))
    else:
        parts.append("<p>No sample flagged.</p>")
    parts.append("<h3>Estimated share of wrong labels per class</h3>")
    noise = summary.noise_rate
    parts.append(table(("class", "estimated wrong", "flagged"),
                       [(c, f"{100 * v:.1f}%", int(((issues["given_label"] == c) & issues["is_label_issue"]).sum()))
                        for c, v in noise.sort_values(ascending=False, kind="stable").items()],
                       numeric=(1, 2), scroll=len(noise) > 14))
    pairs = summary.confused_pairs
    if len(pairs):
        parts.append("<h3>Most confused class pairs</h3>")
        parts.append(table(("given label", "looks like", "estimated count", "share of the class", "flagged"),
                           [(r.given_label, r.suggested_label, int(r.estimated_count),
                             f"{100 * r.share_of_given:.1f}%", int(r.n_flagged)) for r in pairs.itertuples()],
                           numeric=(2, 3, 4)))
    return Section("mislabelled", title, "\n".join(parts))


def duplicates_section(dups, labels, kept, paths, texts, thumbs, max_groups: int, thumb_cell) -> Section:
    """Duplicate groups, label conflicts (groups across classes) first."""
    title = "Duplicates"
    if dups is None:
        return Section("duplicates", title, not_available("the run did not look for duplicates"))
    if len(dups) == 0:
        return Section("duplicates", title, "<p>No exact or near-duplicates found.</p>")
    g = dups.groupby("group")
    conflict = g["cross_class"].first()
    n_exact = int((dups["kind"] == "exact").sum())
    same = "text" if paths is None and texts is not None else "file bytes or decoded pixels"
    note = (f'<p class="note">{g.ngroups} groups, {len(dups)} samples ({n_exact} with an exact copy: same '
            f"{same}; the rest near-duplicates: embedding cosine at or above the "
            f"threshold). <b>{int(conflict.sum())} groups span several labels</b> (label conflicts: the same "
            "content cannot be both), listed first.</p>")
    order = sorted(g.groups, key=lambda k: (not conflict[k], k))[:max_groups]
    parts = [note]
    rows = []
    for k in order:
        members = dups[dups["group"] == k]
        if paths is not None:
            cells = "".join(
                thumb_cell(int(r.row), thumbs, os.path.basename(os.fspath(paths[int(r.row)])),
                           f"{truncate(labels[int(r.row)], 10)} {r.kind} {r.similarity:.3f}", kept[int(r.row)])
                for r in members.itertuples())
            tag = " label conflict" if conflict[k] else ""
            parts.append(f'<h3>group {int(k)}{esc(tag)}</h3><div class="row">{cells}</div>')
        for r in members.itertuples():
            rows.append((int(k), _name(int(r.row), paths, texts), labels[int(r.row)], r.kind,
                         f"{r.similarity:.4f}", "yes" if conflict[k] else "", "yes" if kept[int(r.row)] else ""))
    parts.append(table(("group", "sample", "label", "kind", "similarity", "label conflict", "kept"), rows,
                       numeric=(0, 4), scroll=len(rows) > 20))
    if g.ngroups > len(order):
        parts.append(f"<p>{g.ngroups - len(order)} more groups in scores.csv (column duplicate_group).</p>")
    return Section("duplicates", title, "\n".join(parts))


def as_labels(labels, n: int) -> np.ndarray:
    return np.asarray(labels) if labels is not None else np.array([""] * n, dtype=object)
