"""Feature engines: run batches through masked variants of a backbone.

This is the one place that knows about torch devices, masking and batching. The scorer
asks an engine for the features of every sample under a list of mask ratios and gets
them back one variant at a time; the ONNX Runtime and distributed paths implement the
same :class:`FeatureEngine` interface beside the torch one.

Two loop orders, same results:

- variant-major: mask the one model in place, run every batch, restore; the data are
  read T times, the memory is one model + one batch.
- batch-major: keep every variant's masked weights and run each decoded batch through
  all of them (``torch.func.functional_call``); the data are read once. Chosen
  automatically when the variants' weights and features fit a small memory budget and
  reading the data costs work (decoding files, resizing and normalising images).
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Protocol, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ._backbones._base import Backbone
from ._data import Batches
from ._masking import MaskPlan, maskable_parameters

__all__ = ["FeatureEngine", "LoopEngine", "TorchEngine", "resolve_device"]

_MEMORY_BUDGET = 2 * 1024**3  # bytes allowed for kept variants + their features
_AUTOCAST = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


class FeatureEngine(Protocol):
    """What the scorer needs from an engine."""

    def features(
        self, batches: Batches, ratios: Sequence[float], *, desc: str = ""
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(i, F_i)`` for each ratio ``ratios[i]``: the (N, D) float32 features."""
        ...


def resolve_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"device={device!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available; use 'cpu' or 'auto'")
    return dev


def _to_device(batch, device: torch.device):
    if isinstance(batch, dict):
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    return batch.to(device, non_blocking=True)


def _flatten(out, name: str) -> torch.Tensor:
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"backbone {name!r} must return a tensor of features, got {type(out).__name__}"
        )
    if out.ndim == 0 or out.numel() == 0:
        raise ValueError(f"backbone {name!r} returned no features (output shape {tuple(out.shape)})")
    return out.reshape(out.shape[0], -1)


