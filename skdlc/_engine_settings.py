"""Public engine settings: ``DLCScorer(engine=TorchSettings(...))`` or ``OnnxSettings(...)``.

Small frozen dataclasses holding the execution settings of one engine. They are plain
values (picklable, compared by value, copied by :func:`sklearn.base.clone`); the scorer
builds its private engine from them at ``fit`` / ``transform`` time. Named ``*Settings``
so they never clash with the runtime classes that do the work.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

_PRECISIONS = ("float32", "bfloat16", "float16")


def _check_common(owner: str, keep_variants, num_workers) -> None:
    if not (isinstance(keep_variants, bool) or keep_variants == "auto"):
        raise ValueError(f"{owner} keep_variants must be True, False or 'auto', got {keep_variants!r}")
    if num_workers is not None and not (isinstance(num_workers, Integral) and not isinstance(num_workers, bool)
                                        and num_workers >= 0):
        raise ValueError(f"{owner} num_workers must be an int >= 0 or None, got {num_workers!r}")


@dataclass(frozen=True)
class TorchSettings:
    """Run the masked variants with torch: ``DLCScorer(engine=TorchSettings(...))``.

    Parameters
    ----------
    precision : {"float32", "bfloat16", "float16"}, default="float32"
        Autocast dtype on CUDA: faster, scores change slightly. The CPU computes in float32.
    keep_variants : bool or "auto", default="auto"
        Keep every masked variant's weights and read the data once ("auto": when they
        fit a 2 GiB budget and reading the data costs work), as ``DLCScorer``'s.
    num_workers : int or None, default=None
        Processes decoding images; None: up to 4 when batches need work.
    """

    precision: str = "float32"
    keep_variants: bool | str = "auto"
    num_workers: int | None = None

    def __post_init__(self):
        if self.precision not in _PRECISIONS:
            raise ValueError(f"TorchSettings precision must be one of {_PRECISIONS}, got {self.precision!r}")
        _check_common("TorchSettings", self.keep_variants, self.num_workers)


@dataclass(frozen=True)
class OnnxSettings:
    """Run the masked variants with ONNX Runtime: ``DLCScorer(engine=OnnxSettings(...))``.

    Image and array backbones only (see docs/onnx.md); computes in float32.

    Parameters
    ----------
    threads : int or None, default=None
        Intra-op threads per ONNX Runtime session; None: one per usable core.
    keep_variants : bool or "auto", default="auto"
        Keep every variant's session and read the data once, as ``DLCScorer``'s.
    num_workers : int or None, default=None
        Processes decoding images; None: up to 4 when batches need work.
    """

    threads: int | None = None
    keep_variants: bool | str = "auto"
    num_workers: int | None = None

    def __post_init__(self):
        if self.threads is not None and not (isinstance(self.threads, Integral) and not isinstance(self.threads, bool)
                                             and self.threads >= 1):
            raise ValueError(f"OnnxSettings threads must be an int >= 1 or None, got {self.threads!r}")
        _check_common("OnnxSettings", self.keep_variants, self.num_workers)
