"""Engine objects: ``DLCScorer(engine=TorchSettings(...) / OnnxSettings(...))``."""

import dataclasses
import pickle

import numpy as np
import pytest
from sklearn.base import clone

import skdlc
from skdlc import DLCScorer, OnnxSettings, RayBackend, TorchSettings
from skdlc import _scorer
from skdlc._engine import TorchEngine

RATIOS = [0.0, 0.4, 0.8]


def _scorer_of(backbone, **kw):
    return DLCScorer(backbone, **{"mask_ratios": RATIOS, "device": "cpu", "verbose": False,
                                  "batch_size": 16, **kw})


def test_public_names_are_exported_lazily():
    assert "TorchSettings" in skdlc.__all__ and "OnnxSettings" in skdlc.__all__
    assert skdlc.TorchSettings is TorchSettings and skdlc.OnnxSettings is OnnxSettings


def test_settings_are_frozen_values_that_pickle_and_clone():
    t = TorchSettings(precision="bfloat16", keep_variants=False, num_workers=0)
    assert pickle.loads(pickle.dumps(t)) == t
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.precision = "float32"
    s = DLCScorer(engine=t)
    c = clone(s)
    assert c.engine == t and c.get_params()["engine"] == t
    o = OnnxSettings(threads=2)
    assert pickle.loads(pickle.dumps(DLCScorer(engine=o))).engine == o


@pytest.mark.parametrize("make, match", [
    (lambda: TorchSettings(precision="int8"), "precision"),
    (lambda: TorchSettings(keep_variants="yes"), "keep_variants"),
    (lambda: TorchSettings(num_workers=-1), "num_workers"),
    (lambda: OnnxSettings(threads=0), "threads"),
    (lambda: OnnxSettings(num_workers=1.5), "num_workers"),
])
def test_bad_settings_fail_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_torch_settings_reach_the_engine_and_give_the_flat_parameters_scores(tiny_cnn, blob_images, monkeypatch):
    X, y = blob_images
    seen = []

    class Spy(TorchEngine):
        def __init__(self, *a, **kw):
            seen.append({k: kw[k] for k in ("precision", "keep_variants", "num_workers")})
            super().__init__(*a, **kw)

    monkeypatch.setattr(_scorer, "TorchEngine", Spy)
    obj = _scorer_of(tiny_cnn, engine=TorchSettings(keep_variants=False, num_workers=0)).fit_transform(X, y)
    assert seen == [{"precision": "float32", "keep_variants": False, "num_workers": 0}]
    flat = _scorer_of(tiny_cnn, engine="torch", keep_variants=False, num_workers=0).fit_transform(X, y)
    np.testing.assert_array_equal(obj, flat)


def test_onnx_settings_run_onnxruntime_with_their_threads(tiny_cnn, blob_images, monkeypatch):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from skdlc import _onnx_engine

    X, y = blob_images
    threads = []
    real = _onnx_engine.OnnxEngine.__init__

    def spy(self, *a, **kw):
        threads.append(kw.get("threads"))
        real(self, *a, **kw)

    monkeypatch.setattr(_onnx_engine.OnnxEngine, "__init__", spy)
    got = _scorer_of(tiny_cnn, engine=OnnxSettings(threads=1, num_workers=0)).fit_transform(X, y)
    assert threads == [1]
    want = _scorer_of(tiny_cnn, engine="torch").fit_transform(X, y)
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err <= 1e-4


@pytest.mark.parametrize("flat", [{"precision": "bfloat16"}, {"keep_variants": True}, {"num_workers": 2}])
def test_engine_object_with_a_flat_setting_is_rejected(tiny_cnn, blob_images, flat):
    X, y = blob_images
    name = next(iter(flat))
    for engine in (TorchSettings(), OnnxSettings()):
        with pytest.raises(ValueError, match=f"do not also set {name}="):
            _scorer_of(tiny_cnn, engine=engine, **flat).fit(X, y)


def test_engine_objects_with_ray_are_checked_before_any_work(tiny_cnn, blob_images):
    X, y = blob_images
    with pytest.raises(ValueError, match="backend='local' only"):
        _scorer_of(tiny_cnn, engine=OnnxSettings(), backend=RayBackend()).fit(X, y)
    with pytest.raises(ValueError, match="Ray actors compute in float32"):
        _scorer_of(tiny_cnn, engine=TorchSettings(precision="float16"), backend="ray").fit(X, y)


def test_an_engine_that_is_neither_name_nor_settings_is_rejected(tiny_cnn, blob_images):
    X, y = blob_images
    with pytest.raises(ValueError, match="engine"):
        _scorer_of(tiny_cnn, engine=RayBackend()).fit(X, y)
