"""Tests of skdlc._selection (selection rules) and skdlc._sampler.FlexRandSampler."""

import warnings

import numpy as np
import pytest
from imblearn.pipeline import make_pipeline
from imblearn.utils.estimator_checks import (
    check_dataframe_column_names_consistency,
    check_param_validation,
    estimator_checks_generator,
)
from scipy import sparse
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.utils.estimator_checks import (
    parametrize_with_checks as parametrize_with_sklearn_checks,
)

from skdlc import FlexRandSampler
from skdlc._selection import (
    STRATEGIES,
    n_easy,
    n_to_keep,
    rank_order,
    round_half_up,
    select,
    select_bins,
    select_flexible,
    select_flexrand,
)


def _rank_of(scores):
    """rank[i] = position of sample i in the easy-to-hard order."""
    rank = np.empty(len(scores), dtype=int)
    rank[rank_order(scores)] = np.arange(len(scores))
    return rank


def _perm_scores(n, seed=0):
    return np.random.default_rng(seed).permutation(n).astype(float) / n


# ------------------------------------------------------------------ selection rules
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("n", [1, 2, 7, 31, 100])
def test_select_exact_distinct_sorted(strategy, n):
    scores = _perm_scores(n, seed=n)
    rng = np.random.default_rng(1)
    for m in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        idx = select(scores, m, strategy, 0.3, rng, n_bins=4)
        assert idx.shape == (m,)
        assert np.unique(idx).size == m
        assert np.all(np.diff(idx) > 0)
        assert idx.min(initial=0) >= 0 and idx.max(initial=0) < max(n, 1)
        if m == n:
            np.testing.assert_array_equal(idx, np.arange(n))


def test_round_half_up_and_n_to_keep():
    assert [round_half_up(x) for x in (0.5, 1.5, 2.5, 2.4999, 0.0)] == [1, 2, 3, 2, 0]
    assert round_half_up(0.29 * 50) == 15  # 14.499999999999998 in floating point
    assert n_to_keep(5, 0.5) == 3  # round() would give 2 (half to even)
    assert n_to_keep(1, 0.01) == 1 and n_to_keep(40, 0.01) == 1
    assert n_to_keep(10, 1.0) == 10
    assert n_easy(10, 0.25) == 3 and n_easy(10, 0.04) == 0 and n_easy(10, 0.96) == 10


def test_flexrand_half_half_even():
    scores = _perm_scores(100)
    rank = _rank_of(scores)
    for seed in range(5):
        idx = select_flexrand(scores, 40, 0.3, np.random.default_rng(seed))
        assert np.sum(rank[idx] < 30) == 20  # 20 from the easy interval (30 samples)
        assert np.sum(rank[idx] >= 30) == 20


def test_flexrand_odd_goes_either_way():
    scores = _perm_scores(100)
    rank = _rank_of(scores)
    rngs = [np.random.default_rng(s) for s in range(30)]
    picks = [select_flexrand(scores, 41, 0.5, rng) for rng in rngs]
    n_from_easy = {int(np.sum(rank[idx] < 50)) for idx in picks}
    assert n_from_easy == {20, 21}


@pytest.mark.parametrize("gamma, n_lo_expected", [(0.05, 5), (0.95, 95)])
def test_flexrand_shortfall_taken_from_other_interval(gamma, n_lo_expected):
    scores = _perm_scores(100)
    rank = _rank_of(scores)
    assert n_easy(100, gamma) == n_lo_expected
    idx = select_flexrand(scores, 40, gamma, np.random.default_rng(0))
    assert idx.size == 40
    from_easy = int(np.sum(rank[idx] < n_lo_expected))
    # the short interval (5 samples) gives all it has, the other one the other 35
    assert (from_easy, 40 - from_easy) == ((5, 35) if gamma < 0.5 else (35, 5))


def test_flexrand_inclusion_probabilities_match_paper():
    # N=20, gamma=0.25: 5 easy, 15 hard; M=8: p_easy = 8/(2*20*0.25) = 0.8,
    # p_hard = 8/(2*20*0.75) = 4/15.
    scores = _perm_scores(20)
    rank = _rank_of(scores)
    counts = np.zeros(20)
    rng = np.random.default_rng(0)
    n_draws = 400
    for _ in range(n_draws):
        counts[select_flexrand(scores, 8, 0.25, rng)] += 1
    freq = counts / n_draws
    assert abs(freq[rank < 5].mean() - 0.8) < 0.03
    assert abs(freq[rank >= 5].mean() - 4 / 15) < 0.03


