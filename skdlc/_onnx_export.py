"""Export of a backbone to ONNX, and the on-disk cache of exports of versioned models."""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings

import torch
from torch import nn

from ._engine import _flatten
from ._onnx_runtime import FORMAT_VERSION, INPUT_NAME, INSTALL_HINT, OPSET, OUTPUT_NAME

class _Features(nn.Module):
    """The backbone with its output flattened to (N, D) float: what the graph returns."""

    def __init__(self, module: nn.Module, name: str):
        super().__init__()
        self.module = module
        self.name = name

    def forward(self, x):
        return _flatten(self.module(x), self.name).float()


_PREFIX = "module."  # parameter names inside _Features


def _export(module: nn.Module, example: torch.Tensor, name: str, opset: int = OPSET) -> bytes:
    """Serialized ONNX model of ``module`` with a dynamic batch axis."""
    was_training = module.training
    wrapper = _Features(module, name).eval()
    try:
        return _export_eval(wrapper, example, name, opset)
    finally:
        module.train(was_training)


_DISK_CACHE_FILES = 8  # exports kept under cache_dir("onnx"), most recently used first
_VERSIONED_CODE = ("timm.", "torchvision.")  # module code that a package version pins


def _cached_export(module: nn.Module, example: torch.Tensor, name: str) -> bytes:
    """:func:`_export`, kept on disk for timm and torchvision models.

    Tracing costs seconds per process; the graph depends only on the weights, the
    input shape and the code, which for timm and torchvision classes their package
    version pins (with ``repr(module)`` for the configuration: pooling, activations).
    User-defined modules are never cached on disk: their code may change under the same
    weights. ``SKDLC_ONNX_CACHE=0`` turns the cache off.
    """
    cls = type(module)
    if os.environ.get("SKDLC_ONNX_CACHE", "1") == "0" or not cls.__module__.startswith(_VERSIONED_CODE):
        return _export(module, example, name)
    from importlib.metadata import version

    from ._cache import fingerprint_module
    from ._io import atomic_write
    from ._paths import cache_dir

    package = cls.__module__.split(".")[0]
    key = hashlib.sha256(json.dumps([
        FORMAT_VERSION, OPSET, torch.__version__, package, version(package),
        f"{cls.__module__}.{cls.__qualname__}", repr(module), fingerprint_module(module),
        list(example.shape[1:]), str(example.dtype),
    ]).encode()).hexdigest()[:40]
    folder = cache_dir("onnx")
    path = folder / f"{key}.onnx"
    try:
        data = path.read_bytes()
        os.utime(path)  # most recently used
        return data
    except OSError:
        pass
    data = _export(module, example, name)
    try:
        with atomic_write(path, "wb") as f:
            f.write(data)
        old = sorted(folder.glob("*.onnx"), key=lambda f: f.stat().st_mtime, reverse=True)
        for f in old[_DISK_CACHE_FILES:]:
            f.unlink(missing_ok=True)
    except OSError:  # a read-only cache is no reason to fail
        pass
    return data


def _export_eval(wrapper: nn.Module, example: torch.Tensor, name: str, opset: int) -> bytes:
    kwargs = dict(
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        opset_version=opset,
    )
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation + tracer notes
        try:
            buf = io.BytesIO()
            torch.onnx.export(
                wrapper,
                (example,),
                buf,
                dynamo=False,
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                # Keep every weight as its own initializer (ONNX Runtime folds and
                # fuses at load time anyway), so variants are made by masking them.
                do_constant_folding=False,
                **kwargs,
            )
            return buf.getvalue()
        except Exception as legacy_error:  # noqa: BLE001 - fall back, then re-raise both
            try:
                import onnxscript  # noqa: F401 - torch's default exporter needs it
            except ImportError:
                raise RuntimeError(
                    f"exporting backbone {name!r} to ONNX failed ({legacy_error}); torch's "
                    "other exporter needs the onnxscript package: " + INSTALL_HINT
                ) from legacy_error
            try:
                batch = torch.export.Dim("batch", min=1)
                kwargs["opset_version"] = max(opset, 18)  # its lowest; no down-conversion
                program = torch.onnx.export(
                    wrapper, (example,), dynamo=True, dynamic_shapes=({0: batch},),
                    optimize=False,  # keeps weights as named initializers (no BN folding)
                    verbose=False, **kwargs,
                )
                return program.model_proto.SerializeToString()
            except Exception as exc:
                raise RuntimeError(
                    f"cannot export backbone {name!r} to ONNX: TorchScript exporter: "
                    f"{legacy_error}; torch.export exporter: {exc}"
                ) from exc
