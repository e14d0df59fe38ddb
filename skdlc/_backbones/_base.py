"""What a backbone is for skdlc: a feature module plus the preprocessing it expects.

Like timm's ``pretrained_cfg``, the preprocessing travels with the module, so the
scorer never has to guess input size, mean, std or channel order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

__all__ = ["Backbone", "Preprocessing"]


@dataclass(frozen=True)
class Preprocessing:
    """How raw images become the float batch a backbone expects.

    A uint8 RGB image ``img`` (H, W, C) becomes
    ``(reorder(img) * scale - mean) / std`` after resizing: the shorter side is resized
    to ``input_size / crop_pct`` and the centre ``input_size`` is cropped (timm's eval
    transform; ``crop_pct=1`` is a plain resize for square inputs).

    Parameters
    ----------
    input_size : (int, int)
        Height and width fed to the model.
    mean, std : tuple of 3 floats
        Per-channel statistics, in the units after ``scale`` and in ``channel_order``.
    interpolation : {"bilinear", "bicubic", "nearest"}
    crop_pct : float
        Centre-crop fraction, as timm's ``crop_pct``.
    scale : float
        Multiplier applied to uint8 pixel values first (1/255 for most models, 1.0 for
        Caffe models that work in 0..255).
    channel_order : {"RGB", "BGR"}
    """

    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    scale: float = 1.0 / 255.0
    channel_order: str = "RGB"

    def to_dict(self) -> dict:
        return {
            "input_size": list(self.input_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
            "scale": self.scale,
            "channel_order": self.channel_order,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(
            input_size=tuple(d["input_size"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            interpolation=d.get("interpolation", "bilinear"),
            crop_pct=float(d.get("crop_pct", 1.0)),
            scale=float(d.get("scale", 1.0 / 255.0)),
            channel_order=d.get("channel_order", "RGB"),
        )


@dataclass
class Backbone:
    """A feature extractor ready for DLC.

    Attributes
    ----------
    name : str
        Registry name, or the class name of a user module.
    module : torch.nn.Module
        Maps a float batch (N, C, H, W) to features (N, D): for named classifiers the
        pooled pre-logits, never class logits. Its ``ndim >= 2`` weights are what DLC
        masks, so it must not contain a classification head.
    preprocessing : Preprocessing or None
        ``None`` for user modules: input is passed to the module as given (float).
    num_features : int or None
        D, when known.
    classifier : torch.nn.Module or None
        Optional pre-trained head mapping features to the original (e.g. ImageNet)
        logits. Never masked or used for scoring; used to sanity-check loaded weights.
    class_names : list of str or None
        Names of the classifier's outputs, when known.
    collate : callable or None
        For non-image inputs (e.g. text): maps a list of raw samples (strings) to the
        module's input, a tensor or a dict of tensors (passed as keyword arguments).
        ``None`` means image input handled by ``preprocessing``.
    """

    name: str
    module: nn.Module
    preprocessing: Preprocessing | None = None
    num_features: int | None = None
    classifier: nn.Module | None = None
    class_names: list[str] | None = field(default=None, repr=False)
    collate: Callable[[list], object] | None = field(default=None, repr=False)


BackboneFactory = Callable[..., Backbone]
