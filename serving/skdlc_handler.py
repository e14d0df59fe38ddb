"""TorchServe handler for skdlc: DLC complexities of posted images.

Pass this file to ``torch-model-archiver --handler`` (``skdlc serve archive`` does). All
logic lives in the installed package (``skdlc._serving_handler``), so the handler always
matches the skdlc that unpickles the scorer. TorchServe wants exactly one class here.
"""

from skdlc._serving_handler import DLCHandler as _DLCHandler


class SkdlcHandler(_DLCHandler):
    """DLC scoring handler; see ``skdlc._serving_handler.DLCHandler``."""
