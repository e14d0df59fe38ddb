"""DLCScorer behaviour: shapes, caching, pipelines, input kinds, bad input."""

import os

import joblib
import numpy as np
import pytest
import torch
from imblearn.pipeline import make_pipeline
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skdlc import DLCScorer, FlexRandSampler
from skdlc._masking import maskable_parameters


def _count_forwards(module):
    calls = {"n": 0}

    def hook(*_):
        calls["n"] += 1

    module.register_forward_hook(hook)
    return calls


def _scorer(module, **kw):
    kw.setdefault("engine", "torch")  # forward hooks and pass counts see the torch module
    kw.setdefault("mask_ratios", [0, 0.3, 0.6])
    return DLCScorer(module, device="cpu", verbose=False, batch_size=16, **kw)


def test_fit_transform_shapes_and_own_class_scores(tiny_cnn, blob_images):
    X, y = blob_images
    s = _scorer(tiny_cnn)
    out = s.fit_transform(X, y)
    assert out.shape == (60, 3)
    assert np.all(out >= 0)
    np.testing.assert_allclose(s.transform(X), out, rtol=1e-6)
    np.testing.assert_allclose(s.score_samples(X, y), out[np.arange(60), y], rtol=1e-6)
    assert s.prototypes_.shape == (3, 3, 16)
    assert s.mask_ratios_ == (0.0, 0.3, 0.6)


def test_fit_transform_runs_each_variant_once(tiny_cnn, blob_images):
    X, y = blob_images
    calls = _count_forwards(tiny_cnn)
    _scorer(tiny_cnn, keep_variants=False).fit_transform(X, y)
    assert calls["n"] == 3 * 4  # 3 variants x 4 batches of 16, never 2T


def test_batch_major_equals_variant_major(tiny_cnn, blob_images):
    X, y = blob_images
    a = _scorer(tiny_cnn, keep_variants=False).fit_transform(X, y)
    b = _scorer(tiny_cnn, keep_variants=True).fit_transform(X, y)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_weights_restored_after_scoring(tiny_cnn, blob_images):
    X, y = blob_images
    before = {k: v.clone() for k, v in tiny_cnn.state_dict().items()}
    _scorer(tiny_cnn, masking="global").fit_transform(X, y)
    for k, v in tiny_cnn.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_string_labels_and_classes(tiny_cnn, blob_images):
    X, y = blob_images
    names = np.array(["cat", "dog", "emu"])[y]
    s = _scorer(tiny_cnn).fit(X, names)
    assert s.classes_.tolist() == ["cat", "dog", "emu"]
    with pytest.raises(ValueError, match="unseen"):
        s.score_samples(X[:2], ["cat", "yak"])


def test_easy_samples_score_lower(tiny_cnn):
    # Class 1 holds half clean copies of the class colour and half pure noise: the
    # noise half must be scored harder.
    rng = np.random.default_rng(1)
    clean = np.full((20, 3, 12, 12), 0.8, np.float32) + 0.02 * rng.standard_normal((20, 3, 12, 12)).astype(np.float32)
    noisy = rng.random((20, 3, 12, 12)).astype(np.float32)
    other = np.full((20, 3, 12, 12), 0.1, np.float32) + 0.02 * rng.standard_normal((20, 3, 12, 12)).astype(np.float32)
    X = np.concatenate([clean, noisy, other])
    y = np.array([1] * 40 + [0] * 20)
    scores = _scorer(tiny_cnn).fit(X, y).score_samples(X, y)
    assert scores[20:40].mean() > scores[:20].mean()


def test_int_mask_ratios_include_zero_and_follow_random_state(tiny_cnn, blob_images):
    X, y = blob_images
    a = _scorer(tiny_cnn, mask_ratios=4, random_state=0).fit(X, y).mask_ratios_
    b = _scorer(tiny_cnn, mask_ratios=4, random_state=0).fit(X, y).mask_ratios_
    assert a == b and len(a) == 4 and a[0] == 0.0
    assert all(round(r * 50) == r * 50 for r in a)


def test_auto_ratios_stop_growing(tiny_cnn, blob_images):
    X, y = blob_images
    s = _scorer(tiny_cnn, mask_ratios="auto", auto_tol=0.95, max_ratios=8, random_state=0).fit(X, y)
    assert 3 <= len(s.mask_ratios_) <= 8 and 0.0 in s.mask_ratios_
    assert s.transform(X).shape == (60, 3)


