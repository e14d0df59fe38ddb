"""ONNX export and the ONNX Runtime engine: same scores as torch, valid graphs, and an
export folder that scores with no torch model at hand."""

import json
import os

import numpy as np
import pytest
import torch

onnx = pytest.importorskip(
    "onnx", reason="needs the onnx extra: pip install 'skdlc[onnx]' (onnx, onnxscript, onnxruntime)"
)
ort = pytest.importorskip(
    "onnxruntime", reason="needs the onnx extra: pip install 'skdlc[onnx]' (onnx, onnxscript, onnxruntime)"
)

from skdlc import DLCScorer, OnnxDLCModel, create_backbone  # noqa: E402
from skdlc import _onnx, _onnx_export  # noqa: E402
from skdlc._backbones import _REGISTRY, register_backbone  # noqa: E402
from skdlc._backbones._base import Backbone, Preprocessing  # noqa: E402
from skdlc._cache import fingerprint_module  # noqa: E402
from skdlc._engine import TorchEngine  # noqa: E402
from skdlc._masking import masked  # noqa: E402

RATIOS = [0.0, 0.3, 0.6, 0.9]
RTOL = 1e-4


def _scorer(backbone, **kw):
    kw = {"mask_ratios": RATIOS, "device": "cpu", "verbose": False, "batch_size": 16, "engine": "torch", **kw}
    return DLCScorer(backbone, **kw)


def _close(a, b, rtol=RTOL):
    """Relative agreement, scaled by the magnitude of the reference."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    err = np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)
    assert err <= rtol, f"relative difference {err:.2e} > {rtol:.0e}"


def _randomise_bn(module, seed=0):
    """timm zero-initialises some BN gammas; random BN statistics make comparisons bite."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return module.eval()


@pytest.fixture(scope="module")
def timm_backbone():
    """A tiny timm EfficientNet (100k weights) with random BN, on 32 px inputs."""
    bb = create_backbone("test_efficientnet", pretrained=False)
    _randomise_bn(bb.module)
    pp = Preprocessing(input_size=(32, 32), mean=bb.preprocessing.mean, std=bb.preprocessing.std)
    return Backbone("test_efficientnet", bb.module, pp, bb.num_features)


@pytest.fixture(scope="module")
def uint8_images():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 8)
    X = rng.integers(0, 256, size=(24, 36, 36, 3), dtype=np.uint8)
    X[y == 1, :, :, 0] //= 3  # some class structure
    return X, y


# --------------------------------------------------------------------------- engine
def test_onnxruntime_scores_equal_torch_tiny_cnn(tiny_cnn, blob_images):
    X, y = blob_images
    ref = _scorer(tiny_cnn).fit_transform(X, y)
    s = _scorer(tiny_cnn, engine="onnxruntime")
    got = s.fit_transform(X, y)
    _close(got, ref)
    assert s.n_forward_batches_ == len(RATIOS) * 4  # 60 samples / 16 per batch, each variant once
    _close(s.transform(X[:20]), ref[:20])


def test_engines_give_the_same_features(timm_backbone, uint8_images):
    from skdlc._data import make_batches

    batches = make_batches(uint8_images[0], timm_backbone, 10)
    torch_feats = dict(TorchEngine(timm_backbone).features(batches, RATIOS))
    onnx_feats = dict(_onnx.OnnxEngine.from_backbone(timm_backbone).features(batches, RATIOS))
    for i, r in enumerate(RATIOS):
        _close(onnx_feats[i], torch_feats[i])
        if r > 0:  # every variant really is masked
            assert np.abs(torch_feats[i] - torch_feats[0]).max() > 1e-2 * np.abs(torch_feats[0]).max()


def test_masked_weights_found_in_graph_not_retraced(tiny_cnn, timm_backbone):
    for bb, example in [
        (create_backbone(tiny_cnn), torch.rand(2, 3, 12, 12)),
        (timm_backbone, torch.rand(2, 3, 32, 32)),
    ]:
        g = _onnx._MaskedGraphs(bb.module, bb.name, "layer", example)
        assert g.index is not None and len(g.index) > 0


