"""TorchServe handler for skdlc: DLC complexities of posted images.

Pass this file to ``torch-model-archiver --handler`` (``skdlc serve archive`` does). All
logic lives in the installed package (``skdlc.serving.DLCHandler``), so the handler always
matches the skdlc that unpickles the scorer. TorchServe wants exactly one class here.
"""

from skdlc.serving import DLCHandler as _DLCHandler


class SkdlcHandler(_DLCHandler):
    """DLC scoring handler; see ``skdlc.serving.DLCHandler``."""
