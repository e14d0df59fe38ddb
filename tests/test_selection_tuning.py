"""Calibrated path, cross-validated selection, the dropped hardest tail, gamma tie-break."""

import warnings

import numpy as np
import pytest

from skdlc import FlexRandSampler
from skdlc._calibration import Calibration, calibrate, ncm_accuracy, probe_grid, sample_rows
from skdlc._ratios import cumulative_ratios, resolve_mask_ratios
from skdlc._selection import drop_hardest_tail, select
from skdlc.tuning import default_candidates, tune_gamma, tune_selection


# ------------------------------------------------------------------ calibration
def _clustered(n_per_class=40, n_classes=4, dim=16, signal=3.0, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    centres = rng.normal(size=(n_classes, dim)) * signal
    return centres[y] + rng.normal(size=(len(y), dim)), y


def test_ncm_accuracy_separable_and_collapsed():
    X, y = _clustered()
    assert ncm_accuracy(X, y) > 0.95
    # a collapsed model: every row the same feature vector -> ties -> counted wrong
    assert ncm_accuracy(np.ones_like(X), y) == 0.0
    # pure noise: near chance thanks to leave-one-out means
    noise = np.random.default_rng(1).normal(size=X.shape)
    assert ncm_accuracy(noise, y) < 0.45


def test_calibrate_stops_before_collapse():
    X, y = _clustered(seed=2)
    rng = np.random.default_rng(3)
    feats = {}
    for r in probe_grid("layer"):
        # signal fades with the ratio and is gone from 0.5 on
        keep = max(0.0, 1 - r / 0.45)
        feats[r] = keep * X + rng.normal(size=X.shape) * (0.2 + 3 * (1 - keep))
    cal = calibrate(feats, y, n_ratios=4)
    assert isinstance(cal, Calibration)
    assert cal.probe_ratios[0] == 0.0 and cal.ratios[0] == 0.0
    assert len(cal.ratios) == 4
    assert max(cal.ratios) < 0.5  # nothing at or past the collapse
    assert cal.collapse_ratio is not None and cal.collapse_ratio <= 0.5
    assert all(cal.informative[cal.probe_ratios.index(r)] for r in cal.ratios)
    d = cal.to_dict()
    assert d["ratios"] == list(cal.ratios) and d["chance"] == pytest.approx(0.25)


def test_calibrate_short_path_when_few_informative():
    X, y = _clustered(seed=4)
    rng = np.random.default_rng(5)
    feats = {0.0: X, 0.1: X + rng.normal(size=X.shape) * 0.1,
             0.2: rng.normal(size=X.shape), 0.3: rng.normal(size=X.shape)}
    cal = calibrate(feats, y, n_ratios=5)
    assert cal.ratios == (0.0, 0.1)  # collapsed variants never get a pass


def test_calibrate_validates():
    X, y = _clustered()
    with pytest.raises(ValueError, match="0.0"):
        calibrate({0.1: X}, y, 3)
    with pytest.raises(ValueError, match="n_ratios"):
        calibrate({0.0: X}, y, 0)
    with pytest.raises(ValueError, match="masking"):
        probe_grid("banana")


def test_sample_rows_stratified_and_bounded():
    y = np.repeat(np.arange(5), [500, 300, 100, 50, 3])
    rows = sample_rows(y, 300, random_state=0)
    assert len(rows) <= 300 and np.all(np.diff(rows) > 0)
    counts = np.bincount(y[rows], minlength=5)
    assert counts.min() >= 2 and counts[0] > counts[2]
    np.testing.assert_array_equal(sample_rows(y[:40], 300), np.arange(40))
    np.testing.assert_array_equal(rows, sample_rows(y, 300, random_state=0))


def test_cumulative_schedule():
    r = cumulative_ratios(50)
    assert r[0] == 0.0 and len(r) == 51
    assert r[-1] == pytest.approx(1 - 0.98**50, abs=1e-9)
    five = resolve_mask_ratios("cumulative")
    assert five == cumulative_ratios(5)
    assert five[1] == pytest.approx(1 - 0.98**10, abs=1e-9)


# ------------------------------------------------------------------ drop_hardest
def test_drop_hardest_tail_and_select():
    s = np.array([0.9, 0.1, 0.5, 0.3, 0.8, 0.2, 0.7, 0.4, 0.6, 0.0])
    np.testing.assert_array_equal(drop_hardest_tail(s, 3, 0.2), [1, 2, 3, 5, 6, 7, 8, 9])
    picked = select(s, 5, "random", rng=np.random.default_rng(0), drop_hardest=0.3)
    assert len(picked) == 5 and not set(picked) & {0, 4, 6}
    # never drops so many that fewer than n_keep remain
    assert len(select(s, 9, "random", rng=np.random.default_rng(0), drop_hardest=0.5)) == 9
    with pytest.raises(ValueError, match="drop_hardest"):
        drop_hardest_tail(s, 3, 1.0)


def test_sampler_drop_hardest_validated_and_applied():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 50)
    s = rng.random(100)
    kept = FlexRandSampler(0.4, strategy="random", drop_hardest=0.5, random_state=0).fit(
        s[:, None], y).sample_indices_
    for k in (0, 1):
        rows = np.flatnonzero(y == k)
        assert s[kept[y[kept] == k]].max() <= np.median(s[rows]) + 1e-12
    with pytest.raises(ValueError, match="drop_hardest"):
        FlexRandSampler(0.4, drop_hardest=-0.1).fit(s[:, None], y)