def test_embedding_in_front(tiny_cnn, blob_images):
    X, y = blob_images
    s = _scorer(tiny_cnn, embedding=True, mask_ratios=[0.2, 0.5])
    out = s.fit_transform(X, y)
    assert out.shape == (60, 16 + 3)
    with torch.no_grad():
        emb = tiny_cnn.eval()(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(out[:, :16], emb, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(s.transform(X), out, rtol=1e-5, atol=1e-6)
    assert s.get_feature_names_out()[-1] == "dlc_2"


def test_memory_cache_survives_clone(tiny_cnn, blob_images, tmp_path):
    X, y = blob_images
    s = _scorer(tiny_cnn, memory=tmp_path)
    first = s.fit_transform(X, y)
    assert s.n_forward_batches_ > 0
    c = clone(s)  # clone deep-copies the module: the content key must still match
    np.testing.assert_array_equal(c.fit_transform(X, y), first)
    assert c.n_forward_batches_ == 0
    np.testing.assert_array_equal(c.transform(X[:10]), s.transform(X[:10]))


_CHILD = """
import sys, numpy as np
sys.path.insert(0, {root!r})
from tests.conftest import TinyCNN
from skdlc import DLCScorer
rng = np.random.default_rng(0)
X = rng.random((24, 3, 12, 12), dtype=np.float32); y = np.repeat([0, 1], 12)
s = DLCScorer(TinyCNN(0), mask_ratios=[0, 0.5], device="cpu", verbose=False, memory={mem!r})
out = s.fit_transform(X, y)
print(s.n_forward_batches_, float(out.sum()))
"""


@pytest.mark.slow
def test_memory_cache_hits_across_processes(tmp_path):
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = _CHILD.format(root=root, mem=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True) for _ in range(2)]
    (n1, s1), (n2, s2) = (r.stdout.split() for r in runs)
    assert int(n1) > 0 and int(n2) == 0  # the second process reads the first one's entry
    assert s1 == s2


def test_cache_never_stale(tiny_cnn, blob_images, tmp_path):
    X, y = blob_images
    s = _scorer(tiny_cnn, memory=tmp_path)
    a = s.fit_transform(X, y)
    b = _scorer(tiny_cnn, memory=tmp_path, masking="global").fit_transform(X, y)
    assert not np.allclose(a, b)  # a parameter change is a different key
    with torch.no_grad():
        tiny_cnn.fc.weight.mul_(-1)
    c = _scorer(tiny_cnn, memory=tmp_path).fit_transform(X, y)
    assert not np.allclose(a, c)  # changed weights are a different key
    X2 = X.copy()
    X2[0] = 1 - X2[0]
    d = _scorer(tiny_cnn, memory=tmp_path).fit_transform(X2, y)
    assert not np.allclose(c[0], d[0])  # changed data is a different key


def test_pipeline_gridsearch_scores_once_per_fold(tiny_cnn, blob_images, tmp_path):
    X, y = blob_images
    calls = _count_forwards(tiny_cnn)
    scorer = _scorer(tiny_cnn, embedding=True, memory=tmp_path)
    pipe = make_pipeline(scorer, FlexRandSampler(keep_ratio=0.5, random_state=0), LogisticRegression(max_iter=500))
    grid = GridSearchCV(pipe, {"flexrandsampler__gamma": [0.2, 0.5, 0.8]}, cv=StratifiedKFold(2), refit=False)
    # GridSearchCV clones the module, so count through a module-level counter instead.
    from skdlc import _engine

    counted = []
    original = _engine.TorchEngine._run

    def counting(self, params, x):
        counted.append(1)
        return original(self, params, x)

    _engine.TorchEngine._run = counting
    try:
        grid.fit(X, y)
    finally:
        _engine.TorchEngine._run = original
    n_batches_train, n_batches_test = 1 * 2, 2  # 30 samples per half-fold, batch 16
    per_fold = 3 * (n_batches_train + n_batches_test)  # 3 variants, train fit + test transform
    assert len(counted) == 2 * per_fold, len(counted)  # 2 folds, whatever the number of gammas
    assert np.all(np.isfinite(grid.cv_results_["mean_test_score"]))


def test_pipeline_fit_predict(tiny_cnn, blob_images):
    X, y = blob_images
    pipe = make_pipeline(
        _scorer(tiny_cnn, embedding=True), FlexRandSampler(keep_ratio=0.5, random_state=0),
        LogisticRegression(max_iter=1000),
    )
    pipe.fit(X, y)
    assert pipe.predict(X).shape == (60,)
    assert pipe.score(X, y) > 0.5


def test_uint8_images_and_paths_agree(tmp_path):
    from PIL import Image

    from skdlc import Backbone, Preprocessing

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (12, 20, 20, 3), dtype=np.uint8)
    y = np.repeat([0, 1], 6)
    paths = []
    for i, im in enumerate(imgs):
        p = tmp_path / f"{i}.png"
        Image.fromarray(im).save(p)
        paths.append(str(p))
    from tests.conftest import TinyCNN

    bb = Backbone("tiny", TinyCNN(0), Preprocessing(input_size=(16, 16)), num_features=16)
    a = _scorer(bb).fit_transform(imgs, y)
    b = _scorer(bb, num_workers=0).fit_transform(paths, y)
    c = _scorer(bb).fit_transform(list(imgs), y)  # a list of arrays
    np.testing.assert_allclose(a, b, rtol=1e-5)
    np.testing.assert_allclose(a, c, rtol=1e-5)
    mixed = [imgs[0], imgs[1][:15, :18]] * 6  # images of mixed sizes are resized each
    assert _scorer(bb).fit_transform(mixed, y).shape == (12, 2)


