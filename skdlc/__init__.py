"""skdlc: training-free dataset pruning for fine-tuning pre-trained models.

:class:`DLCScorer` scores every sample's learning complexity by masking a pre-trained
backbone (no training); :class:`FlexRandSampler` keeps a subset drawn from an easy and a
hard interval. Both are scikit-learn / imbalanced-learn estimators.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# Public names and the private module each lives in. They are imported on first use
# (PEP 562), so ``import skdlc`` and ``skdlc --help`` do not pay for torch, scikit-learn,
# SciPy or ONNX Runtime (seconds) before anything needs them.
_LAZY = {
    "DLCScorer": "._scorer",
    "FlexRandSampler": "._sampler",
    "SelectionSampler": "._selection_sampler",
    "prune": "._prune",
    "PruneResult": "._prune",
    "default_candidates": "._selection_search",
    "OnnxDLCModel": "._onnx",  # scores from an ONNX export folder, no torch backbone
    "InstructionScorer": "._instruction",
    "select_instructions": "._instruction",
    "estimate_broken_share": "._broken_pairs",
    "BrokenPairs": "._broken_pairs",
    "find_instruction_groups": "._instruction_groups",
    "InstructionGroups": "._instruction_groups",
    "RayBackend": "._distributed",  # backend=RayBackend(address=..., num_gpus=...)
    "TorchSettings": "._engine_settings",  # engine=TorchSettings(precision=..., ...)
    "OnnxSettings": "._engine_settings",  # engine=OnnxSettings(threads=..., ...)
    "select_from_scores": "._selection",
    "own_class_scores": "._driver",
    "find_label_issues": "._label_issues",
    "LabelIssueSummary": "._label_issues",
    "find_duplicates": "._duplicates",
    "keep_one_per_group": "._duplicates",
    "content_hashes": "._duplicates",
    "image_thumbnails": "._duplicates",
    "tune_gamma": ".tuning",
    "Backbone": "._backbones._base",
    "Preprocessing": "._backbones._base",
    "create_backbone": "._backbones",
    "list_backbones": "._backbones",
    "register_backbone": "._backbones",
}
# Public submodules, reachable as attributes (``skdlc.datasets.load_mnist``) without
# their own import statement, as they were when the package imported everything.
_SUBMODULES = ("baselines", "datasets", "report", "serving", "tuning")

__all__ = [
    "DLCScorer",
    "FlexRandSampler",
    "SelectionSampler",
    "prune",
    "PruneResult",
    "default_candidates",
    "OnnxDLCModel",
    "InstructionScorer",
    "select_instructions",
    "estimate_broken_share",
    "BrokenPairs",
    "find_instruction_groups",
    "InstructionGroups",
    "RayBackend",
    "TorchSettings",
    "OnnxSettings",
    "select_from_scores",
    "own_class_scores",
    "find_label_issues",
    "LabelIssueSummary",
    "find_duplicates",
    "keep_one_per_group",
    "content_hashes",
    "image_thumbnails",
    "tune_gamma",
    "Backbone",
    "Preprocessing",
    "create_backbone",
    "list_backbones",
    "register_backbone",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later look-ups are plain attribute reads
        return value
    if name in _SUBMODULES:
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:  # a submodule this build does not have
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    present = {m for m in _SUBMODULES if importlib.util.find_spec(f".{m}", __name__) is not None}
    return sorted(set(globals()) | set(__all__) | present)


if TYPE_CHECKING:  # static analysers and IDEs see the eager imports
    from . import baselines, datasets, report, serving, tuning  # noqa: F401
    from ._backbones import create_backbone, list_backbones, register_backbone
    from ._backbones._base import Backbone, Preprocessing
    from ._distributed import RayBackend
    from ._engine_settings import OnnxSettings, TorchSettings
    from ._broken_pairs import BrokenPairs, estimate_broken_share
    from ._instruction import InstructionScorer, select_instructions
    from ._instruction_groups import InstructionGroups, find_instruction_groups
    from ._onnx import OnnxDLCModel
    from ._sampler import FlexRandSampler
    from ._scorer import DLCScorer
    from ._driver import own_class_scores
    from ._duplicates import content_hashes, find_duplicates, image_thumbnails, keep_one_per_group
    from ._label_issues import LabelIssueSummary, find_label_issues
    from ._selection import select_from_scores
    from ._prune import PruneResult, prune
    from ._selection_sampler import SelectionSampler
    from ._selection_search import default_candidates
    from .tuning import tune_gamma
