"""backend="ray": Ray Data scoring gives the local backend's scores.

One local Ray (2 CPUs) for the whole module: starting Ray costs seconds.
"""

import numpy as np
import pytest
from PIL import Image

from skdlc import DLCScorer
from skdlc._backbones._base import Backbone, Preprocessing

pytestmark = pytest.mark.slow  # see pyproject.toml: `-m 'not slow'` skips these


ray = pytest.importorskip("ray", reason="backend='ray' needs Ray Data: pip install 'skdlc[ray]'")
pytest.importorskip("ray.data", reason="backend='ray' needs Ray Data: pip install 'skdlc[ray]'")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    if started:
        ray.shutdown()


def _scorer(module, **kw):
    kw.setdefault("engine", "torch")  # forward hooks and pass counts see the torch module
    kw.setdefault("mask_ratios", [0, 0.3, 0.6])
    return DLCScorer(module, device="cpu", verbose=False, batch_size=16, **kw)


def test_ray_scores_equal_local(tiny_cnn, blob_images, monkeypatch, tmp_path):
    X, y = blob_images
    X_new = np.clip(X[::-1] * 0.9 + 0.05, 0, 1)
    local = _scorer(tiny_cnn)
    expected = local.fit_transform(X, y)
    dist = _scorer(tiny_cnn, backend="ray", memory=tmp_path)  # TinyCNN (conftest) goes by value
    got = dist.fit_transform(X, y)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dist.prototypes_, local.prototypes_, rtol=1e-5, atol=1e-6)
    assert dist.mask_ratios_ == local.mask_ratios_
    assert dist.n_forward_batches_ == 3 * 4
    again = _scorer(tiny_cnn, backend="ray", memory=tmp_path)  # final results are cached
    np.testing.assert_array_equal(again.fit_transform(X, y), got)
    assert again.n_forward_batches_ == 0
    # On a multi-node cluster the reduce and the losses run as tasks where the blocks
    # are; pretend to be one, so that path runs too.
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}, {"Alive": True}])
    np.testing.assert_allclose(dist.transform(X_new), local.transform(X_new), rtol=1e-5, atol=1e-6)


def test_ray_reads_image_files_with_embedding(tiny_cnn, tmp_path):
    # Paths are decoded by the actors; ratios without 0 need an extra unmasked pass for
    # the embedding and the unmasked prototypes.
    rng = np.random.default_rng(0)
    paths = []
    for i in range(40):
        p = tmp_path / f"{i}.png"
        Image.fromarray((rng.random((12 + i % 4, 12, 3)) * 255).astype(np.uint8)).save(p)
        paths.append(str(p))
    y = np.arange(40) % 3
    bb = Backbone("tiny", tiny_cnn, preprocessing=Preprocessing(input_size=(12, 12)))
    kw = dict(embedding=True, prototypes="unmasked", mask_ratios=[0.2, 0.5])
    expected = _scorer(bb, **kw).fit_transform(paths, y)
    got = _scorer(bb, backend="ray", **kw).fit_transform(paths, y)
    assert got.shape == (40, 16 + 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_ray_auto_path_equals_local(tiny_cnn, blob_images):
    X, y = blob_images
    kw = dict(mask_ratios="auto", max_ratios=2, random_state=0)
    local = _scorer(tiny_cnn, **kw)
    dist = _scorer(tiny_cnn, backend="ray", **kw)
    np.testing.assert_allclose(dist.fit_transform(X, y), local.fit_transform(X, y), rtol=1e-5, atol=1e-6)
    assert dist.mask_ratios_ == local.mask_ratios_


def test_ray_bad_gpu_request(tiny_cnn, blob_images):
    X, y = blob_images
    with pytest.raises(ValueError, match="num_gpus=1"):
        _scorer(tiny_cnn, backend="ray", num_gpus=1).fit(X, y)


def test_backend_is_validated(tiny_cnn, blob_images):
    X, y = blob_images
    with pytest.raises(ValueError, match="backend"):
        _scorer(tiny_cnn, backend="spark").fit(X, y)


def test_cli_prune_backend_ray(tiny_cnn, tmp_path):
    import csv

    from skdlc._backbones import _REGISTRY, register_backbone
    from skdlc._cli import main
    from skdlc.datasets import make_image_folder

    rng = np.random.default_rng(0)
    X = (rng.random((30, 14, 14, 3)) * 255).astype(np.uint8)
    folder = make_image_folder(tmp_path / "data", X, np.arange(30) % 3, class_names=["a", "b", "c"])
    name = "test_distributed_tiny"
    register_backbone(name)(
        lambda *, pretrained=True: Backbone(name, tiny_cnn, Preprocessing(input_size=(12, 12)), 16)
    )
    try:
        rows = {}
        for backend in ("local", "ray"):
            out = tmp_path / backend
            argv = ["prune", folder, "--keep", "0.5", "--backbone", name, "--mask-ratios", "0,0.4",
                    "--device", "cpu", "--num-workers", "0", "--out", out, "--quiet", "--backend", backend]
            assert main([str(a) for a in argv]) == 0
            with open(out / "scores.csv", newline="") as f:
                rows[backend] = list(csv.DictReader(f))
    finally:
        _REGISTRY.pop(name, None)
    assert [r["path"] for r in rows["ray"]] == [r["path"] for r in rows["local"]]
    np.testing.assert_allclose(
        [float(r["score"]) for r in rows["ray"]], [float(r["score"]) for r in rows["local"]], rtol=1e-5
    )
    assert [r["kept"] for r in rows["ray"]] == [r["kept"] for r in rows["local"]]


def test_ray_backend_object_path_without_zero(tiny_cnn, blob_images):
    # The driver's off-path unmasked pass (embedding, unmasked prototypes) on Ray too.
    from skdlc._distributed import RayBackend

    X, y = blob_images
    kw = dict(mask_ratios=[0.3, 0.6], prototypes="unmasked", embedding=True, logits="cosine")
    local = _scorer(tiny_cnn, **kw)
    dist = _scorer(tiny_cnn, backend=RayBackend(num_gpus=0), **kw)
    np.testing.assert_allclose(dist.fit_transform(X, y), local.fit_transform(X, y), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dist.prototypes_, local.prototypes_, rtol=1e-5, atol=1e-6)
    assert dist.mask_ratios_ == (0.3, 0.6)


def test_ray_text_grouped_by_length_comes_back_in_input_order():
    from test_driver import _char_backbone

    rng = np.random.default_rng(1)
    texts = ["".join(rng.choice(list("abcdef"), size=int(n))) for n in rng.integers(2, 40, size=48)]
    y = np.arange(48) % 3
    kw = dict(mask_ratios=[0, 0.5], embedding=True)
    local = _scorer(_char_backbone(), **kw).fit_transform(texts, y)
    got = _scorer(_char_backbone(), backend="ray", **kw).fit_transform(texts, y)
    np.testing.assert_allclose(got, local, rtol=1e-5, atol=1e-6)