def test_easy_and_hard_pick_extremes():
    scores = _perm_scores(50, seed=3)
    rank = _rank_of(scores)
    easy = select(scores, 10, "easy")
    hard = select(scores, 10, "hard")
    assert set(rank[easy]) == set(range(10))
    assert set(rank[hard]) == set(range(40, 50))
    assert scores[easy].max() < np.sort(scores)[10]
    assert scores[hard].min() > np.sort(scores)[39]


def test_ties_are_broken_by_position():
    scores = np.zeros(6)
    np.testing.assert_array_equal(select(scores, 2, "easy"), [0, 1])
    np.testing.assert_array_equal(select(scores, 2, "hard"), [4, 5])
    # gamma=0.5: easy interval = positions 0..2 even though all scores tie
    np.testing.assert_array_equal(select_flexible(scores, 2, 0.5), [2, 3])


def test_flexible_window_around_split():
    scores = _perm_scores(40, seed=5)
    order = rank_order(scores)
    # n_easy = 12; M=7 -> ceil(7/2)=4 hardest easy + 3 easiest hard = ranks 8..14
    np.testing.assert_array_equal(select_flexible(scores, 7, 0.3), np.sort(order[8:15]))
    # shortfall: n_easy = 2, M=10 -> 2 easy + 8 hard = ranks 0..9
    np.testing.assert_array_equal(select_flexible(scores, 10, 0.05),
                                  np.sort(order[:10]))
    # shortfall on the hard side: n_easy = 38, M=10 -> ranks 30..39
    np.testing.assert_array_equal(select_flexible(scores, 10, 0.95),
                                  np.sort(order[30:]))


def test_bins_cover_every_bin():
    scores = _perm_scores(100, seed=7)
    bin_of = _rank_of(scores) // 10
    idx = select_bins(scores, 30, 10, np.random.default_rng(0))
    np.testing.assert_array_equal(np.bincount(bin_of[idx], minlength=10), [3] * 10)
    per_bin = np.bincount(bin_of[select_bins(scores, 25, 10, np.random.default_rng(0))])
    assert per_bin.sum() == 25 and set(per_bin) == {2, 3}


