"""ONNX export of DLC's masked variants, and scoring with ONNX Runtime.

This plugs in *beside* the torch path: :class:`OnnxEngine` implements the same
``features(batches, ratios)`` protocol as :class:`~skdlc._engine.TorchEngine`, over the
same :class:`~skdlc._data.Batches`, so :class:`~skdlc.DLCScorer` computes prototypes and
losses exactly as it does with torch (``engine="onnxruntime"``).

How the masked variants are made
--------------------------------
The backbone is exported **once** (torch's TorchScript-based exporter, ``dynamo=False``:
several times faster to export than the default exporter, and it keeps every weight as
an initializer named like its parameter). Each masked variant is then that graph with
its weight initializers masked: the masks come from :func:`skdlc._masking.compute_masks`
on the torch parameters, so they are the torch path's masks bit for bit. No variant is
traced again. (If some weight cannot be found as an initializer, e.g. a custom exporter
folded it, the variant is exported from the masked torch module instead: slower, same
result.)

Export folder (``DLCScorer.export_onnx`` / ``skdlc export-onnx``)
-----------------------------------------------------------------
One ONNX file per masked variant (a dynamic batch axis, input ``"input"``, output
``"features"`` of shape (batch, D)), ``prototypes.npy`` and ``manifest.json`` with the
ratios, preprocessing, class labels, logits, checksums and the backbone fingerprint.
:class:`OnnxDLCModel` scores from such a folder with no torch model at hand. One file per
ratio rather than one graph holding all T variants: measured on EfficientNet-Lite0
(benchmarks/results/speed.md) T sessions run as fast as the merged graph or faster,
load faster, and a file per ratio lets a reader load only the variants it needs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import warnings
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._backbones._base import Backbone, Preprocessing
from ._data import Batches, decodes_files, make_batches
from ._engine import LoopEngine, _flatten, default_num_workers
from ._losses import LOGITS
from ._masking import MASKING_MODES, compute_masks, maskable_parameters, masked

__all__ = [
    "OnnxEngine",
    "OnnxDLCModel",
    "export_scorer",
    "session_options",
    "INSTALL_HINT",
]

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


# ----------------------------------------------------------------------------- export
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


class _MaskedGraphs:
    """One exported graph of a backbone; masked variants by masking its initializers.

    Holds the module weakly: a cached export never keeps a model alive.
    """

    def __init__(self, module: nn.Module, name: str, masking: str, example: torch.Tensor):
        onnx, numpy_helper = _import_onnx()
        if masking not in MASKING_MODES:
            raise ValueError(f"masking must be one of {MASKING_MODES}, got {masking!r}")
        self._module = weakref.ref(module)
        self.name = name
        self.masking = masking
        self.example = example.detach().cpu()
        try:
            self.base = onnx.load_from_string(_cached_export(module, example, name))
        except Exception:  # noqa: BLE001 - e.g. a damaged cache file: trace again
            self.base = onnx.load_from_string(_export(module, example, name))
        self.nbytes = self.base.ByteSize()
        self.index = self._match_initializers(numpy_helper, maskable_parameters(module))
        self._weights: dict[str, np.ndarray] | None = None
        self._order = None

    @property
    def module(self) -> nn.Module:
        module = self._module()
        if module is None:  # pragma: no cover - the cache drops dead entries
            raise RuntimeError("the backbone of this ONNX export no longer exists")
        return module

    def _match_initializers(self, numpy_helper, named) -> dict[str, int] | None:
        """Initializer index of every maskable parameter, or None if not all found."""
        inits = list(self.base.graph.initializer)
        by_name = {init.name: k for k, init in enumerate(inits)}
        arrays: dict[int, np.ndarray] = {}

        def array(k):
            if k not in arrays:
                arrays[k] = numpy_helper.to_array(inits[k])
            return arrays[k]

        wanted = [(name, p.detach().cpu().numpy()) for name, p in named]
        index: dict[str, int] = {}
        for name, want in wanted:
            k = by_name.get(_PREFIX + name, by_name.get(name))
            if k is None or array(k).shape != want.shape or not np.array_equal(array(k), want):
                taken = set(index.values())
                same = [
                    j for j, init in enumerate(inits)
                    if tuple(init.dims) == want.shape and j not in taken
                    and np.array_equal(array(j), want)
                ]
                if len(same) != 1:
                    return None
                k = same[0]
            index[name] = k
        # A weight duplicated into a second initializer would stay unmasked there.
        used = set(index.values())
        for j, init in enumerate(inits):
            if j in used or len(init.dims) < 2:
                continue
            for _, want in wanted:
                if tuple(init.dims) == want.shape and np.array_equal(array(j), want):
                    return None
        return index

    def _sorted(self) -> bool:
        """Sort the maskable weights by magnitude once, for every ratio to come.

        A stable sort of ``|w|`` puts first exactly the entries that
        :func:`~skdlc._masking.compute_masks` zeroes: the k smallest, ties broken by
        position (per tensor for "layer"; over the concatenation, in parameter order,
        for "global"), so the first k of the order are its mask. One sort replaces a
        selection per ratio (tests check the masks are identical).
        """
        if self._order is not None:
            return True
        _, numpy_helper = _import_onnx()
        inits = self.base.graph.initializer
        weights = {n: numpy_helper.to_array(inits[k]).reshape(-1) for n, k in self.index.items()}
        total = sum(w.size for w in weights.values())
        if total > _SORT_MAX or any(w.dtype.kind != "f" or w.dtype.itemsize > 8 for w in weights.values()):
            return False  # huge models: per-ratio selection, as the torch path does
        idx = np.int32 if total < 2**31 else np.int64
        names = list(self.index)  # maskable parameter order
        if self.masking == "layer":
            order = {n: np.argsort(np.abs(weights[n]), kind="stable").astype(idx) for n in names}
        else:
            order = np.argsort(np.concatenate([np.abs(weights[n]) for n in names]), kind="stable").astype(idx)
        self._weights, self._order = weights, order
        return True

    def _masked_weights(self, ratio: float) -> dict[str, np.ndarray]:
        """Each maskable weight (flat) with the entries ``compute_masks`` removes zeroed."""
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"mask ratio must be in [0, 1), got {ratio!r}")
        out = {}
        if self.masking == "layer":
            for n, w in self._weights.items():
                k = int(round(w.size * ratio))
                out[n] = w.copy()
                out[n][self._order[n][:k]] = 0
            return out
        total = sum(w.size for w in self._weights.values())
        gone = np.zeros(total, dtype=bool)
        gone[self._order[: int(round(total * ratio))]] = True
        start = 0
        for n, w in self._weights.items():
            out[n] = np.where(gone[start : start + w.size], np.zeros((), w.dtype), w)
            start += w.size
        return out

    def variant(self, ratio: float) -> bytes:
        """Serialized ONNX model of the variant masked at ``ratio``."""
        if ratio == 0.0:
            return self.base.SerializeToString()
        module = self.module
        if self.index is None:  # fallback: export the masked module itself
            with masked(module, ratio, self.masking):
                param = next(iter(module.parameters()), None)
                example = self.example if param is None else self.example.to(param.device)
                return _export(module, example, self.name)
        onnx, numpy_helper = _import_onnx()
        if self._sorted():
            weights = self._masked_weights(ratio)
        else:
            named = maskable_parameters(module)
            masks = compute_masks([p for _, p in named], ratio, self.masking)
            weights = {}
            for (name, p), m in zip(named, masks):
                w = p.detach().cpu().numpy().reshape(-1).copy()  # C order = logical order
                w[m.cpu().numpy()] = 0
                weights[name] = w
        model = onnx.ModelProto()
        model.CopyFrom(self.base)
        for name, w in weights.items():
            init = model.graph.initializer[self.index[name]]
            init.CopyFrom(numpy_helper.from_array(w.reshape(tuple(init.dims)), init.name))
        return model.SerializeToString()


_SORT_MAX = 50_000_000  # maskable weights beyond which masks are selected per ratio

# Exports of recent backbones: fit then transform (or a second fit) export once.
_GRAPHS: "OrderedDict[tuple, _MaskedGraphs]" = OrderedDict()
_GRAPHS_MAX = 2


def _graphs_for(backbone: Backbone, masking: str, example: torch.Tensor) -> _MaskedGraphs:
    from ._cache import fingerprint_module

    module = backbone.module
    key = (id(module), fingerprint_module(module), tuple(example.shape[1:]), str(example.dtype), masking)
    g = _GRAPHS.get(key)
    if g is None or g._module() is not module:
        g = _MaskedGraphs(module, backbone.name, masking, example)
        _GRAPHS[key] = g
        weakref.finalize(module, _GRAPHS.pop, key, None)
        while len(_GRAPHS) > _GRAPHS_MAX:
            _GRAPHS.popitem(last=False)
    _GRAPHS.move_to_end(key)
    return g


# ----------------------------------------------------------------------------- engine
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


# ----------------------------------------------------------------------------- folder
def _example_input(backbone: Backbone, X: Any, n_features_in: int | None) -> torch.Tensor:
    """A 2-sample input to trace the graph with."""
    if X is not None:
        from ._data import n_samples

        k = min(2, n_samples(X))
        part = X[:k] if not isinstance(X, torch.utils.data.Dataset) else [X[i] for i in range(k)]
        x = make_batches(part, backbone, 2).make(0, k)
        if isinstance(x, dict):
            raise NotImplementedError("ONNX export of text backbones is not supported")
        return x
    pp = backbone.preprocessing
    if pp is not None:
        return torch.zeros((2, 3, *pp.input_size), dtype=torch.float32)
    if n_features_in is not None:
        return torch.zeros((2, int(n_features_in)), dtype=torch.float32)
    raise ValueError(
        f"backbone {backbone.name!r} has no image preprocessing, so its input shape is "
        "unknown: pass a few samples, export_onnx(path, X=X[:2])"
    )


def _json_value(v):
    return v.item() if isinstance(v, np.generic) else v


def export_scorer(scorer, path: str | os.PathLike, X: Any = None) -> Path:
    """Write a fitted :class:`~skdlc.DLCScorer`'s masked variants and manifest to ``path``.

    See :meth:`skdlc.DLCScorer.export_onnx`.
    """
    from . import __version__
    from ._cache import fingerprint_module

    onnx, _ = _import_onnx()
    bb: Backbone = scorer.backbone_
    if bb.collate is not None:
        raise NotImplementedError(
            f"ONNX export of text backbones ({bb.name!r}) is not supported"
        )
    example = _example_input(bb, X, getattr(scorer, "n_features_in_", None))
    param = next(iter(bb.module.parameters()), None)
    if param is not None:
        example = example.to(param.device)
    was_training = bb.module.training
    bb.module.eval()
    try:
        graphs = _graphs_for(bb, scorer.masking, example)
        ratios = [float(r) for r in scorer.mask_ratios_]
        run = list(ratios)
        if scorer.embedding and 0.0 not in run:
            run = [0.0] + run  # the embedding comes from the unmasked model
        out = Path(os.fspath(path))
        _check_target(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        try:
            variants = []
            for i, r in enumerate(run):
                fname = f"variant-{i:02d}-r{r:.4f}.onnx"
                (tmp / fname).write_bytes(graphs.variant(r))
                onnx.checker.check_model(os.fspath(tmp / fname))
                variants.append(
                    {"ratio": r, "file": fname, "on_path": r in ratios, "sha256": _sha256(tmp / fname)}
                )
            protos = np.asarray(scorer.prototypes_)
            np.save(tmp / PROTOTYPES, protos, allow_pickle=False)
            classes = np.asarray(scorer.classes_)
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "skdlc_version": __version__,
                "torch_version": torch.__version__,
                "onnx_opset": int(next((o.version for o in graphs.base.opset_import if o.domain in ("", "ai.onnx")), OPSET)),
                "backbone": {
                    "name": bb.name,
                    "fingerprint": fingerprint_module(bb.module),
                    "num_features": int(protos.shape[2]),
                },
                "masking": scorer.masking,
                "mask_ratios": ratios,
                "variants": variants,
                "input": {"name": INPUT_NAME, "shape": [None, *map(int, example.shape[1:])], "dtype": "float32"},
                "output": {"name": OUTPUT_NAME, "shape": [None, int(protos.shape[2])], "dtype": "float32"},
                "preprocessing": None if bb.preprocessing is None else bb.preprocessing.to_dict(),
                "prototypes": {
                    "file": PROTOTYPES,
                    "shape": list(protos.shape),
                    "dtype": protos.dtype.str,
                    "sha256": _sha256(tmp / PROTOTYPES),
                    "mode": scorer.prototypes,
                },
                "classes": [_json_value(c) for c in classes.tolist()],
                "classes_dtype": classes.dtype.str,
                "class_names": [str(c) for c in classes.tolist()],
                "logits": scorer.logits,
                "temperature": float(scorer.temperature),
                "embedding": bool(scorer.embedding),
            }
            with open(tmp / MANIFEST, "w", encoding="utf-8") as f:
                json.dump(manifest, f, indent=2)
                f.write("\n")
            _replace_dir(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        bb.module.train(was_training)
    return out


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise FileExistsError(
            f"{out} is a non-empty folder that is not an skdlc ONNX export; "
            "choose a new or empty folder (an earlier export is replaced)"
        )


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished export into place; an earlier export there is replaced whole."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class _ExportedInput:
    """What :func:`~skdlc._data.make_batches` needs of a backbone, from a manifest."""

    name: str
    preprocessing: Preprocessing | None
    collate: None = None


class OnnxDLCModel:
    """DLC scores from an ONNX export folder: ONNX Runtime only, no torch backbone.

    Reads what :meth:`skdlc.DLCScorer.export_onnx` (or ``skdlc export-onnx``) wrote:
    the masked variants, the class prototypes and the preprocessing, and computes the
    same ``transform`` / ``score_samples`` as the fitted scorer did.

    Parameters
    ----------
    folder : str or path
        The export folder (holds ``manifest.json``).
    device : str, default="auto"
        "cpu", "cuda[:i]", or "auto" (CUDA when ``onnxruntime-gpu`` offers it).
    batch_size : int, default=64
    num_workers : int or None, default=None
        Processes decoding images; None: up to 4 (files, image arrays to resize), none
        for arrays taken as they are.
    threads : int or None, default=None
        Intra-op threads per session; None: one per usable core.
    verify : bool, default=True
        Check every file against the manifest's SHA-256 before loading it.
    verbose : bool, default=True
        Progress bars (as :class:`~skdlc.DLCScorer`).

    Attributes
    ----------
    manifest_ : dict
    mask_ratios_ : tuple of float
    classes_ : ndarray of shape (n_classes,)
    prototypes_ : ndarray of shape (n_ratios, n_classes, n_features)
    preprocessing_ : Preprocessing or None
    logits, temperature, embedding : as in the scorer that was exported

    Examples
    --------
    >>> model = OnnxDLCModel.load("dlc_export")        # doctest: +SKIP
    >>> scores = model.score_samples(images, labels)   # doctest: +SKIP
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        device: str = "auto",
        batch_size: int = 64,
        num_workers: int | None = None,
        threads: int | None = None,
        verify: bool = True,
        verbose: bool = True,
    ):
        self.folder = Path(os.fspath(folder))
        self.device = device
        self.batch_size = int(batch_size)
        self.num_workers = num_workers
        self.threads = threads
        self.verbose = verbose
        m = _read_manifest(self.folder)
        if verify:
            _verify(self.folder, m)
        self.manifest_ = m
        self.mask_ratios_ = tuple(float(r) for r in m["mask_ratios"])
        self.classes_ = np.asarray(m["classes"], dtype=np.dtype(m["classes_dtype"]))
        self.prototypes_ = np.load(self.folder / m["prototypes"]["file"], allow_pickle=False)
        pp = m.get("preprocessing")
        self.preprocessing_ = None if pp is None else Preprocessing.from_dict(pp)
        self.logits = m["logits"]
        self.temperature = float(m["temperature"])
        self.embedding = bool(m["embedding"])
        if self.logits not in LOGITS:
            raise ValueError(f"{self.folder}: unknown logits {self.logits!r} in the manifest")
        self._input = _ExportedInput(m["backbone"]["name"], self.preprocessing_)
        self._variants = _FolderVariants(self.folder, m)
        _providers(device)  # fail now, not at the first transform, on a bad device

    @classmethod
    def load(cls, folder: str | os.PathLike, **kwargs) -> "OnnxDLCModel":
        """Open an export folder; keyword arguments as for the class."""
        return cls(folder, **kwargs)

    def _engine(self, decodes: bool) -> OnnxEngine:
        """The engine for input of this kind, built once: its sessions live between calls."""
        engines = self.__dict__.setdefault("_engines", {})
        if decodes not in engines:
            busy = decodes or self.preprocessing_ is not None  # resizing arrays is work too
            workers = default_num_workers(busy) if self.num_workers is None else self.num_workers
            engines[decodes] = OnnxEngine(self._variants, device=self.device, num_workers=workers,
                                          threads=self.threads, verbose=self.verbose, retain=True)
        return engines[decodes]

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_engines", None)  # ONNX Runtime sessions do not pickle; rebuilt on demand
        return state

    def transform(self, X) -> np.ndarray:
        """Per-class learning complexities, as :meth:`skdlc.DLCScorer.transform`."""
        from . import _driver

        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        plan = _driver.Plan(ratios=self.mask_ratios_, logits=self.logits, temperature=self.temperature,
                            embedding=self.embedding)
        losses, emb = _driver.transform_input(
            plan, self._engine(decodes_files(X)), X, input_spec=self._input, batch_size=self.batch_size,
            ratios=self.mask_ratios_, prototypes=self.prototypes_, desc="DLC transform (onnx)")
        if not self.embedding:
            return losses
        return np.hstack([emb.astype(np.float64), losses])

    def score_samples(self, X, y) -> np.ndarray:
        """DLC score of each labelled sample (higher = harder), as the scorer's."""
        y = np.asarray(y).ravel()
        classes = self.classes_
        idx = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
        unknown = classes[idx] != y
        if unknown.any():
            raise ValueError(
                f"y has labels unseen in fit: {np.unique(y[unknown])[:5].tolist()}; "
                f"known classes: {classes[:10].tolist()}"
            )
        scores = self.transform(X)[:, -len(classes):]
        if len(scores) != len(y):
            raise ValueError(f"X has {len(scores)} samples but y has {len(y)}")
        return scores[np.arange(len(y)), idx]

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        names = [f"dlc_{c}" for c in self.classes_]
        if self.embedding:
            names = [f"embedding{i}" for i in range(self.prototypes_.shape[2])] + names
        return np.asarray(names, dtype=object)

    def __repr__(self) -> str:
        return (f"OnnxDLCModel({os.fspath(self.folder)!r}, backbone={self._input.name!r}, "
                f"mask_ratios={self.mask_ratios_}, n_classes={len(self.classes_)})")


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not an skdlc ONNX export: no {MANIFEST}")
    with open(path, encoding="utf-8") as f:
        m = json.load(f)
    if m.get("format") != FORMAT:
        raise ValueError(f"{path} is not an skdlc ONNX export manifest")
    if int(m.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"{path} was written by a newer skdlc (format {m['format_version']}); "
            f"this one reads format {FORMAT_VERSION}: upgrade skdlc"
        )
    return m


def _verify(folder: Path, m: dict) -> None:
    items = [(v["file"], v["sha256"]) for v in m["variants"]]
    items.append((m["prototypes"]["file"], m["prototypes"]["sha256"]))
    for fname, digest in items:
        p = folder / fname
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing from the export")
        if _sha256(p) != digest:
            raise ValueError(f"{p} does not match the manifest's checksum (modified or corrupt)")
