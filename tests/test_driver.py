"""The path driver: every source and engine gives the same numbers; the broken cases of issue 11."""

import dataclasses
import itertools
import warnings

import numpy as np
import pytest
import torch

from skdlc import DLCScorer
from skdlc import _driver
from skdlc._losses import per_class_losses
from skdlc._prototypes import class_means


def _scorer(module, **kw):
    kw.setdefault("engine", "torch")
    kw.setdefault("mask_ratios", [0, 0.3, 0.6])
    return DLCScorer(module, device="cpu", verbose=False, batch_size=16, **kw)


def _naive(module, X, y, ratios, prototypes, logits, temperature=0.1):
    """The method page, straight: masked features per ratio, class means, mean loss."""
    from skdlc._masking import masked

    x = torch.from_numpy(X)
    k = len(np.unique(y))
    with torch.no_grad():
        with masked(module, 0.0, "layer"):
            full = module.eval()(x).numpy()
        total = 0.0
        protos = []
        for r in ratios:
            with masked(module, r, "layer"):
                f = module.eval()(x).numpy()
            p = class_means(full if prototypes == "unmasked" else f, y, k)
            protos.append(p)
            total = total + per_class_losses(f, p, logits, temperature)
    return total / len(ratios), np.stack(protos), full


# --------------------------------------------------------------------------- equivalence grid
GRID = list(itertools.product(["masked", "unmasked"], [False, True], ["cosine", "neg_sq_distance"],
                              [(0.0, 0.3, 0.6), (0.3, 0.6)]))


@pytest.mark.parametrize("prototypes,embedding,logits,ratios", GRID)
def test_every_source_and_engine_equals_the_naive_path(tiny_cnn, blob_images, tmp_path, prototypes,
                                                      embedding, logits, ratios):
    X, y = blob_images
    X, y = X[::2], y[::2]  # 30 rows: 2 batches of 16, the last one short
    losses, protos, full = _naive(tiny_cnn, X, y, ratios, prototypes, logits)
    kw = dict(mask_ratios=list(ratios), prototypes=prototypes, embedding=embedding, logits=logits)
    runs = {
        "memory-torch": _scorer(tiny_cnn, **kw),
        "chunked-torch": _scorer(tiny_cnn, memory=tmp_path / "a", chunk_size=16, **kw),
        "memory-onnx": _scorer(tiny_cnn, engine="onnxruntime", **kw),
        "chunked-onnx": _scorer(tiny_cnn, engine="onnxruntime", memory=tmp_path / "b", chunk_size=16, **kw),
    }
    for name, s in runs.items():
        out = s.fit_transform(X, y)
        tol = dict(rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out[:, -3:], losses, **tol, err_msg=name)
        np.testing.assert_allclose(s.prototypes_, protos, rtol=1e-4, atol=1e-5, err_msg=name)
        assert s.mask_ratios_ == ratios
        if embedding:
            np.testing.assert_allclose(out[:, :-3], full, rtol=1e-4, atol=1e-5, err_msg=name)
        else:
            assert out.shape == (30, 3)
        # transform on fresh data goes through the same driver
        np.testing.assert_allclose(s.transform(X[:7]), out[:7], rtol=1e-4, atol=1e-5, err_msg=name)


def test_unmasked_fit_alone_runs_one_pass_without_zero_on_the_path(tiny_cnn, blob_images):
    X, y = blob_images
    s = _scorer(tiny_cnn, mask_ratios=[0.3, 0.6], prototypes="unmasked").fit(X, y)
    assert s.n_forward_batches_ == 4  # the unmasked pass only, off the path
    assert s.prototypes_.shape == (2, 3, 16)
    np.testing.assert_allclose(s.prototypes_[0], s.prototypes_[1])


