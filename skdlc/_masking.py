"""Magnitude masking of pre-trained weights (Appendix B of the DLC paper).

Every weight tensor with ``ndim >= 2`` (conv, linear, embedding) is masked by magnitude,
smallest ``|w|`` first; biases and normalisation parameters are untouched.

- ``"layer"``: each tensor loses its own ``round(numel * ratio)`` smallest entries.
- ``"global"``: one threshold over all those tensors together, so the
  ``round(total * ratio)`` smallest entries of the whole model go.

Exactly ``k`` entries are zeroed, ties at the threshold broken by position, so a
ratio always means what it says. (Masking by ``|w| < tau`` alone can zero far fewer
entries than asked when many weights share a value, as in quantized checkpoints, and
re-pruning already-pruned weights re-selects the same zeros: the official code's path
collapsed that way.)

Masks are applied in place and undone exactly: only the removed values are kept (on
the host), never a second copy of the model.

A learning path masks the same weights at several ratios. :class:`MaskPlan` reads the
weights once: one multi-``kth`` partition of ``|w|`` per tensor (or of the whole model,
for ``"global"``) gives the threshold of every ratio and how many entries at the
threshold each ratio takes, so a ratio costs one comparison pass, not a selection.
:func:`compute_masks`, :func:`masked` and :func:`masked_state` are single-ratio plans.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence, Union

import numpy as np
import torch
from torch import nn

__all__ = [
    "MASKING_MODES",
    "MaskPlan",
    "maskable_parameters",
    "compute_masks",
    "masked",
    "masked_state",
]

MASKING_MODES = ("layer", "global")


def maskable_parameters(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The weight tensors DLC masks: every parameter with ``ndim >= 2``.

    Shared (tied) parameters are listed once.
    """
    seen: set[int] = set()
    out = []
    for name, p in module.named_parameters():
        if p.ndim >= 2 and id(p) not in seen:
            seen.add(id(p))
            out.append((name, p))
    return out


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch's element-wise passes on one thread.

    They are memory-bound, and with two or more intra-op threads on a busy machine a
    pass waits for the slowest thread at every barrier: measured on the shared 2-core
    machine, masking Lite0 at 4 ratios took 8.2 CPU-s with 2 threads, 0.5 with one.
    """
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _version(t: torch.Tensor) -> int:
    try:
        return t._version
    except RuntimeError:  # inference tensors keep no version counter (and cannot change)
        return -1


def _host_abs(t: torch.Tensor) -> np.ndarray:
    """``|t|`` flattened, as a host array whose order matches ``t``'s exactly.

    Half-precision types become float32 (exact); float64 stays float64.
    """
    a = t.detach().abs().flatten()  # a new tensor: the weights are never touched
    if a.dtype != torch.float64:
        a = a.float()
    return a.cpu().numpy()


@dataclass(frozen=True)
class _Cut:
    """Where one tensor is cut at one ratio.

    The entries below ``tau`` are zeroed, and the first ``ties`` entries equal to it
    (by position); ``all_ties`` when those are all the entries equal to it (the usual
    case with continuous weights: then ``|w| <= tau`` is the mask, one pass). ``tau``
    is None when nothing or everything goes (``ties`` = 0 / -1).
    """

    tau: float | None
    ties: int
    all_ties: bool = False


_NOTHING, _EVERYTHING = _Cut(None, 0), _Cut(None, -1)

ParamsLike = Union[nn.Module, Sequence[torch.Tensor], Sequence["tuple[str, torch.Tensor]"]]


class MaskPlan:
    """Magnitude masks of a fixed set of weights at any number of ratios.

    The order statistics every ratio needs are computed together, in one pass over the
    weights per batch of ratios (:meth:`prepare`); a ratio then costs one comparison
    pass per tensor. The masks are exactly those of the exact-``k`` rule: the ``k``
    smallest ``|w|``, ties at the threshold broken by position (per tensor for
    ``"layer"``; over the tensors in order for ``"global"``).

    Parameters
    ----------
    params : nn.Module, sequence of tensors, or sequence of (name, tensor)
        A module means its :func:`maskable_parameters`.
    masking : {"layer", "global"}, default="layer"
    ratios : iterable of float, default=()
        Ratios to prepare now (others are prepared on first use).

    Notes
    -----
    The plan holds the tensors, not copies. If a tensor is changed in place (its
    version counter moves, e.g. by an optimizer step), the plan's statistics are
    recomputed before the next use; writes through ``.data`` bypass that check.

    Examples
    --------
    >>> import torch
    >>> from skdlc._masking import MaskPlan
    >>> lin = torch.nn.Linear(4, 3)
    >>> plan = MaskPlan(lin, "layer", ratios=[0.25, 0.5])
    >>> with plan.applied(0.5):
    ...     int((lin.weight == 0).sum())
    6
    >>> [int(m.sum()) for m in plan.masks(0.25)]
    [3]
    """

    def __init__(self, params: ParamsLike, masking: str = "layer", ratios: Iterable[float] = ()):
        if masking not in MASKING_MODES:
            raise ValueError(f"masking must be one of {MASKING_MODES}, got {masking!r}")
        if isinstance(params, nn.Module):
            named = maskable_parameters(params)
        else:
            items = list(params)
            named = [it if isinstance(it, tuple) else (str(i), it) for i, it in enumerate(items)]
        self.names = [n for n, _ in named]
        self.tensors = [t for _, t in named]
        self.masking = masking
        self._cuts: dict[float, list[_Cut]] = {}
        self._active = False  # the weights are masked in place right now
        self._buffers: dict[tuple, torch.Tensor] = {}
        self._versions = self._current_versions()
        self.prepare(ratios)

    # ------------------------------------------------------------ statistics
    def _current_versions(self) -> list[int]:
        return [_version(t) for t in self.tensors]

    def _check_fresh(self) -> None:
        if self._current_versions() != self._versions:  # weights changed since: start over
            ratios = list(self._cuts)
            self._cuts = {}
            self._versions = self._current_versions()
            self.prepare(ratios)

    def prepare(self, ratios: Iterable[float]) -> "MaskPlan":
        """Compute the cuts of ``ratios`` (those not known yet) in one pass."""
        new = []
        for r in ratios:
            r = float(r)
            if not 0.0 <= r < 1.0:
                raise ValueError(f"mask ratio must be in [0, 1), got {r!r}")
            if r not in self._cuts and r not in new:
                new.append(r)
        if not new:
            return self
        if self.masking == "layer":
            per_tensor = [self._layer_cuts(t, new) for t in self.tensors]
            for i, r in enumerate(new):
                self._cuts[r] = [cuts[i] for cuts in per_tensor]
        else:
            for r, cuts in zip(new, self._global_cuts(new)):
                self._cuts[r] = cuts
        return self

    @staticmethod
    def _kth_smallest(a: np.ndarray, ks: list[int]) -> tuple[np.ndarray, list[float], list[int]]:
        """Partition ``a`` in place (a scratch array) at every k-th smallest (1-based
        ``ks``, each in [1, a.size]); return it, the values, and how many entries lie
        strictly below each."""
        part = a
        part.partition(sorted({k - 1 for k in ks}))
        taus = [part[k - 1] for k in ks]
        # Everything strictly below the k-th smallest sits left of position k - 1.
        below = [int(np.count_nonzero(part[: k - 1] < tau)) for k, tau in zip(ks, taus)]
        return part, [float(t) for t in taus], below

    @classmethod
    def _layer_cuts(cls, t: torch.Tensor, ratios: list[float]) -> list[_Cut]:
        n = t.numel()
        ks = [int(round(n * r)) for r in ratios]
        inner = [k for k in ks if 0 < k < n]
        found = {}
        if inner:
            part, taus, below = cls._kth_smallest(_host_abs(t), inner)
            # entries equal to tau: between ``below`` and k - 1 on the left, any on the right
            found = {k: _Cut(tau, k - b, k - b == int(np.count_nonzero(part == tau)))
                     for k, tau, b in zip(inner, taus, below)}
        return [_NOTHING if k <= 0 else _EVERYTHING if k >= n else found[k] for k in ks]

    def _global_cuts(self, ratios: list[float]) -> list[list[_Cut]]:
        sizes = [t.numel() for t in self.tensors]
        total = sum(sizes)
        ks = [int(round(total * r)) for r in ratios]
        inner = sorted({k for k in ks if 0 < k})
        out = []
        if inner:
            # A float copy of all maskable weights (the per-ratio selection made one
            # per ratio), freed when the cuts are known.
            flat = np.concatenate([_host_abs(t).astype(np.float32, copy=False) for t in self.tensors])
            # (partitioned on a copy: the ties are counted below in parameter order)
            _, taus, below = self._kth_smallest(flat.copy(), [min(k, total) for k in inner])
            stats = {k: (tau, b) for k, tau, b in zip(inner, taus, below)}
            bounds = np.cumsum([0] + sizes)
        for k in ks:
            if k <= 0:
                out.append([_NOTHING] * len(sizes))
                continue
            tau, b = stats[k]
            need = min(k, total) - b
            cuts = []
            for j in range(len(sizes)):
                seg = flat[bounds[j] : bounds[j + 1]]
                eq = int(np.count_nonzero(seg == tau))
                take = min(need, eq)
                need -= take
                cuts.append(_Cut(tau, take, take == eq))
            out.append(cuts)
        return out

    # ------------------------------------------------------------------ masks
    def _scratch(self, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        buf = self._buffers.get((dtype, device))
        if buf is None or buf.numel() < n:
            size = max([n] + [t.numel() for t in self.tensors])
            buf = self._buffers[(dtype, device)] = torch.empty(size, dtype=dtype, device=device)
        return buf[:n]

    def _mask(self, t: torch.Tensor, cut: _Cut) -> torch.Tensor:
        """Flat boolean mask of ``t`` (logical order) at one cut."""
        n = t.numel()
        if cut.tau is None:
            return torch.full((n,), cut.ties == -1, dtype=torch.bool, device=t.device)
        a = t.detach().reshape(-1)  # logical order, whatever the memory format
        if self.masking == "global":
            a = a.float()  # one threshold for tensors of every dtype: compare in float32
        # |w| into a reused buffer: a fresh large allocation per tensor and ratio costs
        # page faults (about a third of the masking time of a 135M-weight LLM).
        a = torch.abs(a, out=self._scratch(n, a.dtype, a.device))
        tau = torch.tensor(cut.tau, dtype=a.dtype, device=a.device)
        if cut.all_ties:
            return a <= tau
        mask = a < tau
        if cut.ties > 0:
            mask[torch.nonzero(a == tau).flatten()[: cut.ties]] = True
        return mask

    def _check_unmasked(self) -> None:
        if self._active:  # the weights hold zeros now: masks would be computed from them
            raise RuntimeError("this MaskPlan's weights are masked in place (inside applied()); "
                               "leave that block first")

    def masks(self, ratio: float) -> list[torch.Tensor]:
        """Flat boolean masks (True = zero this entry), one per tensor, at ``ratio``."""
        self._check_unmasked()
        self._check_fresh()
        cuts = self.prepare([ratio])._cuts[float(ratio)]
        with _one_thread(), torch.no_grad():
            return [self._mask(t, c) for t, c in zip(self.tensors, cuts)]

    @contextlib.contextmanager
    def applied(self, ratio: float) -> Iterator[None]:
        """Zero the masked entries in place for the ``with`` block, then restore them.

        Restoration is bit-exact and also happens after an exception. Ratio 0 is a
        no-op.
        """
        if float(ratio) == 0.0:
            yield
            return
        self._check_unmasked()
        self._check_fresh()
        cuts = self.prepare([ratio])._cuts[float(ratio)]
        removed: list[_Removed] = []
        self._active = True
        try:
            with _one_thread(), torch.no_grad():
                # Boolean indexing works in logical order, so this is right for any memory
                # format (channels_last weights are not viewable as a flat vector).
                for p, c in zip(self.tensors, cuts):
                    m = self._mask(p, c)
                    if p.is_contiguous():  # by position: one nonzero, then k-sized passes
                        target, where = p.data.view(-1), m.nonzero().squeeze(1)
                    else:
                        target, where = p.data, m.view(p.shape)
                    values = target[where]  # a new tensor already: copy only off the host
                    removed.append(_Removed(target, where, values if values.device.type == "cpu" else values.cpu()))
                    target[where] = 0
            yield
        finally:
            with _one_thread(), torch.no_grad():
                for r in removed:
                    r.param[r.mask] = r.values.to(r.param.device)
            self._active = False

    def state(self, ratio: float) -> dict[str, torch.Tensor]:
        """Masked copies of the tensors by name (``{}`` at ratio 0), for
        ``torch.func.functional_call``."""
        if float(ratio) == 0.0:
            return {}
        masks = self.masks(ratio)
        with _one_thread(), torch.no_grad():
            return {n: t.detach().masked_fill(m.view_as(t), 0)
                    for n, t, m in zip(self.names, self.tensors, masks)}


def compute_masks(
    tensors: Sequence[torch.Tensor], ratio: float, masking: str = "layer"
) -> list[torch.Tensor]:
    """Flat boolean masks (True = zero this entry) for ``tensors`` at ``ratio``.

    Parameters
    ----------
    tensors : sequence of torch.Tensor
        The weights to mask, e.g. ``[p for _, p in maskable_parameters(model)]``.
    ratio : float
        Fraction of entries to remove, in [0, 1).
    masking : {"layer", "global"}
        One threshold per tensor, or one over all tensors together.

    For several ratios of the same weights, one :class:`MaskPlan` is cheaper.
    """
    if masking not in MASKING_MODES:
        raise ValueError(f"masking must be one of {MASKING_MODES}, got {masking!r}")
    return MaskPlan(list(tensors), masking, [ratio]).masks(ratio)


@dataclass
class _Removed:
    param: torch.Tensor  # the weights' data (flat view when contiguous), not autograd-tracked
    mask: torch.Tensor  # the zeroed entries: flat positions, or a bool mask shaped like param
    values: torch.Tensor  # their original values, kept on the host


@contextlib.contextmanager
def masked(module: nn.Module, ratio: float, masking: str = "layer") -> Iterator[nn.Module]:
    """Mask ``module``'s weights in place for the duration of the ``with`` block.

    The original values are restored bit for bit on exit, also after an exception.
    Ratio 0 is a no-op (the unmasked model). For several ratios, hold one
    :class:`MaskPlan` and use its :meth:`~MaskPlan.applied`.
    """
    if ratio == 0.0:
        yield module
        return
    with MaskPlan(module, masking, [ratio]).applied(ratio):
        yield module


def masked_state(
    module: nn.Module, ratio: float, masking: str = "layer"
) -> dict[str, torch.Tensor]:
    """Masked copies of the maskable weights, by parameter name.

    For ``torch.func.functional_call``: used when the model is small enough to keep
    every variant's weights and run each decoded batch through all variants.
    """
    if ratio == 0.0:
        return {}
    return MaskPlan(module, masking, [ratio]).state(ratio)