@pytest.mark.parametrize("masking", ["layer", "global"])
def test_every_variant_matches_the_masked_torch_module(tiny_cnn, masking):
    x = np.random.default_rng(0).random((5, 3, 12, 12), dtype=np.float32)
    g = _onnx._MaskedGraphs(tiny_cnn.eval(), "tiny", masking, torch.from_numpy(x[:2]))
    before = {k: v.clone() for k, v in tiny_cnn.state_dict().items()}
    for r in RATIOS:
        sess = ort.InferenceSession(g.variant(r), providers=["CPUExecutionProvider"])
        with masked(tiny_cnn, r, masking), torch.no_grad():
            want = tiny_cnn(torch.from_numpy(x)).numpy()
        _close(sess.run(None, {"input": x})[0], want)
    for k, v in tiny_cnn.state_dict().items():  # masking the graph never touches the module
        assert torch.equal(v, before[k])


def test_timm_exports_are_cached_on_disk_user_modules_are_not(timm_backbone, tiny_cnn, tmp_path, monkeypatch):
    monkeypatch.setenv("SKDLC_CACHE_DIR", os.fspath(tmp_path))
    example = torch.rand(2, 3, 32, 32)
    first = _onnx._MaskedGraphs(timm_backbone.module, "t", "layer", example)
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 1
    _onnx._MaskedGraphs(tiny_cnn, "tiny", "layer", torch.rand(2, 3, 12, 12))
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 1  # user code may change: never cached

    def no_trace(*a, **k):
        raise AssertionError("the cached export should have been read")

    monkeypatch.setattr(_onnx_export, "_export", no_trace)
    again = _onnx._MaskedGraphs(timm_backbone.module, "t", "layer", example)
    assert again.base == first.base and again.index == first.index


@pytest.mark.parametrize("masking", ["layer", "global"])
def test_sorted_masks_equal_compute_masks_with_ties(masking):
    from conftest import TinyCNN

    from skdlc._masking import masked_state

    net = TinyCNN(1).eval()
    with torch.no_grad():  # quantized weights: many exact ties at every threshold
        for p in net.parameters():
            p.copy_(torch.round(p * 4) / 4)
    g = _onnx._MaskedGraphs(net, "tiny", masking, torch.rand(2, 3, 12, 12))
    assert g._sorted()
    for r in [0.1, 0.37, 0.5, 0.98]:
        want = masked_state(net, r, masking)
        got = g._masked_weights(r)
        assert set(got) == set(want)
        for name, w in want.items():
            np.testing.assert_array_equal(got[name], w.numpy().reshape(-1), err_msg=f"{name} at {r}")


def test_fallback_reexport_gives_the_same_variants(tiny_cnn, blob_images, monkeypatch):
    X, y = blob_images
    ref = _scorer(tiny_cnn, engine="onnxruntime").fit_transform(X, y)
    monkeypatch.setattr(_onnx._MaskedGraphs, "_match_initializers", lambda self, *a: None)
    _onnx._GRAPHS.clear()
    got = _scorer(tiny_cnn, engine="onnxruntime").fit_transform(X, y)
    _close(got, ref)


def test_auto_ratios_and_variant_major_with_onnxruntime(tiny_cnn, blob_images):
    X, y = blob_images
    kw = {"mask_ratios": "auto", "random_state": 0, "max_ratios": 4}
    ref = _scorer(tiny_cnn, **kw)
    got = _scorer(tiny_cnn, engine="onnxruntime", keep_variants=False, **kw)
    _close(got.fit_transform(X, y), ref.fit_transform(X, y))
    assert got.mask_ratios_ == ref.mask_ratios_


def test_bad_engine_and_text_backbones_are_refused(tiny_cnn, blob_images):
    X, y = blob_images
    with pytest.raises(ValueError, match="engine"):
        _scorer(tiny_cnn, engine="tensorrt").fit(X, y)
    text = Backbone("words", torch.nn.Linear(4, 4), collate=lambda items: torch.zeros(len(items), 4))
    with pytest.raises(NotImplementedError, match="engine='torch'"):
        _onnx.OnnxEngine.from_backbone(text)