def test_torch_dataset_input(tiny_cnn, blob_images):
    X, y = blob_images
    ds = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    a = _scorer(tiny_cnn).fit_transform(X, y)
    b = _scorer(tiny_cnn, num_workers=0).fit_transform(ds, y)
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_bad_input_errors(tiny_cnn, blob_images, tmp_path):
    X, y = blob_images
    with pytest.raises(ValueError, match="NaN or infinity"):
        Xn = X.copy()
        Xn[3, 0, 0, 0] = np.nan
        _scorer(tiny_cnn).fit(Xn, y)
    with pytest.raises(ValueError, match="samples but y has"):
        _scorer(tiny_cnn).fit(X, y[:-1])
    with pytest.raises(ValueError):
        _scorer(tiny_cnn).fit(X[:0], y[:0])
    with pytest.raises(ValueError, match="mask_ratios"):
        _scorer(tiny_cnn, mask_ratios=[0, 1.0]).fit(X, y)
    with pytest.raises(ValueError, match="masking"):
        _scorer(tiny_cnn, masking="random").fit(X, y)
    with pytest.raises(ValueError, match="missing.png"):
        from skdlc import Backbone, Preprocessing

        bb = Backbone("tiny", tiny_cnn, Preprocessing(input_size=(16, 16)))
        _scorer(bb).fit([str(tmp_path / "missing.png")] * 2, [0, 1])
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="corrupt.png"):
        _scorer(bb, num_workers=0).fit([str(bad), str(bad)], [0, 1])


def test_backbone_without_features_is_named(blob_images):
    X, y = blob_images

    class Empty(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(2, 2)

        def forward(self, x):
            return x[:, :0].reshape(len(x), 0)

    with pytest.raises(ValueError, match="no features"):
        _scorer(Empty()).fit(X, y)


def test_masking_modes_zero_the_asked_fraction(tiny_cnn):
    from skdlc._masking import masked

    for mode in ("layer", "global"):
        with masked(tiny_cnn, 0.5, mode):
            zeros = sum(int((p == 0).sum()) for _, p in maskable_parameters(tiny_cnn))
            total = sum(p.numel() for _, p in maskable_parameters(tiny_cnn))
            assert abs(zeros / total - 0.5) < 0.01
            if mode == "layer":
                for _, p in maskable_parameters(tiny_cnn):
                    assert abs(float((p == 0).float().mean()) - 0.5) < 0.02


def test_transform_of_training_data_reads_fit_cache(tiny_cnn, blob_images, tmp_path):
    X, y = blob_images
    s = _scorer(tiny_cnn, memory=tmp_path).fit(X, y)
    calls = _count_forwards(tiny_cnn)
    out = s.transform(X)
    assert calls["n"] == 0  # fit already computed these losses
    np.testing.assert_allclose(out, _scorer(tiny_cnn).fit_transform(X, y), rtol=1e-6)