# --------------------------------------------------------------------------- issue 11 cases
@pytest.mark.parametrize("memory", [False, True])
def test_path_without_zero_works_with_and_without_memory(tiny_cnn, blob_images, tmp_path, memory):
    X, y = blob_images
    kw = {"memory": tmp_path} if memory else {}
    s = _scorer(tiny_cnn, mask_ratios=[0.3, 0.6], **kw)
    out = s.fit_transform(X, y)
    assert out.shape == (60, 3) and np.isfinite(out).all()
    assert s.mask_ratios_ == (0.3, 0.6)
    assert s.prototypes_.shape == (2, 3, 16)
    assert s.n_forward_batches_ == 2 * 4  # no unmasked pass: nothing needs it


def test_mask_ratios_as_numpy_array(tiny_cnn, blob_images):
    X, y = blob_images
    a = _scorer(tiny_cnn, mask_ratios=np.array([0, 0.3])).fit_transform(X, y)
    b = _scorer(tiny_cnn, mask_ratios=[0, 0.3]).fit_transform(X, y)
    np.testing.assert_array_equal(a, b)


class _Unfingerprintable(torch.utils.data.Dataset):
    def __init__(self, X):
        self.X = X

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return torch.from_numpy(self.X[i])


def test_no_stale_transform_after_refitting_on_unfingerprintable_data(tiny_cnn, blob_images, tmp_path):
    X, y = blob_images
    rng = np.random.default_rng(5)
    X2 = np.clip(X[rng.permutation(60)] * 0.5 + 0.3, 0, 1).astype(np.float32)
    A = X[:10]
    s = _scorer(tiny_cnn, memory=tmp_path)
    with pytest.warns(UserWarning, match="cannot fingerprint"):
        s.fit(_Unfingerprintable(X), y)
    first = s.transform(A)
    with pytest.warns(UserWarning, match="cannot fingerprint"):
        s.fit(_Unfingerprintable(X2), y)
    second = s.transform(A)
    fresh = _scorer(tiny_cnn).fit(X2, y).transform(A)
    np.testing.assert_allclose(second, fresh, rtol=1e-6)
    assert not np.allclose(first, second)


def test_random_state_instance_is_not_cached(tiny_cnn, blob_images, tmp_path):
    X, y = blob_images
    rs = np.random.RandomState(0)
    s = _scorer(tiny_cnn, mask_ratios=3, random_state=rs, memory=tmp_path)
    with pytest.warns(UserWarning, match="RandomState instance"):
        first = s.fit(X, y).mask_ratios_
    with pytest.warns(UserWarning, match="RandomState instance"):
        second = s.fit(X, y).mask_ratios_
    ref = np.random.RandomState(0)
    expected = [_scorer(tiny_cnn, mask_ratios=3, random_state=ref).fit(X, y).mask_ratios_ for _ in range(2)]
    assert [first, second] == expected
    assert s.n_forward_batches_ > 0  # computed, not read from the cache


@pytest.mark.parametrize("mask_ratios", [3, "calibrated"])
def test_default_random_state_is_cached(tiny_cnn, blob_images, tmp_path, mask_ratios):
    # random_state=None (the default) is not a RandomState instance: a grid search over the
    # sampler must read the first fit from the cache, without a warning
    X, y = blob_images
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = _scorer(tiny_cnn, mask_ratios=mask_ratios, memory=tmp_path).fit(X, y)
        again = _scorer(tiny_cnn, mask_ratios=mask_ratios, memory=tmp_path).fit(X, y)
    assert again.n_forward_batches_ == 0 and again.mask_ratios_ == first.mask_ratios_


def test_int_random_state_is_cached(tiny_cnn, blob_images, tmp_path):
    X, y = blob_images
    _scorer(tiny_cnn, mask_ratios=3, random_state=0, memory=tmp_path).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = _scorer(tiny_cnn, mask_ratios=3, random_state=0, memory=tmp_path).fit(X, y)
    assert again.n_forward_batches_ == 0


def test_transform_does_not_mutate_the_estimator(tiny_cnn, blob_images, tmp_path):
    X, y = blob_images
    s = _scorer(tiny_cnn, memory=tmp_path).fit(X, y)
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(s).items()}
    s.transform(X[:20])
    s.transform(X[20:40])
    assert vars(s).keys() == before.keys()
    for k, v in vars(s).items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(v, before[k])
        else:
            assert v is before[k] or v == before[k], k


