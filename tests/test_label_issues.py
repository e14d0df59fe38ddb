"""find_label_issues: flags, quality, suggestions and the summary from per-class losses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

from skdlc import DLCScorer, LabelIssueSummary, find_label_issues
from skdlc._label_issues import label_probabilities


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X.astype(np.float32), y


def _flip(y, n, seed, pair=False):
    rng = np.random.RandomState(seed)
    flip = np.zeros(len(y), bool)
    flip[rng.choice(len(y), n, replace=False)] = True
    yn = y.copy()
    yn[flip] = (y[flip] + (1 if pair else rng.randint(1, 10, flip.sum()))) % 10
    return yn, flip


def _losses(X, y):
    """DLCScorer's per-class losses with an identity backbone (pixels as features)."""
    scorer = DLCScorer(torch.nn.Identity(), mask_ratios=[0.0], engine="torch", device="cpu", verbose=False)
    return scorer.fit_transform(X, y), scorer.classes_


def test_planted_symmetric_flips_are_found(digits):
    X, y = digits
    yn, flip = _flip(y, 180, 0)
    L, classes = _losses(X, yn)
    issues, summary = find_label_issues(L, yn, classes=classes)
    flag = issues["is_label_issue"].to_numpy()
    precision = (flag & flip).sum() / flag.sum()
    recall = (flag & flip).sum() / flip.sum()
    assert precision > 0.75 and recall > 0.75, (precision, recall)
    assert roc_auc_score(flip, -issues["label_quality"]) > 0.95
    # the suggestion is mostly the label before the flip
    assert (issues["suggested_label"].to_numpy()[flag & flip] == y[flag & flip]).mean() > 0.9
    assert isinstance(summary, LabelIssueSummary)
    assert summary.n_issues == flag.sum() and summary.n_samples == len(y)
    assert 0.05 < summary.estimated_noise < 0.2  # 10% planted


def test_pair_flips_show_up_as_confused_pairs(digits):
    X, y = digits
    yn, flip = _flip(y, 270, 1, pair=True)
    L, classes = _losses(X, yn)
    issues, summary = find_label_issues(L, yn, classes=classes, n_pairs=10)
    pairs = summary.confused_pairs
    assert list(pairs.columns) == ["given_label", "suggested_label", "estimated_count", "share_of_given",
                                   "n_flagged"]
    assert len(pairs) == 10
    # planted: true k labelled k+1, so the given label is one above the suggested one
    top = pairs.head(5)
    assert ((top["given_label"] - top["suggested_label"]) % 10 == 1).mean() >= 0.8
    assert pairs["estimated_count"].is_monotonic_decreasing
    d = summary.to_dict()
    assert set(d["noise_rate"]) == set(range(10)) and len(d["confused_pairs"]) == 10
    assert isinstance(d["confused_pairs"][0]["given_label"], int)


def test_columns_order_and_string_labels():
    P = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.1, 0.9], [0.2, 0.8], [0.95, 0.05]])
    y = np.array(["cat", "cat", "cat", "dog", "dog", "dog"])
    issues, summary = find_label_issues(-np.log(P), y, classes=["cat", "dog"], quality="self_confidence")
    assert list(issues.columns) == ["is_label_issue", "label_quality", "given_label", "suggested_label"]
    assert issues["is_label_issue"].tolist() == [False] * 5 + [True]
    assert issues.loc[5, "suggested_label"] == "cat" and issues.loc[5, "given_label"] == "dog"
    np.testing.assert_allclose(issues["label_quality"], [0.9, 0.8, 0.7, 0.9, 0.8, 0.05])
    assert summary.noise_rate.index.tolist() == ["cat", "dog"]
    # columns in another order than sorted: classes says which is which
    swapped, _ = find_label_issues(-np.log(P[:, ::-1]), y, classes=["dog", "cat"], quality="self_confidence")
    pd.testing.assert_frame_equal(issues, swapped)


def test_normalized_margin_and_rules():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    logits = rng.normal(size=(400, 4))
    logits[np.arange(400), y] += 2.0
    L = -np.log(label_probabilities(-logits))
    q, _ = find_label_issues(L, y)  # normalized_margin by default
    assert q["label_quality"].between(0, 1).all()
    P = label_probabilities(L)
    own = P[np.arange(400), y]
    P[np.arange(400), y] = -1
    np.testing.assert_allclose(q["label_quality"], (own - P.max(1) + 1) / 2)
    neq, _ = find_label_issues(L, y, filter_by="predicted_neq_given")
    np.testing.assert_array_equal(neq["is_label_issue"], logits.argmax(1) != y)
    for rule in ("prune_by_noise_rate", "confident_learning"):
        got, _ = find_label_issues(L, y, filter_by=rule)
        assert not (got["is_label_issue"] & ~neq["is_label_issue"]).any()  # never the predicted class


def test_same_flags_as_cleanlab():
    import cleanlab.filter as cleanlab_filter  # the dev extra installs it: fail, not skip
    rng = np.random.default_rng(1)
    n, K = 1500, 6
    y = rng.integers(0, K, n)
    logits = rng.normal(size=(n, K)) * 1.5
    logits[np.arange(n), y] += 2.0
    yn = y.copy()
    f = rng.random(n) < 0.2
    yn[f] = (y[f] + rng.integers(1, K, f.sum())) % K
    L = -np.log(label_probabilities(-logits))
    for rule in ("prune_by_noise_rate", "confident_learning", "predicted_neq_given"):
        ours, _ = find_label_issues(L, yn, filter_by=rule)
        theirs = cleanlab_filter.find_label_issues(yn, label_probabilities(L), filter_by=rule, n_jobs=1)
        np.testing.assert_array_equal(ours["is_label_issue"].to_numpy(), theirs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(filter_by="vote"), "filter_by must be one of"),
    (dict(quality="entropy"), "quality must be one of"),
    (dict(classes=[0, 1, 2]), "losses has 2 columns but there are 3 classes"),
    (dict(classes=[0, 0]), "unique"),
    (dict(n_pairs=-1), "n_pairs"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        find_label_issues(np.ones((4, 2)), [0, 1, 0, 1], **kwargs)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"not in classes: \[7\]"):
        find_label_issues(np.ones((3, 2)), [0, 1, 7], classes=[0, 1])
    with pytest.raises(ValueError, match="one label per row"):
        find_label_issues(np.ones((3, 2)), [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        find_label_issues(np.array([[np.nan, 1.0], [1.0, 2.0]]), [0, 1])
    with pytest.raises(ValueError, match="embedding=True"):
        find_label_issues(np.ones((4, 5)), [0, 1, 0, 1])
