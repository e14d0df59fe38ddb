"""skdlc.prune reports label issues and duplicates from its pass, in Python and in its files."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

import skdlc
from skdlc.datasets import load_mnist


@pytest.fixture(scope="module")
def run():
    X, y = load_mnist(n_per_class=20, return_X_y=True)
    X = np.concatenate([X, X[[0, 25]]])  # row 200 copies row 0 under another label
    y = np.concatenate([y, [(y[0] + 1) % 10, y[25]]])  # row 201: an exact copy, same label
    scorer = skdlc.DLCScorer(image_size=32, mask_ratios=[0.0, 0.2], verbose=False)
    res = skdlc.prune(X, y, keep_ratio=0.3, scorer=scorer, random_state=0, verbose=False)
    return X, y, res


def test_result_exposes_issues_and_duplicates(run):
    X, y, res = run
    issues = res.label_issues
    assert list(issues.columns) == ["is_label_issue", "label_quality", "given_label", "suggested_label"]
    assert len(issues) == len(y) and issues["label_quality"].between(0, 1).all()
    np.testing.assert_array_equal(issues["given_label"], y)
    assert res.label_summary.n_samples == len(y)
    d = res.duplicates.set_index("row")
    assert d.loc[200, "nearest_row"] == 0 and d.loc[200, "kind"] == "exact" and d.loc[200, "cross_class"]
    assert d.loc[201, "nearest_row"] == 25 and d.loc[201, "kind"] == "exact" and not d.loc[201, "cross_class"]
    assert "issues" in res.timings


def test_files_carry_the_columns_and_sections(run, tmp_path):
    _, y, res = run
    summary = res.write(tmp_path)
    with open(tmp_path / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["index", "label", "score", "kept", "label_issue", "label_quality",
                             "suggested_label", "duplicate_group"]
    assert rows[200]["duplicate_group"] == rows[0]["duplicate_group"] != ""
    flagged = sum(int(r["label_issue"]) for r in rows)
    assert flagged == res.label_summary.n_issues
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["label_issues"]["n_issues"] == flagged and "noise_rate" in saved["label_issues"]
    assert saved["duplicates"]["n_label_conflict_groups"] >= 1 and saved["duplicates"]["n_exact_rows"] >= 4
    assert summary["duplicates"] == saved["duplicates"]
    html = (tmp_path / "report.html").read_text()
    titles = re.findall(r"<h2>([^<]*)</h2>", html)
    assert "Label issues" in titles and "Duplicates" in titles and "label conflict" in html


def test_drop_duplicates_and_opt_out(run):
    X, y, _ = run
    scorer = skdlc.DLCScorer(image_size=32, mask_ratios=[0.0, 0.2], verbose=False)
    res = skdlc.prune(X, y, keep_ratio=1.0, scorer=scorer, random_state=0, verbose=False, drop_duplicates=True,
                      selection=skdlc.FlexRandSampler(gamma=0.5))
    groups = res.duplicates.groupby("group")["row"].agg(list)
    assert res.n_dropped_duplicates == sum(len(g) - 1 for g in groups)
    assert len(res.kept_indices) == len(y) - res.n_dropped_duplicates
    for g in groups:
        assert res.kept[g].sum() == 1  # one row per group survives
    off = skdlc.prune(X, y, keep_ratio=0.5, scorer=scorer, random_state=0, verbose=False, issues=False)
    assert off.label_issues is None and off.duplicates is None and "issues" not in off.timings