# ------------------------------------------------------------------ tune_selection
def _noisy_problem(seed=0, n_per_class=120, rate=0.3):
    rng = np.random.default_rng(seed)
    K = 3
    y = np.repeat(np.arange(K), n_per_class)
    emb = rng.normal(size=(len(y), 10)) + 2.5 * np.eye(K, 10)[y]
    flip = rng.random(len(y)) < rate
    yn = np.where(flip, (y + rng.integers(1, K, len(y))) % K, y)
    # a score that finds the flipped rows (as a prototype loss does)
    scores = rng.random(len(y)) + 2.0 * flip
    return emb, scores, yn


def test_tune_selection_drops_noise_when_it_pays():
    emb, scores, yn = _noisy_problem()
    # the sampler's candidates only: herding (simpler) is within one SE here too
    sampler_cands = [c for c in default_candidates() if c["strategy"] != "herding"]
    res = tune_selection(emb, scores, yn, 0.5, candidates=sampler_cands, random_state=0)
    assert res.params.get("drop_hardest", 0) > 0
    t = res.table
    assert t.chosen.sum() == 1 and {"candidate", "mean", "sem", "fold_0"} <= set(t.columns)
    best = t["mean"].max()
    row = t[t.chosen].iloc[0]
    assert row["mean"] >= best - t.loc[t["mean"].idxmax(), "sem"] - 1e-12
    d = res.to_dict()
    assert set(d) == {"strategy", "gamma", "params", "rule", "table"}
    assert len(d["table"]) == len(t)


def test_tune_selection_prefers_random_when_nothing_helps():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 100)
    emb = rng.normal(size=(300, 6)) + np.eye(3, 6)[y]
    res = tune_selection(emb, rng.random(300), y, 0.5, random_state=0)
    assert res.strategy == "random" and not res.params.get("drop_hardest")


def test_tune_selection_per_class_scores_and_candidates():
    emb, scores, yn = _noisy_problem(seed=2)
    per_class = np.tile(scores[:, None], (1, 3))
    res = tune_selection(emb, per_class, yn, 0.3, cv=3,
                         candidates=[{"strategy": "easy"}], random_state=0)
    assert set(res.table.candidate) == {"random", "easy"}  # random always compared
    assert [c for c in res.table.columns if c.startswith("fold_")] == ["fold_0", "fold_1", "fold_2"]
    with pytest.raises(ValueError):
        tune_selection(emb, scores, yn, 0.3, candidates=[{"strategy": "nope"}])
    with pytest.raises(ValueError, match="keep_ratio"):
        tune_selection(emb, scores, yn, 0.0)