# --------------------------------------------------------------------------- export
def test_export_folder_is_valid_and_complete(tiny_cnn, blob_images, tmp_path):
    X, y = blob_images
    labels = np.array(["cat", "dog", "eel"])[y]
    s = _scorer(tiny_cnn, engine="onnxruntime").fit(X, labels)
    out = s.export_onnx(tmp_path / "export", X=X[:2])
    m = json.loads((out / "manifest.json").read_text())
    assert m["mask_ratios"] == RATIOS
    assert [v["ratio"] for v in m["variants"]] == RATIOS
    assert m["preprocessing"] is None and m["input"]["shape"] == [None, 3, 12, 12]
    assert m["class_names"] == ["cat", "dog", "eel"] and m["classes"] == ["cat", "dog", "eel"]
    assert m["backbone"]["fingerprint"] == fingerprint_module(s.backbone_.module)
    assert m["logits"] == s.logits and m["temperature"] == s.temperature
    assert m["prototypes"]["shape"] == list(s.prototypes_.shape)
    np.testing.assert_array_equal(np.load(out / m["prototypes"]["file"]), s.prototypes_)
    for v in m["variants"]:
        onnx.checker.check_model(os.fspath(out / v["file"]), full_check=True)
        graph = onnx.load(out / v["file"]).graph
        assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch axis
        assert v["sha256"] == _onnx._sha256(out / v["file"])


def test_export_folder_scores_without_the_torch_model(timm_backbone, uint8_images, tmp_path, monkeypatch):
    X, y = uint8_images
    s = _scorer(timm_backbone, mask_ratios=[0.2, 0.5], embedding=True).fit(X, y)
    want_t, want_s = s.transform(X), s.score_samples(X, y)
    s.export_onnx(tmp_path / "e")
    m = json.loads((tmp_path / "e" / "manifest.json").read_text())
    # the embedding needs the unmasked model: exported beside the path, off it
    assert [(v["ratio"], v["on_path"]) for v in m["variants"]] == [(0.0, False), (0.2, True), (0.5, True)]
    assert Preprocessing.from_dict(m["preprocessing"]) == timm_backbone.preprocessing

    def no_torch(*a, **k):
        raise AssertionError("an export folder must score without tracing a torch model")

    monkeypatch.setattr(_onnx_export, "_export", no_torch)
    model = OnnxDLCModel.load(tmp_path / "e", device="cpu", batch_size=7)
    _close(model.transform(X), want_t)
    _close(model.score_samples(X, y), want_s)
    assert list(model.get_feature_names_out()) == list(s.get_feature_names_out())
    with pytest.raises(ValueError, match="unseen"):
        model.score_samples(X, y + 5)


def test_export_replaces_an_export_but_never_a_foreign_folder(tiny_cnn, blob_images, tmp_path):
    X, y = blob_images
    s = _scorer(tiny_cnn).fit(X, y)
    s.export_onnx(tmp_path / "e", X=X[:2])
    s.set_params(mask_ratios=[0.0, 0.5]).fit(X, y).export_onnx(tmp_path / "e", X=X[:2])
    assert len(list((tmp_path / "e").glob("*.onnx"))) == 2
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an skdlc ONNX export"):
        s.export_onnx(tmp_path / "mine", X=X[:2])
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="input shape is unknown"):
        s.export_onnx(tmp_path / "x")


def test_corrupt_export_is_detected(tiny_cnn, blob_images, tmp_path):
    X, y = blob_images
    out = _scorer(tiny_cnn).fit(X, y).export_onnx(tmp_path / "e", X=X[:2])
    f = sorted(out.glob("*.onnx"))[1]
    f.write_bytes(f.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="checksum"):
        OnnxDLCModel.load(out)
    with pytest.raises(FileNotFoundError, match="not an skdlc ONNX export"):
        OnnxDLCModel.load(tmp_path)


# --------------------------------------------------------------------------- CLI
@pytest.fixture
def tiny_registered():
    name = "onnx_test_tiny"

    @register_backbone(name)
    def _tiny(*, pretrained=True):
        from conftest import TinyCNN

        return Backbone(name, TinyCNN(0).eval(), Preprocessing(input_size=(12, 12)), 16)

    yield name
    _REGISTRY.pop(name)


def test_cli_export_onnx_from_an_image_folder(tiny_registered, uint8_images, tmp_path):
    from skdlc._cli import main
    from skdlc.datasets import make_image_folder

    X, y = uint8_images
    root = make_image_folder(tmp_path / "imgs", X, y, class_names=["a", "b", "c"])
    out = tmp_path / "export"
    rc = main(["export-onnx", os.fspath(root), "--out", os.fspath(out), "--backbone", tiny_registered,
               "--mask-ratios", "0,0.5", "--quiet"])
    assert rc == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["class_names"] == ["a", "b", "c"] and m["mask_ratios"] == [0.0, 0.5]
    model = OnnxDLCModel.load(out)
    s = DLCScorer(tiny_registered, mask_ratios=[0.0, 0.5], device="cpu", verbose=False)
    paths = sorted(str(p) for p in root.rglob("*.png"))
    labels = [os.path.basename(os.path.dirname(p)) for p in paths]
    _close(model.score_samples(paths, labels), s.fit(paths, labels).score_samples(paths, labels))


