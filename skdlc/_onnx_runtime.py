"""ONNX Runtime setup: imports with install hints, session options, execution providers.

Shared by the engine (:mod:`skdlc._onnx_engine`), the exporter and the export folder
reader; the export format's constants live here too.
"""

from __future__ import annotations

import hashlib
import os

import torch

FORMAT = "skdlc-onnx-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PROTOTYPES = "prototypes.npy"
INPUT_NAME = "input"
OUTPUT_NAME = "features"
OPSET = 17
INSTALL_HINT = (
    'pip install "skdlc[onnx]" for the CPU, or "skdlc[onnx-gpu]" for CUDA '
    "(never both: the two packages overwrite each other's onnxruntime module)"
)


# ----------------------------------------------------------------------------- imports
def _import_ort():
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ImportError(f"ONNX Runtime is not installed: {INSTALL_HINT}") from exc
    if not hasattr(ort, "InferenceSession"):
        raise ImportError(
            "the onnxruntime module is broken (installing both onnxruntime and "
            "onnxruntime-gpu does that); uninstall both, then " + INSTALL_HINT
        )
    return ort


def _import_onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise ImportError(f"exporting to ONNX needs the onnx package: {INSTALL_HINT}") from exc
    return onnx, numpy_helper


def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


_SHARED_ARENA = False


def _share_cpu_arena(ort) -> None:
    """Register one CPU arena allocator in ONNX Runtime's environment (once per process;
    only sessions that opt in with ``session.use_env_allocators`` use it)."""
    global _SHARED_ARENA
    if _SHARED_ARENA:
        return
    _SHARED_ARENA = True
    try:
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))
    except Exception:  # noqa: BLE001 - an older runtime: sessions keep their own arenas
        pass


def session_options(threads: int | None = None):
    """ONNX Runtime session options tuned for batch throughput.

    All graph optimisations (constant folding, Conv+BatchNorm fusion, layout
    transforms), sequential execution (a backbone is one chain: inter-op parallelism
    only adds overhead, measured), ``threads`` intra-op threads, by default one per
    usable core, and no spin-waiting: each variant is its own session with its own
    thread pool, and the idle pools of the other T - 1 variants must not spin on the
    cores the running one needs (measured: benchmarks/results/speed.md, layout).

    CPU memory comes from one arena shared by every session of the process: each
    session's own arena would keep its peak activation memory (~650 MB for
    EfficientNet-Lite0 at 224 px, batch 64), T times over.
    """
    ort = _import_ort()
    _share_cpu_arena(ort)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = int(threads) if threads else _usable_cpus()
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.add_session_config_entry("session.use_env_allocators", "1")
    so.log_severity_level = 3  # errors only: no per-session info lines
    return so


def _providers(device: str | torch.device) -> tuple[list, int | None]:
    """Execution providers for ``device``, and the CUDA device id (None on the CPU).

    ``"auto"`` takes CUDA when ``onnxruntime-gpu`` offers it; ``"cuda[:i]"`` insists.
    """
    ort = _import_ort()
    available = ort.get_available_providers()
    dev = device if isinstance(device, torch.device) else None
    name = str(device)
    if dev is None and name != "auto":
        dev = torch.device(name)
    if dev is not None and dev.type not in ("cpu", "cuda"):
        raise ValueError(f"ONNX Runtime runs on 'cpu' or 'cuda', not {name!r}")
    if dev is not None and dev.type == "cpu":
        return ["CPUExecutionProvider"], None
    if "CUDAExecutionProvider" not in available:
        if dev is not None and dev.type == "cuda":
            raise ValueError(
                f"device={name!r} but ONNX Runtime has no CUDAExecutionProvider "
                f"(available: {available}); {INSTALL_HINT}"
            )
        return ["CPUExecutionProvider"], None
    idx = 0 if dev is None or dev.index is None else int(dev.index)
    return [("CUDAExecutionProvider", {"device_id": idx}), "CPUExecutionProvider"], idx


def _sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