def test_tune_selection_warns_on_tiny_folds_and_keeps_all():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 12)
    emb = rng.normal(size=(24, 4))
    with pytest.warns(UserWarning, match="noise"):
        tune_selection(emb, rng.random(24), y, 0.5, random_state=0)
    res = tune_selection(emb, rng.random(24), y, 1.0)
    assert res.strategy == "random"


def test_default_candidates_are_valid_sampler_settings():
    for c in default_candidates():
        if c["strategy"] == "herding":  # selects on the embedding, not through the sampler
            assert set(c) <= {"strategy", "drop_hardest"}
            continue
        FlexRandSampler(0.5, **c)._validate_params()
    assert default_candidates()[0] == {"strategy": "random"}
    assert {"strategy": "herding"} in default_candidates()


# ------------------------------------------------------------------ herding candidate
def _heavy_tailed(seed, K=3, n=200, d=10):
    """Classes whose rows scatter with heavy tails around their means: a small random
    subset is thrown off by far-out rows, a representative (herded) one is not."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(K), n)
    emb = (rng.normal(size=(K, d)) * 1.5)[y] + rng.standard_t(1.5, size=(K * n, d))
    return emb, rng.random(K * n), y


def test_herding_order_and_select_herding():
    from skdlc._selection import herding_order, select_herding

    Z = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    # the mean is 4.8: 2 first (closest), then 10 (pulls the mean back up), ...
    order = herding_order(Z)
    assert sorted(order.tolist()) == list(range(5)) and order[0] == 2 and order[1] == 3
    assert herding_order(Z, 2).tolist() == order[:2].tolist()
    # the hardest tail (row 4) is dropped before herding, and exactly n_keep are kept
    kept = select_herding(np.array([0.1, 0.2, 0.3, 0.4, 0.9]), Z, 3, drop_hardest=0.2)
    assert len(kept) == 3 and 4 not in kept


def test_tune_selection_chooses_herding_where_representative_wins():
    wins = 0
    for seed in range(3):
        emb, scores, y = _heavy_tailed(seed)
        res = tune_selection(emb, scores, y, 0.1, random_state=seed)
        t = res.table.set_index("candidate")
        assert t.loc["herding", "mean"] > t.loc["random", "mean"] + 0.03
        wins += res.strategy == "herding" and not res.params.get("drop_hardest")
        assert res.gamma is None and res.to_dict()["params"]["strategy"] == res.strategy
    assert wins == 3  # uninformative scores: no dropped tail is needed


def test_selection_result_select_reproduces_and_applies_every_kind():
    emb, scores, y = _heavy_tailed(0)
    res = tune_selection(emb, scores, y, 0.1, random_state=0)
    assert res.strategy == "herding"
    a = res.select(emb, scores, y, 0.1, random_state=0)
    b = res.select(emb, scores, y, 0.1, random_state=1)  # herding has no draw
    np.testing.assert_array_equal(a, b)
    assert len(a) == 60 and np.all(np.bincount(y[a]) == 20) and np.all(np.diff(a) > 0)
    # the same rows as herding each class by hand on the embedding's PCA
    from skdlc._selection import herding_order
    from skdlc.tuning import _pca

    P = _pca(emb, random_state=0)
    rows0 = np.flatnonzero(y == 0)
    np.testing.assert_array_equal(a[y[a] == 0], np.sort(rows0[herding_order(P[rows0], 20)]))
    with pytest.raises(ValueError, match="embedding"):
        res.select(None, scores, y, 0.1)
    # a FlexRand-kind result reproduces the sampler it stands for
    emb2, scores2, yn = _noisy_problem()
    r2 = tune_selection(emb2, scores2, yn, 0.5, random_state=0,
                        candidates=[{"strategy": "random", "drop_hardest": 0.2}])
    r2.params, r2.strategy = {"strategy": "random", "drop_hardest": 0.2}, "random"
    want = FlexRandSampler(0.5, strategy="random", drop_hardest=0.2, random_state=3).fit(
        scores2[:, None], yn).sample_indices_
    np.testing.assert_array_equal(r2.select(None, scores2, yn, 0.5, random_state=3), want)
    # a herding candidate with a dropped tail avoids the tail on the full data too
    r3 = tune_selection(emb2, scores2, yn, 0.5, random_state=0,
                        candidates=[{"strategy": "herding", "drop_hardest": 0.2}])
    r3.params = {"strategy": "herding", "drop_hardest": 0.2}
    kept = r3.select(emb2, scores2, yn, 0.5)
    from skdlc._selection import n_to_keep

    for k in range(3):
        rows = np.flatnonzero(yn == k)
        mine = np.intersect1d(kept, rows)
        assert len(mine) == n_to_keep(rows.size, 0.5)
        tail = rows[np.argsort(scores2[rows])[-round(0.2 * rows.size):]]
        assert not np.intersect1d(mine, tail).size  # the dropped tail stays out
    with pytest.raises(ValueError, match="herding"):
        tune_selection(emb2, scores2, yn, 0.5, candidates=[{"strategy": "herding", "gamma": 0.5}])


# ------------------------------------------------------------------ tune_gamma (issue 12)
def test_tune_gamma_tie_break_is_symmetric_and_warns_small():
    from sklearn.dummy import DummyClassifier

    y = np.repeat([0, 1], 6)
    rng = np.random.default_rng(0)
    # a probe that always answers the same: every candidate ties (0.5 on balanced data);
    # the documented rule (closest to 0.5, then the smaller) must pick 0.05, which the
    # float error abs(0.95 - 0.5) < abs(0.05 - 0.5) used to turn into 0.95
    with pytest.warns(UserWarning, match="noise"):
        res = tune_gamma(rng.random(12), y, features=np.eye(12), keep_ratio=0.5,
                         gammas=[0.95, 0.05], n_repeats=2, random_state=0,
                         estimator=DummyClassifier(strategy="constant", constant=0))
    assert res.mean_accuracy[0] == res.mean_accuracy[1]
    assert res.best_gamma == 0.05


# ------------------------------------------------------------------ CLI default
def test_prune_default_flags_run_cross_validated_selection(tmp_path, capsys):
    import json
    import warnings as _w

    from tests.test_cli import tiny_backbones, _images, _prune  # the tiny test backbone

    gen = tiny_backbones.__wrapped__()
    next(gen)
    try:
        _prune_default(tmp_path, capsys, _images, _prune, json, _w)
    finally:
        next(gen, None)


def _prune_default(tmp_path, capsys, _images, _prune, json, _w):
    from skdlc.datasets import make_image_folder

    X, y = _images()
    data = make_image_folder(tmp_path / "data", X, y, class_names=["cat", "dog", "emu"])
    out = tmp_path / "out"
    with _w.catch_warnings():
        _w.simplefilter("ignore")  # 36 images: the tiny-fold warning is expected
        assert _prune(data, out, "--keep", "0.5") == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["selection"]["rule"].startswith("simplest candidate")
    chosen = [r for r in s["selection"]["table"] if r["chosen"]]
    assert len(chosen) == 1 and s["strategy"] == chosen[0]["strategy"]
    assert s["n_kept"] == 18
    assert "selection " in capsys.readouterr().out
    # a fixed gamma with the automatic strategy means the paper's sampler at that gamma
    assert _prune(data, tmp_path / "o2", "--keep", "0.5", "--gamma", "0.3") == 0
    s2 = json.loads((tmp_path / "o2" / "summary.json").read_text())
    assert s2["strategy"] == "flexrand" and s2["gamma"] == 0.3 and s2["selection"] is None
