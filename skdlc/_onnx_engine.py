"""The ONNX Runtime engine: prepare a variant = build its session; run a batch = session.run.

The loops (variant-major / batch-major, DataLoader, memory budget, progress) are
:class:`skdlc._engine.LoopEngine`'s, shared with the torch engine.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import torch

from ._backbones._base import Backbone
from ._data import Batches
from ._engine import LoopEngine
from ._onnx_graphs import _graphs_for, _MaskedGraphs
from ._onnx_runtime import INPUT_NAME, OUTPUT_NAME, _import_ort, _providers, session_options

__all__ = ["OnnxEngine"]

class _TorchVariants:
    """Variants made on demand from a torch backbone (exported once, then masked)."""

    def __init__(self, backbone: Backbone, masking: str):
        if backbone.collate is not None:
            raise NotImplementedError(
                f"engine='onnxruntime' runs image and array backbones; {backbone.name!r} "
                "takes text (a collate function): use engine='torch'"
            )
        self.backbone = backbone
        self.masking = masking
        self._graphs: _MaskedGraphs | None = None

    def prepare(self, batches: Batches) -> None:
        a = batches.make(0, min(2, batches.n))
        if isinstance(a, dict):
            raise NotImplementedError("engine='onnxruntime' cannot run dict (text) inputs")
        param = next(iter(self.backbone.module.parameters()), None)
        example = a.to(param.device) if param is not None else a
        self._graphs = _graphs_for(self.backbone, self.masking, example)

    def nbytes(self) -> int:
        return self._graphs.nbytes

    def num_features(self) -> int | None:
        return self.backbone.num_features

    def model(self, ratio: float) -> bytes:
        return self._graphs.variant(ratio)

    def input_shape(self) -> tuple | None:
        return tuple(self._graphs.example.shape[1:])


class _FolderVariants:
    """Variants read from an export folder."""

    def __init__(self, folder: Path, manifest: dict):
        self.folder = folder
        self.files = {float(v["ratio"]): folder / v["file"] for v in manifest["variants"]}
        self._shape = tuple(manifest["input"]["shape"][1:])
        self._dim = int(manifest["output"]["shape"][1])

    def prepare(self, batches: Batches) -> None:
        pass

    def nbytes(self) -> int:
        return max(os.path.getsize(f) for f in self.files.values())

    def num_features(self) -> int | None:
        return self._dim

    def model(self, ratio: float) -> str:
        for r, f in self.files.items():
            if abs(r - ratio) <= 1e-12:
                return os.fspath(f)
        raise KeyError(
            f"the export in {self.folder} has no variant at mask ratio {ratio}; "
            f"it has {sorted(self.files)}"
        )

    def input_shape(self) -> tuple | None:
        return self._shape


class OnnxEngine(LoopEngine):
    """Run masked variants with ONNX Runtime (the loops are :class:`~skdlc._engine.LoopEngine`'s).

    Every variant is an ``InferenceSession``. When the sessions and features fit the
    memory budget (``keep_variants="auto"``) each decoded batch goes through all of
    them (data read once); otherwise one session at a time (data read T times).
    On CUDA the batch is copied to the GPU once and bound to every session (IO binding).

    Parameters
    ----------
    variants : _TorchVariants or _FolderVariants
        Where the models come from; use :meth:`from_backbone` or :class:`OnnxDLCModel`.
    device : str or torch.device, default="cpu"
        "cpu", "cuda[:i]" or "auto" (CUDA when ``onnxruntime-gpu`` offers it).
    keep_variants : bool or "auto"
    num_workers : int
        DataLoader workers decoding batches while ONNX Runtime runs.
    threads : int or None
        Intra-op threads per session; None: one per usable core.
    verbose : bool
    retain : bool
        Keep every session between calls (each ratio's session is built once).
    """

    default_desc = "DLC (onnxruntime)"

    def __init__(
        self,
        variants,
        *,
        device: str | torch.device = "cpu",
        keep_variants: bool | str = "auto",
        num_workers: int = 0,
        threads: int | None = None,
        verbose: bool = False,
        retain: bool = False,
    ):
        super().__init__(keep_variants=keep_variants, num_workers=num_workers, verbose=verbose,
                         retain=retain)
        self.variants = variants
        self.device = device
        self.threads = threads
        self.providers, self.device_id = _providers(device)

    @classmethod
    def from_backbone(cls, backbone: Backbone, *, masking: str = "layer", **kwargs) -> "OnnxEngine":
        """An engine exporting ``backbone``'s masked variants on demand."""
        return cls(_TorchVariants(backbone, masking), **kwargs)

    @property
    def _sessions(self) -> dict:
        return self._kept

    # ------------------------------------------------------------------ the engine's own
    @contextlib.contextmanager
    def _running(self, batches: Batches | None):
        if batches is not None:
            self.variants.prepare(batches)
        yield

    def _prepare(self, ratio: float):
        """An ``InferenceSession`` of the variant masked at ``ratio``."""
        ort = _import_ort()
        sess = ort.InferenceSession(
            self.variants.model(ratio), session_options(self.threads), providers=self.providers
        )
        if self.device_id is not None and sess.get_providers()[0] != "CUDAExecutionProvider":
            if str(self.device) != "auto":
                raise RuntimeError(
                    f"ONNX Runtime could not start CUDA for device={self.device!r} "
                    f"(session providers: {sess.get_providers()})"
                )
            self.providers, self.device_id = ["CPUExecutionProvider"], None
        return sess

    def _input(self, x):
        """The batch as ONNX Runtime sees it: float32 numpy, on the GPU once (shared by all variants)."""
        if isinstance(x, dict):
            raise NotImplementedError("engine='onnxruntime' cannot run dict (text) inputs")
        arr = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        want = self.variants.input_shape()
        if want is not None and tuple(arr.shape[1:]) != tuple(want):
            raise ValueError(
                f"the ONNX graph takes inputs of shape (batch, {', '.join(map(str, want))}), "
                f"got a batch of shape {tuple(arr.shape)}"
            )
        if self.device_id is None:
            return arr
        return _import_ort().OrtValue.ortvalue_from_numpy(arr, "cuda", self.device_id)

    def _run(self, sess, x) -> np.ndarray:
        if isinstance(x, np.ndarray):
            return sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        binding = sess.io_binding()
        binding.bind_ortvalue_input(INPUT_NAME, x)
        binding.bind_output(OUTPUT_NAME, "cpu")
        sess.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def _variant_bytes(self) -> int:
        # A session holds its weights and, on the CPU, a prepacked copy of them.
        return 2 * self.variants.nbytes()

    def _feature_dim(self) -> int:
        return self.variants.num_features() or 2048