class LoopEngine:
    """The loops every engine shares: variant-major / batch-major, loader, budget, progress.

    An engine implements only what is its own: prepare a variant (:meth:`_prepare`),
    run a batch through a prepared variant (:meth:`_run`), move a batch where the
    variants run (:meth:`_input`), and the bytes a prepared variant needs
    (:meth:`_variant_bytes`). Optional hooks: :meth:`_running` (a context around a
    whole call: eval mode, gradients off), :meth:`_one_variant` (variant-major's way
    to hold one variant, e.g. masking in place), :meth:`_reading_costs`.

    ``retain=True`` keeps every prepared variant between calls (a server's prepared
    variants) and always runs batch-major.
    """

    default_desc = "DLC"
    pin_memory = False

    def __init__(self, *, keep_variants: bool | str = "auto", num_workers: int = 0,
                 verbose: bool = False, retain: bool = False):
        self.keep_variants = keep_variants
        self.num_workers = num_workers
        self.verbose = verbose
        self.retain = retain
        self._kept: dict[float, object] = {}
        self.n_forward_batches = 0  # forward passes run, for tests and benchmarks
        # Batches made with on_error="skip" hold an all-NaN row for an image that did not
        # decode: run a blank instead, and mark that row's features unreadable (all +inf).
        self.mark_unreadable = False

    # ------------------------------------------------------------------ what an engine implements
    def _prepare(self, ratio: float):
        raise NotImplementedError

    def _run(self, prepared, x) -> np.ndarray:
        raise NotImplementedError

    def _input(self, x):
        return x

    def _variant_bytes(self) -> int:
        raise NotImplementedError

    def _kept_bytes(self, n_variants: int) -> int:
        return n_variants * self._variant_bytes()

    def _reading_costs(self, decodes: bool) -> bool:
        return True

    def _feature_dim(self) -> int:
        return 2048

    @contextlib.contextmanager
    def _running(self, batches: Batches):
        yield

    @contextlib.contextmanager
    def _one_variant(self, ratio: float):
        yield self._prepared(ratio)

    # ------------------------------------------------------------------ shared
    def _prepared(self, ratio: float):
        prepared = self._kept.get(ratio)
        if prepared is None:
            prepared = self._prepare(ratio)
            if self.retain:
                self._kept[ratio] = prepared
        return prepared

    def _forward(self, prepared, x) -> np.ndarray:
        self.n_forward_batches += 1
        return self._run(prepared, x)

    def _unmarked(self, x):
        """(batch to run, rows to mark unreadable or None): see ``mark_unreadable``."""
        if not (self.mark_unreadable and isinstance(x, torch.Tensor) and x.is_floating_point() and x.ndim > 1):
            return x, None
        flat = x.reshape(len(x), -1)
        bad = torch.isnan(flat[:, 0])  # a placeholder is NaN everywhere: one pixel tells
        if bad.any():
            bad &= torch.isnan(flat).all(1)
        if not bad.any():
            return x, None
        x = x.clone()
        x[bad] = 0.0
        return x, bad.numpy()

    @staticmethod
    def _marked(f: np.ndarray, bad) -> np.ndarray:
        if bad is not None:
            f = np.array(f, dtype=np.float32, copy=True)
            f[bad] = np.inf
        return f

    def _loader(self, batches: Batches):
        workers = self.num_workers if len(batches) > 1 else 0
        return torch.utils.data.DataLoader(
            batches,
            batch_size=None,
            shuffle=False,
            num_workers=workers,
            pin_memory=self.pin_memory,
            persistent_workers=False,
            prefetch_factor=2 if workers else None,
        )

    def _use_batch_major(self, batches: Batches, ratios: Sequence[float], decodes: bool) -> bool:
        if self.retain:
            return True
        if self.keep_variants != "auto":
            return bool(self.keep_variants)
        if len(ratios) < 2 or not self._reading_costs(decodes):
            return False
        feat_bytes = len(ratios) * batches.n * self._feature_dim() * 4
        return self._kept_bytes(len(ratios)) + feat_bytes <= _MEMORY_BUDGET

    def _bar(self, total: int, desc: str):
        return tqdm(total=total, desc=desc or self.default_desc, unit="batch", disable=not self.verbose,
                    leave=False)

    def features(
        self,
        batches: Batches,
        ratios: Sequence[float],
        *,
        desc: str = "",
        decodes: bool = True,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(i, F_i)`` for each ratio ``ratios[i]``: the (N, D) float32 features."""
        ratios = [float(r) for r in ratios]
        with self._running(batches):
            if self._use_batch_major(batches, ratios, decodes):
                yield from self._batch_major(batches, ratios, desc)
            else:
                yield from self._variant_major(batches, ratios, desc)

    def batch_features(self, x, ratios: Sequence[float]) -> list[np.ndarray]:
        """One ready batch through the variant of every ratio (prepared once when ``retain``)."""
        with self._running(None):
            x, bad = self._unmarked(x)
            x = self._input(x)
            return [self._marked(self._forward(self._prepared(float(r)), x), bad) for r in ratios]

    def _variant_major(self, batches, ratios, desc):
        with self._bar(len(batches) * len(ratios), desc) as bar:
            for i, r in enumerate(ratios):
                bar.set_postfix_str(f"ratio {r:.2f}")
                feats = None
                with self._one_variant(r) as prepared:
                    for j, x in enumerate(self._loader(batches)):
                        x, bad = self._unmarked(x)
                        f = self._marked(self._forward(prepared, self._input(x)), bad)
                        if feats is None:
                            feats = np.empty((batches.n, f.shape[1]), dtype=np.float32)
                        start = j * batches.batch_size
                        feats[start : start + len(f)] = f
                        bar.update()
                yield i, feats

    def _batch_major(self, batches, ratios, desc):
        with self._bar(len(batches) * len(ratios), desc) as bar:
            prepared = [self._prepared(r) for r in ratios]
            feats: list[np.ndarray | None] = [None] * len(ratios)
            for j, x in enumerate(self._loader(batches)):
                x, bad = self._unmarked(x)
                x = self._input(x)
                start = j * batches.batch_size
                for i, p in enumerate(prepared):
                    f = self._marked(self._forward(p, x), bad)
                    if feats[i] is None:
                        feats[i] = np.empty((batches.n, f.shape[1]), dtype=np.float32)
                    feats[i][start : start + len(f)] = f
                    bar.update()
            del prepared
        for i in range(len(feats)):  # hand each over and let it go
            f, feats[i] = feats[i], None
            yield i, f


class TorchEngine(LoopEngine):
    """Run a backbone's masked variants with PyTorch.

    Parameters
    ----------
    backbone : Backbone
    masking : {"layer", "global"}
    device : torch.device
    keep_variants : bool or "auto"
        Batch-major order (see module docstring); "auto" decides from the model size.
    num_workers : int
        DataLoader workers that decode batches while the model runs.
    verbose : bool
        tqdm progress bar over variants x batches.
    precision : {"float32", "bfloat16", "float16"}
        Autocast dtype on CUDA (features are returned as float32); the CPU always
        computes in float32.
    channels_last : bool or "auto"
        Feed 4-d batches in channels-last memory format, the fast path of the conv
        kernels (oneDNN, cuDNN); "auto": when the module has 2-d convolutions. The
        input's format is what matters (measured on a 2-core CPU, EfficientNet-Lite0:
        1.6x faster from NCHW batches, e.g. float arrays or datasets of CHW tensors;
        converting the weights too gains nothing). Batches made from image arrays and
        files already arrive channels-last. Weights are left as they are.
    retain : bool
        Keep every masked variant's weights between calls (batch-major always): a
        server masks once, then each request costs only its forward passes.

    Gradients are off (``torch.inference_mode`` for image backbones; ``no_grad`` for
    text backbones, whose modules may build caches that must stay usable for training).
    """

    def __init__(
        self,
        backbone: Backbone,
        *,
        masking: str = "layer",
        device: torch.device = torch.device("cpu"),
        keep_variants: bool | str = "auto",
        num_workers: int = 0,
        verbose: bool = False,
        precision: str = "float32",
        channels_last: bool | str = "auto",
        retain: bool = False,
    ):
        if precision not in _AUTOCAST:
            raise ValueError(f"precision must be one of {tuple(_AUTOCAST)}, got {precision!r}")
        super().__init__(keep_variants=keep_variants, num_workers=num_workers, verbose=verbose,
                         retain=retain)
        self.precision = precision
        self.channels_last = channels_last
        self.backbone = backbone
        self.masking = masking
        self.device = device
        self.module = backbone.module
        self.pin_memory = device.type == "cuda"
        self._cl = self._use_channels_last()
        self._plan: MaskPlan | None = None

    # ------------------------------------------------------------------ the engine's own
    def _use_channels_last(self) -> bool:
        if self.channels_last != "auto":
            return bool(self.channels_last)
        return self.backbone.collate is None and any(isinstance(m, nn.Conv2d) for m in self.module.modules())

    @contextlib.contextmanager
    def _running(self, batches=None):
        """Module on the device, in eval mode, gradients off; mode restored after."""
        was_training = self.module.training
        self.module.to(self.device).eval()
        grad_off = torch.no_grad() if self.backbone.collate is not None else torch.inference_mode()
        try:
            with grad_off:
                yield
        finally:
            self.module.train(was_training)

    def _mask_plan(self, ratios: Sequence[float] = ()) -> MaskPlan:
        """The engine's masks: every ratio's threshold from one pass over the weights."""
        if self._plan is None:
            self._plan = MaskPlan(self.module, self.masking)
        return self._plan.prepare(r for r in ratios if r > 0.0)

    def features(self, batches: Batches, ratios: Sequence[float], **kwargs) -> Iterator[tuple[int, np.ndarray]]:
        self._mask_plan([float(r) for r in ratios])  # the whole path's statistics at once
        return super().features(batches, ratios, **kwargs)

    @contextlib.contextmanager
    def _one_variant(self, ratio: float):
        if ratio in self._kept:
            yield self._kept[ratio]
            return
        with self._mask_plan().applied(ratio):  # in place: one model in memory
            yield None

    def _prepare(self, ratio: float) -> dict:
        return self._mask_plan().state(ratio)

    def _input(self, x):
        return _to_device(x, self.device)

    def _run(self, params: dict | None, x) -> np.ndarray:
        if params:
            call = lambda *a, **k: torch.func.functional_call(self.module, params, a, k, strict=False)
        else:
            call = self.module
        if self._cl and isinstance(x, torch.Tensor) and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = _AUTOCAST[self.precision]
        amp = (
            torch.autocast(self.device.type, dtype=dtype)
            if dtype is not None and self.device.type == "cuda"
            else contextlib.nullcontext()
        )
        with amp:
            out = call(**x) if isinstance(x, dict) else call(x)
        return _flatten(out, self.backbone.name).float().cpu().numpy()

    def _variant_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for _, p in maskable_parameters(self.module))

    def _kept_bytes(self, n_variants: int) -> int:
        return (n_variants - 1) * self._variant_bytes()  # one of them is the module itself

    def _reading_costs(self, decodes: bool) -> bool:
        # Worth keeping variants when reading a batch costs work: decoding files, or
        # resizing and normalising images (in-memory image arrays too), done once then.
        return decodes or self.backbone.preprocessing is not None

    def _feature_dim(self) -> int:
        return self.backbone.num_features or 2048


def default_num_workers(decodes: bool) -> int:
    """Decoding workers: none when batches are plain slices, up to 4 when making them is work."""
    if not decodes:
        return 0
    return max(0, min(4, (os.cpu_count() or 1) - 1))
