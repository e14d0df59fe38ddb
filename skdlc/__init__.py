"""skdlc: training-free dataset pruning for fine-tuning pre-trained models.

:class:`DLCScorer` scores every sample's learning complexity by masking a pre-trained
backbone (no training); :class:`FlexRandSampler` keeps a subset drawn from an easy and a
hard interval. Both are scikit-learn / imbalanced-learn estimators.
"""

from ._backbones import create_backbone, list_backbones, register_backbone
from ._backbones._base import Backbone, Preprocessing
from ._sampler import FlexRandSampler
from ._scorer import DLCScorer
from ._instruction import InstructionScorer
from ._onnx import OnnxDLCModel  # scores from an ONNX export folder, no torch backbone
from .tuning import tune_gamma

__version__ = "0.1.0"

__all__ = [
    "DLCScorer",
    "FlexRandSampler",
    "OnnxDLCModel",
    "InstructionScorer",
    "tune_gamma",
    "Backbone",
    "Preprocessing",
    "create_backbone",
    "list_backbones",
    "register_backbone",
    "__version__",
]