def test_bins_spill_over_and_small_groups():
    scores = _perm_scores(13, seed=2)  # 10 bins of sizes 2,2,2,1,1,...
    for m in range(14):
        assert select_bins(scores, m, 10, np.random.default_rng(m)).size == m
    # more bins than samples
    assert select_bins(scores[:3], 2, 10, np.random.default_rng(0)).size == 2
    np.testing.assert_array_equal(select_bins(scores, 13, 10, np.random.default_rng(0)),
                                  np.arange(13))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(scores=np.zeros((3, 2)), n_keep=1), ValueError, "1-D"),
        (dict(scores=[0.1, np.nan, 0.3], n_keep=1), ValueError, "1 non-finite"),
        (dict(scores=[0.1, 0.2], n_keep=3), ValueError, "n_keep"),
        (dict(scores=[0.1, 0.2], n_keep=-1), ValueError, "n_keep"),
        (dict(scores=[0.1, 0.2], n_keep=1.0), TypeError, "n_keep"),
        (dict(scores=[0.1, 0.2], n_keep=1, strategy="x"), ValueError, "strategy"),
        (dict(scores=[0.1, 0.2], n_keep=1, gamma=1.0), ValueError, "gamma"),
        (dict(scores=[0.1, 0.2], n_keep=1, rng=0), TypeError, "rng"),
        (dict(scores=[0.1, 0.2], n_keep=1, strategy="bins", n_bins=0), ValueError,
         "n_bins"),
        (dict(scores=np.array(["a", "b"]), n_keep=1), ValueError, "numeric"),
    ],
)
def test_select_validates_inputs(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        select(**kwargs)


# ---------------------------------------------------------------------- the sampler
def _grouped_data(sizes=(1, 7, 40, 103), seed=0):
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    X = rng.random((y.size, 1))
    return X, y


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("keep_ratio", [0.01, 0.1, 0.25, 0.5, 0.77, 1.0])
def test_sampler_exact_counts_per_class(strategy, keep_ratio):
    X, y = _grouped_data()
    sampler = FlexRandSampler(keep_ratio, 0.3, strategy=strategy, n_bins=5,
                              random_state=0)
    X_res, y_res = sampler.fit_resample(X, y)
    expected = {k: max(1, int(np.floor(keep_ratio * n + 0.5)))
                for k, n in zip(*np.unique(y, return_counts=True))}
    assert sampler.n_kept_per_class_ == expected
    assert dict(zip(*np.unique(y_res, return_counts=True))) == expected
    assert sampler.sample_indices_.size == sum(expected.values())
    assert np.all(np.diff(sampler.sample_indices_) > 0)
    np.testing.assert_array_equal(X_res, X[sampler.sample_indices_])
    np.testing.assert_array_equal(y_res, y[sampler.sample_indices_])
    if keep_ratio == 1.0:
        np.testing.assert_array_equal(sampler.sample_indices_, np.arange(y.size))


def test_sampler_rounds_half_up_and_keeps_at_least_one():
    X, y = _grouped_data(sizes=(1, 5, 3))
    sampler = FlexRandSampler(keep_ratio=0.5, random_state=0).fit(X, y)
    # 0.5 -> 1, 2.5 -> 3, 1.5 -> 2
    assert sampler.n_kept_per_class_ == {0: 1, 1: 3, 2: 2}


def test_sampler_easy_hard_per_class():
    X, y = _grouped_data(sizes=(20, 30))
    s = X[:, 0]
    for strategy, pick in (("easy", np.argsort(s)), ("hard", np.argsort(-s))):
        sampler = FlexRandSampler(0.2, strategy=strategy).fit(X, y)
        expected = np.concatenate([pick[y[pick] == k][:m] for k, m in ((0, 4), (1, 6))])
        np.testing.assert_array_equal(sampler.sample_indices_, np.sort(expected))


def test_sampler_determinism_and_seed_variation():
    X, y = _grouped_data()
    for strategy in ("flexrand", "random", "bins"):
        a, b, c = (
            FlexRandSampler(strategy=strategy, random_state=rs).fit(X, y)
            .sample_indices_
            for rs in (42, 42, 43)
        )
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    rs = np.random.RandomState(0)
    d = FlexRandSampler(random_state=rs).fit(X, y).sample_indices_
    e = FlexRandSampler(random_state=rs).fit(X, y).sample_indices_
    assert not np.array_equal(d, e)  # a RandomState instance advances between fits


def test_sampler_reads_dlc_layout_with_string_labels():
    rng = np.random.default_rng(0)
    labels = np.array(["emu", "cat", "dog"])  # sorted class order: cat, dog, emu
    y = labels[rng.integers(0, 3, size=60)]
    own = rng.random(60)
    embedding = rng.normal(size=(60, 4))
    score_block = rng.random((60, 3)) + 10.0  # other classes' columns: large, wrong
    codes = np.searchsorted(np.array(["cat", "dog", "emu"]), y)
    score_block[np.arange(60), codes] = own
    X = np.hstack([embedding, score_block])
    sampler = FlexRandSampler(0.25, strategy="easy").fit(X, y)
    np.testing.assert_array_equal(sampler.scores_, own)
    for label in ("cat", "dog", "emu"):
        rows = np.flatnonzero(y == label)
        m = sampler.n_kept_per_class_[label]
        kept = np.intersect1d(sampler.sample_indices_, rows)
        np.testing.assert_array_equal(kept, np.sort(rows[np.argsort(own[rows])[:m]]))
    X_res, y_res = sampler.fit_resample(X, y)
    assert X_res.shape[1] == 7 and set(y_res) == {"cat", "dog", "emu"}
    # exactly n_classes columns (no embedding) reads the same scores
    np.testing.assert_array_equal(
        FlexRandSampler(strategy="easy").fit(score_block, y).scores_, own
    )


def test_sampler_needs_two_classes():
    X, y = _grouped_data(sizes=(10,))
    with pytest.raises(ValueError, match="more than 1 class"):
        FlexRandSampler().fit_resample(X, y)


def test_sampler_single_column_is_the_score():
    X, y = _grouped_data(sizes=(10, 12))
    np.testing.assert_array_equal(FlexRandSampler().fit(X, y).scores_, X[:, 0])


def test_sampler_too_few_columns():
    X = np.random.default_rng(0).random((30, 2))
    y = np.repeat([0, 1, 2], 10)
    with pytest.raises(ValueError, match="2 columns but y has 3 classes"):
        FlexRandSampler().fit_resample(X, y)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_sampler_non_finite_scores(bad):
    X, y = _grouped_data(sizes=(10, 12))
    X[[3, 8], 0] = bad
    with pytest.raises(ValueError, match="2 of 22 rows have a non-finite score"):
        FlexRandSampler().fit_resample(X, y)


def test_sampler_non_finite_outside_scores_passes_through():
    X, y = _grouped_data(sizes=(10, 12))
    X = np.hstack([np.full((22, 1), np.nan), X, 1 - X])
    X_res, _ = FlexRandSampler(keep_ratio=1.0).fit_resample(X, y)
    assert np.isnan(X_res[:, 0]).all()


def test_sampler_pandas_and_sparse_inputs():
    pd = pytest.importorskip("pandas")
    X, y = _grouped_data(sizes=(15, 25))
    X = np.hstack([np.arange(40.0)[:, None], X, 1 - X])
    dense = FlexRandSampler(random_state=0).fit(X, y).sample_indices_
    df = pd.DataFrame(X, columns=["emb", "s0", "s1"])
    X_df, y_s = FlexRandSampler(random_state=0).fit_resample(df, pd.Series(y, name="t"))
    assert list(X_df.columns) == ["emb", "s0", "s1"] and y_s.name == "t"
    np.testing.assert_array_equal(X_df["emb"].to_numpy(), dense)
    X_sp, _ = FlexRandSampler(random_state=0).fit_resample(sparse.csr_matrix(X), y)
    assert sparse.issparse(X_sp)
    np.testing.assert_array_equal(X_sp.toarray()[:, 0], dense)


@pytest.mark.parametrize(
    "params, name",
    [
        (dict(keep_ratio=0), "keep_ratio"),
        (dict(keep_ratio=1.5), "keep_ratio"),
        (dict(gamma=0), "gamma"),
        (dict(gamma=1), "gamma"),
        (dict(strategy="x"), "strategy"),
        (dict(n_bins=0), "n_bins"),
        (dict(random_state="seed"), "random_state"),
    ],
)
def test_sampler_bad_params_name_the_parameter(params, name):
    X, y = _grouped_data(sizes=(10, 12))
    with pytest.raises(ValueError, match=f"The '{name}' parameter of FlexRandSampler"):
        FlexRandSampler(**params).fit_resample(X, y)


def test_init_stores_params_and_clone_round_trip():
    sampler = FlexRandSampler(0.3, 0.1, strategy="bins", n_bins=4, random_state=7)
    params = sampler.get_params()
    assert params == dict(keep_ratio=0.3, gamma=0.1, strategy="bins", n_bins=4,
                          drop_hardest=0.0, random_state=7, score_columns="per_class")
    twin = clone(sampler)
    assert twin is not sampler and twin.get_params() == params
    X, y = _grouped_data()
    np.testing.assert_array_equal(twin.fit(X, y).sample_indices_,
                                  sampler.fit(X, y).sample_indices_)
    assert sampler.set_params(gamma=0.9).gamma == 0.9
    assert not hasattr(FlexRandSampler(keep_ratio=2.0), "sample_indices_")  # no checks


def test_fit_returns_self_and_matches_fit_resample():
    X, y = _grouped_data()
    sampler = FlexRandSampler(random_state=0)
    assert sampler.fit(X, y) is sampler
    idx = sampler.sample_indices_.copy()
    sampler.fit_resample(X, y)
    np.testing.assert_array_equal(sampler.sample_indices_, idx)
    assert sampler.sampling_strategy_ == sampler.n_kept_per_class_
    assert sampler.get_params()["keep_ratio"] == 0.5  # params not overwritten


def test_readonly_memmap_input(tmp_path):
    X, y = _grouped_data(sizes=(20, 30))
    path = tmp_path / "X.npy"
    np.save(path, np.hstack([X, 1 - X]))
    X_ro = np.load(path, mmap_mode="r")
    X_res, _ = FlexRandSampler(random_state=0).fit_resample(X_ro, y)
    assert X_res.shape == (25, 2)


def _pipeline_data():
    X, y = make_classification(n_samples=300, n_features=6, n_informative=4,
                               n_classes=3, n_clusters_per_class=1, random_state=0)
    return X[:200], y[:200], X[200:], y[200:]


def test_pipeline_fits_on_subset_and_predicts_on_all():
    X, y, X_test, y_test = _pipeline_data()
    pipe = make_pipeline(FlexRandSampler(keep_ratio=0.4, random_state=0),
                         LogisticRegression(max_iter=500))
    pipe.fit(X, y)
    sampler = pipe.named_steps["flexrandsampler"]
    assert sampler.sample_indices_.size == sum(sampler.n_kept_per_class_.values()) < 200
    reference = LogisticRegression(max_iter=500).fit(X[sampler.sample_indices_],
                                                     y[sampler.sample_indices_])
    np.testing.assert_allclose(pipe[-1].coef_, reference.coef_)
    pred = pipe.predict(X_test)  # the sampler is skipped: one prediction per row
    assert pred.shape == (100,)
    np.testing.assert_array_equal(pred, reference.predict(X_test))
    assert pipe.score(X_test, y_test) > 0.5


def test_grid_search_over_gamma():
    X, y, _, _ = _pipeline_data()
    pipe = make_pipeline(FlexRandSampler(keep_ratio=0.5, random_state=0),
                         LogisticRegression(max_iter=500))
    grid = GridSearchCV(pipe, {"flexrandsampler__gamma": [0.1, 0.5, 0.9]}, cv=3)
    grid.fit(X, y)
    assert grid.best_params_["flexrandsampler__gamma"] in (0.1, 0.5, 0.9)
    assert len(grid.cv_results_["mean_test_score"]) == 3
    assert np.all(np.isfinite(grid.cv_results_["mean_test_score"]))


# ------------------------------------------------------------- conformance suites
# imbalanced-learn's sampler checks. Expected to fail:
#   check_samplers_nan: its X is a single column, which by definition IS the score;
#   it puts NaN there, and NaN scores are rejected by design. (The allow_nan tag is
#   set because NaN is accepted in the other, passed-through columns.)
IMBLEARN_XFAIL = {
    "check_samplers_nan": "single-column X is the score column; NaN scores are "
    "rejected by design (NaN elsewhere in X is passed through)",
}

# scikit-learn's checks. Expected to fail, all for the same two reasons:
# - the check's synthetic X has fewer columns than y has classes (e.g. 2 features,
#   3 classes), which is no valid score layout and raises a clear ValueError; the
#   same properties are tested above on valid layouts (fit returns self, params not
#   overwritten, read-only memmap input, sparse input);
# - check_estimators_pickle writes NaN into random entries of X because of the
#   allow_nan tag, and some land in score columns.
SKLEARN_LAYOUT = "the check's X has fewer columns than y has classes: no score layout"
SKLEARN_XFAIL = {
    "check_estimators_overwrite_params": SKLEARN_LAYOUT,
    "check_estimators_fit_returns_self": SKLEARN_LAYOUT,
    "check_readonly_memmap_input": SKLEARN_LAYOUT,
    "check_estimator_sparse_array": SKLEARN_LAYOUT,
    "check_estimator_sparse_matrix": SKLEARN_LAYOUT,
    "check_estimators_pickle": "NaN is written into random entries of X, some of "
    "them score entries, which must be finite",
}


def _check_id(value):
    if isinstance(value, FlexRandSampler):
        return "FlexRandSampler"
    func = getattr(value, "func", value)  # checks come as functools.partial
    return getattr(func, "__name__", None)


# imblearn's own parametrize_with_checks hands pytest a generator (deprecated there),
# so the (estimator, check) pairs are listed here instead.
@pytest.mark.parametrize(
    "estimator, check",
    list(estimator_checks_generator(FlexRandSampler(random_state=0),
                                    expected_failed_checks=IMBLEARN_XFAIL,
                                    mark="xfail")),
    ids=_check_id,
)
def test_imblearn_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        check(estimator)


@parametrize_with_sklearn_checks(
    [FlexRandSampler(random_state=0)], expected_failed_checks=lambda e: SKLEARN_XFAIL
)
def test_sklearn_checks(estimator, check):
    check(estimator)


def test_imblearn_param_validation_and_column_names():
    check_param_validation("FlexRandSampler", FlexRandSampler(random_state=0))
    check_dataframe_column_names_consistency("FlexRandSampler",
                                             FlexRandSampler(random_state=0))


def test_tags_declare_sample_indices():
    tags = FlexRandSampler().__sklearn_tags__()
    assert tags.sampler_tags.sample_indices is True
    assert tags.input_tags.allow_nan is True and tags.input_tags.sparse is True