class _NaNNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        out = self.fc(x)
        out[x[:, 0] > 0.9] = float("nan")
        return out


def test_nan_features_raise_a_clear_error(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((20, 4)).astype(np.float32)
    X[3, 0] = 0.95
    y = np.arange(20) % 2
    for kw in ({}, {"memory": tmp_path}):
        with pytest.raises(ValueError, match=r"NaN or infinite features .*rows \[3\]"):
            _scorer(_NaNNet(), mask_ratios=[0, 0.5], **kw).fit(X, y)


# --------------------------------------------------------------------------- the driver itself
class _ListSource:
    """A source over given per-ratio arrays, in pieces of 4 rows (as a chunked source would)."""

    def __init__(self, feats):
        self.feats, self.n, self.n_forward_batches, self.asked = feats, len(next(iter(feats.values()))), 0, []

    def variants(self, run, desc):
        for r in run:
            self.asked.append(r)
            yield _Pieces(r, self.feats[r])


class _Pieces:
    def __init__(self, ratio, f):
        self.ratio, self.f = ratio, f

    def map(self, fn, *args):
        for a in range(0, len(self.f), 4):
            rows = np.arange(a, min(a + 4, len(self.f)))
            yield rows, fn(rows, self.f[rows], *args)


def test_driver_pieces_equal_whole_arrays():
    rng = np.random.default_rng(0)
    feats = {r: rng.standard_normal((10, 5)).astype(np.float32) for r in (0.0, 0.2, 0.5)}
    y = np.arange(10) % 3
    plan = _driver.Plan(ratios=(0.2, 0.5), prototypes="unmasked", embedding=True)
    src = _ListSource(feats)
    res = _driver.fit(plan, src, y, 3)
    assert src.asked == [0.0, 0.2, 0.5]  # the off-path unmasked pass first
    p0 = class_means(feats[0.0], y, 3)
    want = (per_class_losses(feats[0.2], p0, "cosine", 0.1) + per_class_losses(feats[0.5], p0, "cosine", 0.1)) / 2
    np.testing.assert_allclose(res.losses, want)
    np.testing.assert_array_equal(res.embedding, feats[0.0])
    assert res.prototypes.shape == (2, 3, 5)
    losses, emb = _driver.transform(plan, _ListSource(feats), res.mask_ratios, res.prototypes)
    np.testing.assert_allclose(losses, want)


def test_plan_needs_ratios_or_auto():
    with pytest.raises(ValueError, match="exactly one"):
        _driver.Plan()


# --------------------------------------------------------------------------- engines
def test_auto_engine_is_onnxruntime_on_the_cpu_with_torch_scores(tiny_cnn, blob_images, capsys, monkeypatch):
    from skdlc import _scorer as scorer_module

    monkeypatch.setattr(scorer_module, "_NOTES_SHOWN", set())
    X, y = blob_images
    torch_scores = _scorer(tiny_cnn).fit_transform(X, y)
    auto = DLCScorer(tiny_cnn, mask_ratios=[0, 0.3, 0.6], device="cpu", batch_size=16, verbose=True)
    got = auto.fit_transform(X, y)
    assert "ONNX Runtime" in capsys.readouterr().err
    np.testing.assert_allclose(got, torch_scores, rtol=1e-4, atol=1e-5)


def test_auto_engine_falls_back_to_torch_when_export_fails(tiny_cnn, blob_images, capsys, monkeypatch):
    from skdlc import _onnx_export, _onnx_graphs

    attempts = []

    def no_export(*a, **k):
        attempts.append(1)
        raise RuntimeError("Unsupported operator aten::weird")

    from skdlc import _scorer as scorer_module

    monkeypatch.setattr(_onnx_export, "_export", no_export)
    monkeypatch.setattr(_onnx_export, "_cached_export", no_export)
    monkeypatch.setattr(scorer_module, "_NOTES_SHOWN", set())
    _onnx_graphs._GRAPHS.clear()  # no graph of this module kept from an earlier test
    X, y = blob_images
    auto = DLCScorer(tiny_cnn, mask_ratios=[0, 0.3], device="cpu", batch_size=16, verbose=True)
    got = auto.fit_transform(X, y)
    err = capsys.readouterr().err
    assert "torch" in err and "aten::weird" in err
    np.testing.assert_array_equal(got, _scorer(tiny_cnn, mask_ratios=[0, 0.3]).fit_transform(X, y))
    tried = len(attempts)
    auto.transform(X[:5])  # the failure is remembered: no second attempt, no second note
    assert len(attempts) == tried and "aten::weird" not in capsys.readouterr().err


def test_retained_variants_are_prepared_once(tiny_cnn, blob_images, monkeypatch):
    from skdlc import _engine
    from skdlc._backbones import create_backbone

    calls = []
    real = _engine.TorchEngine._prepare
    monkeypatch.setattr(_engine.TorchEngine, "_prepare", lambda self, r: calls.append(r) or real(self, r))
    X, y = blob_images
    s = _scorer(tiny_cnn).fit(X, y)
    engine = _engine.TorchEngine(create_backbone(tiny_cnn), device=torch.device("cpu"), retain=True)
    plan = s._plan(ratios=s.mask_ratios_)
    calls.clear()
    for part in (X[:10], X[10:25]):
        losses, _ = _driver.transform_input(plan, engine, part, input_spec=s.backbone_, batch_size=16,
                                            ratios=s.mask_ratios_, prototypes=s.prototypes_)
        np.testing.assert_allclose(losses, s.transform(part), rtol=1e-6)
    assert calls == [0.0, 0.3, 0.6]  # masked once, for both calls


def test_onnx_model_keeps_its_sessions_between_calls(tiny_cnn, blob_images, tmp_path):
    from skdlc import OnnxDLCModel

    X, y = blob_images
    s = _scorer(tiny_cnn).fit(X, y)
    model = OnnxDLCModel(s.export_onnx(tmp_path / "export", X=X), device="cpu")
    first = model.transform(X[:10])
    sessions = dict(model._engine(False)._sessions)
    assert sorted(sessions) == [0.0, 0.3, 0.6]
    np.testing.assert_allclose(model.transform(X[10:20]), s.transform(X[10:20]), rtol=1e-4, atol=1e-5)
    assert all(model._engine(False)._sessions[r] is sess for r, sess in sessions.items())
    np.testing.assert_allclose(first, s.transform(X[:10]), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- calibrated path hook
@dataclasses.dataclass(frozen=True)
class Calibration:
    probe_ratios: tuple
    accuracies: tuple
    chance: float
    ratios: tuple

    def to_dict(self):
        return {"probe_ratios": list(self.probe_ratios), "ratios": list(self.ratios)}


@pytest.fixture
def fake_calibration(monkeypatch):
    """The interface of skdlc._calibration (interface 1), recording what the driver hands it."""
    import sys
    import types

    seen = {}
    mod = types.ModuleType("skdlc._calibration")
    mod.Calibration = Calibration
    mod.probe_grid = lambda masking: (0.0, 0.2, 0.4, 0.8)

    def sample_rows(y_idx, n_max=300, random_state=None):
        return np.arange(0, len(y_idx), 3)  # every third row

    def calibrate(probe_features, y_idx, n_ratios, random_state=None):
        seen["shapes"] = {r: f.shape for r, f in probe_features.items()}
        seen["y"] = np.asarray(y_idx)
        seen["n_ratios"] = n_ratios
        return Calibration(tuple(probe_features), (1.0,) * len(probe_features), 1 / 3, (0.0, 0.2, 0.4))

    mod.sample_rows, mod.calibrate = sample_rows, calibrate
    monkeypatch.setitem(sys.modules, "skdlc._calibration", mod)
    import skdlc

    # `from . import _calibration` reads the package attribute once the real one was imported
    monkeypatch.setattr(skdlc, "_calibration", mod, raising=False)
    return seen


def test_calibrated_path_probes_only_the_sample(tiny_cnn, blob_images, fake_calibration):
    X, y = blob_images
    s = _scorer(tiny_cnn, mask_ratios="calibrated", n_ratios=3)
    out = s.fit_transform(X, y)
    assert fake_calibration["shapes"] == {r: (20, 16) for r in (0.0, 0.2, 0.4, 0.8)}
    np.testing.assert_array_equal(fake_calibration["y"], y[::3])
    assert fake_calibration["n_ratios"] == 3
    assert s.mask_ratios_ == (0.0, 0.2, 0.4)
    assert s.calibration_.ratios == (0.0, 0.2, 0.4)
    # probes: 4 ratios x 2 batches of the 20 sampled rows; then the path reuses the
    # probes' features for those rows and runs only the other 40: 3 x 3 batches
    assert s.n_forward_batches_ == 4 * 2 + 3 * 3
    np.testing.assert_allclose(out, _scorer(tiny_cnn, mask_ratios=[0, 0.2, 0.4]).fit_transform(X, y))


def test_calibration_is_cached_with_the_fit(tiny_cnn, blob_images, fake_calibration, tmp_path):
    X, y = blob_images
    _scorer(tiny_cnn, mask_ratios="calibrated", memory=tmp_path, random_state=0).fit(X, y)
    fake_calibration.clear()
    again = _scorer(tiny_cnn, mask_ratios="calibrated", memory=tmp_path, random_state=0).fit(X, y)
    assert again.n_forward_batches_ == 0
    assert not fake_calibration  # read from the cache: no probe, no calibrate()
    assert again.calibration_.ratios == (0.0, 0.2, 0.4)


def test_string_paths_are_accepted_by_the_constraints(tiny_cnn):
    for value in ("auto", "calibrated", "cumulative"):
        _scorer(tiny_cnn, mask_ratios=value)._validate_params()
    with pytest.raises(ValueError, match="mask_ratios"):
        _scorer(tiny_cnn, mask_ratios="sometimes")._validate_params()


# --------------------------------------------------------------------------- text grouped by length
class _CharNet(torch.nn.Module):
    """Mean of character embeddings over the non-padding positions."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.emb = torch.nn.Embedding(128, 8)
        self.proj = torch.nn.Linear(8, 6)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, input_ids, attention_mask):
        m = attention_mask.unsqueeze(-1).float()
        return self.proj((self.emb(input_ids) * m).sum(1) / m.sum(1))


def _char_collate(texts):
    n = max(len(t) for t in texts)
    ids = torch.zeros((len(texts), n), dtype=torch.long)
    mask = torch.zeros((len(texts), n), dtype=torch.long)
    for i, t in enumerate(texts):
        ids[i, : len(t)] = torch.tensor([min(ord(c), 127) for c in t])
        mask[i, : len(t)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def _char_backbone():
    from skdlc._backbones._base import Backbone

    return Backbone(name="chars", module=_CharNet(), num_features=6, collate=_char_collate)


@pytest.mark.parametrize("memory", [False, True])
def test_text_is_batched_by_length_and_returned_in_input_order(tmp_path, memory):
    rng = np.random.default_rng(0)
    texts = ["".join(rng.choice(list("abcdefgh"), size=int(n))) for n in rng.integers(2, 60, size=40)]
    y = np.arange(40) % 2
    kw = dict(mask_ratios=[0, 0.4], embedding=True, **({"memory": tmp_path} if memory else {}))
    s = _scorer(_char_backbone(), **kw)
    out = s.fit_transform(texts, y)
    # Row by row, each text alone: no padding, no reordering.
    emb = np.concatenate([s.backbone_.module(**_char_collate([t])).detach().numpy() for t in texts])
    np.testing.assert_allclose(out[:, :6], emb, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.transform(texts[::-1]), out[::-1], rtol=1e-6)
    assert s.n_tokens_ == sum(len(t) for t in texts)
    lengths = sorted(len(t) for t in texts)
    assert s.n_tokens_run_ == sum(len(lengths[a:a + 16]) * max(lengths[a:a + 16]) for a in range(0, 40, 16))
    unsorted = sum(16 * max(len(t) for t in texts[a:a + 16]) for a in range(0, 32, 16)) + 8 * max(
        len(t) for t in texts[32:])
    assert s.n_tokens_run_ < unsorted


# --------------------------------------------------------------------------- estimator surface
def test_embed_is_the_full_models_features_fitted_or_not(tiny_cnn, blob_images):
    X, y = blob_images
    s = _scorer(tiny_cnn, mask_ratios=[0.3, 0.6], embedding=True)
    unfitted = s.embed(X[:20])
    assert not hasattr(s, "backbone_") and not hasattr(s, "n_features_in_")  # no state gained
    out = s.fit_transform(X, y)
    np.testing.assert_allclose(unfitted, out[:20, :16], rtol=1e-6)
    np.testing.assert_allclose(s.embed(X[:20]), out[:20, :16], rtol=1e-6)
    assert s.embed(X).shape == (60, 16)


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"backend": "ray", "engine": "onnxruntime"}, "engine='onnxruntime' runs on backend='local'"),
        ({"backend": "ray", "precision": "bfloat16"}, "precision='bfloat16'"),
        ({"ray_address": "auto"}, "apply to backend='ray'"),
    ],
)
def test_invalid_backend_combinations_fail_in_fit(tiny_cnn, blob_images, kw, match):
    X, y = blob_images
    with pytest.raises(ValueError, match=match):
        _scorer(tiny_cnn, **kw).fit(X, y)


def test_ray_backend_object_is_validated_and_exclusive(tiny_cnn, blob_images):
    from skdlc._distributed import RayBackend

    X, y = blob_images
    with pytest.raises(ValueError, match="not also as ray_address"):
        _scorer(tiny_cnn, backend=RayBackend(address="auto"), num_gpus=1).fit(X, y)
    with pytest.raises(ValueError, match="engine='onnxruntime'"):
        _scorer(tiny_cnn, backend=RayBackend(), engine="onnxruntime").fit(X, y)
    with pytest.raises(ValueError, match="num_gpus"):
        RayBackend(num_gpus=-1)
    assert _scorer(tiny_cnn, backend=RayBackend(num_gpus=0.5)).get_params()["backend"] == RayBackend(None, 0.5)


def test_array_source_gives_the_scorers_numbers(tiny_cnn, blob_images):
    # Benchmarks that cache features run the same driver over them.
    from skdlc._engine import TorchEngine
    from skdlc._data import make_batches

    X, y = blob_images
    s = _scorer(tiny_cnn, mask_ratios=[0.3, 0.6], embedding=True, prototypes="unmasked")
    out = s.fit_transform(X, y)
    engine = TorchEngine(s.backbone_, device=torch.device("cpu"))
    feats = {r: f for r, f in zip([0.0, 0.3, 0.6], (
        f for _, f in engine.features(make_batches(X, s.backbone_, 16), [0.0, 0.3, 0.6])))}
    plan = s._plan(ratios=(0.3, 0.6))
    res = _driver.fit(plan, _driver.ArraySource(feats), y, 3)
    np.testing.assert_allclose(np.hstack([res.embedding, res.losses]), out, rtol=1e-6)


def test_embed_reads_the_cache_folder_the_second_time(tiny_cnn, blob_images, tmp_path):
    X, _ = blob_images
    calls = []
    hook = tiny_cnn.register_forward_hook(lambda *a: calls.append(1))
    try:
        first = _scorer(tiny_cnn, memory=tmp_path).embed(X)
        n_first = len(calls)
        again = _scorer(tiny_cnn, memory=tmp_path).embed(X)
    finally:
        hook.remove()
    assert n_first > 0 and len(calls) == n_first  # no forward pass the second time
    np.testing.assert_array_equal(first, again)