def test_cli_export_onnx_from_a_saved_scorer(tiny_cnn, blob_images, tmp_path, capsys):
    import joblib

    from skdlc._cli import main

    X, y = blob_images
    s = _scorer(tiny_cnn).fit(X, y)
    joblib.dump(s, tmp_path / "scorer.joblib")
    np.save(tmp_path / "sample.npy", X[:2])
    rc = main(["export-onnx", "--scorer", os.fspath(tmp_path / "scorer.joblib"),
               "--sample", os.fspath(tmp_path / "sample.npy"), "--out", os.fspath(tmp_path / "e")])
    assert rc == 0
    assert "4 variants" in capsys.readouterr().out
    _close(OnnxDLCModel.load(tmp_path / "e").transform(X), s.transform(X))
    rc = main(["export-onnx", "--scorer", os.fspath(tmp_path / "missing.joblib"), "--out", os.fspath(tmp_path / "f")])
    assert rc == 2


# --------------------------------------------------------------------------- torch engine
def test_torch_engine_channels_last_leaves_weights_alone(tiny_cnn, blob_images):
    X, y = blob_images
    before = {k: v.clone() for k, v in tiny_cnn.state_dict().items()}
    fast = _scorer(tiny_cnn).fit_transform(X, y)
    for k, v in tiny_cnn.state_dict().items():
        assert torch.equal(v, before[k]) and v.is_contiguous(), k
    plain = TorchEngine(create_backbone(tiny_cnn), channels_last=False)
    assert plain._use_channels_last() is False
    assert TorchEngine(create_backbone(tiny_cnn))._use_channels_last() is True
    _close(_scorer(tiny_cnn, keep_variants=True).fit_transform(X, y), fast)
    with pytest.raises(ValueError, match="precision"):
        _scorer(tiny_cnn, precision="int8").fit(X, y)


# --------------------------------------------------------------------------- estimator contract
def test_onnx_model_init_stores_parameters_only_and_reads_the_folder_when_used(tiny_cnn, blob_images, tmp_path):
    import pickle

    from sklearn.base import clone
    from sklearn.utils.validation import check_is_fitted

    X, y = blob_images
    s = _scorer(tiny_cnn).fit(X, y)
    out = s.export_onnx(tmp_path / "e", X=X[:2])
    model = OnnxDLCModel(out, device="cpu", batch_size=9, verbose=False)
    assert not any(k.endswith("_") for k in vars(model))  # nothing read yet
    assert model.get_params() == {"folder": out, "device": "cpu", "batch_size": 9, "num_workers": None,
                                  "threads": None, "verify": True, "verbose": False}
    assert model.get_params()["folder"] is out
    twin = clone(model)
    assert twin.get_params() == model.get_params() and twin is not model
    pickle.loads(pickle.dumps(model))  # an unread model pickles too
    _close(model.transform(X), s.transform(X))  # the first transform reads the folder
    check_is_fitted(model)
    assert model.logits_ == model.logits == s.logits and model.embedding_ is False
    assert model.fit(X, y) is model  # fit reads the folder again; X and y are ignored
    _close(clone(model).score_samples(X, y), s.score_samples(X, y))
    _close(pickle.loads(pickle.dumps(model)).transform(X), s.transform(X))
    assert list(OnnxDLCModel(out).classes_) == [0, 1, 2]  # a fitted attribute reads it too
    model.set_params(batch_size=5)
    assert "manifest_" not in vars(model)
    _close(model.transform(X), s.transform(X))


def test_a_broken_folder_fails_at_fit_not_at_construction(tmp_path):
    model = OnnxDLCModel(tmp_path / "missing")
    assert "missing" in repr(model)
    with pytest.raises(FileNotFoundError, match="not an skdlc ONNX export"):
        model.fit()
    with pytest.raises(FileNotFoundError, match="not an skdlc ONNX export"):
        model.transform(np.zeros((2, 3, 12, 12), np.float32))
    with pytest.raises(ValueError, match="(?i)invalid parameter .colour."):
        model.set_params(colour="red")
