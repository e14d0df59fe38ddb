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
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

__all__ = [
    "MASKING_MODES",
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


def _smallest_k(absval: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of exactly ``k`` smallest entries of a flat tensor (ties by index)."""
    n = absval.numel()
    mask = torch.zeros(n, dtype=torch.bool, device=absval.device)
    if k <= 0:
        return mask
    if k >= n:
        mask.fill_(True)
        return mask
    tau = torch.kthvalue(absval.float().cpu(), k).values.to(absval.device, absval.dtype)
    mask = absval < tau
    need = k - int(mask.sum())
    if need > 0:
        ties = torch.nonzero(absval == tau).flatten()[:need]
        mask[ties] = True
    return mask


def _global_masks(tensors: Sequence[torch.Tensor], ratio: float) -> list[torch.Tensor]:
    sizes = [t.numel() for t in tensors]
    total = sum(sizes)
    k = int(round(total * ratio))
    if k <= 0:
        return [torch.zeros(s, dtype=torch.bool, device=t.device) for s, t in zip(sizes, tensors)]
    # One threshold over every tensor; kthvalue on the concatenation is exact and
    # costs one float32 copy of the maskable weights, freed right after.
    flat = torch.cat([t.detach().abs().flatten().float().cpu() for t in tensors])
    tau = torch.kthvalue(flat, min(k, total)).values
    del flat
    masks, need = [], k
    less = [t.detach().abs().float() < tau.to(t.device) for t in tensors]
    need -= sum(int(m.sum()) for m in less)
    for t, m in zip(tensors, less):
        m = m.flatten()
        if need > 0:
            ties = torch.nonzero(t.detach().abs().float().flatten() == tau.to(t.device)).flatten()[:need]
            m[ties] = True
            need -= len(ties)
        masks.append(m)
    return masks


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
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio!r}")
    if masking == "layer":
        return [
            _smallest_k(t.detach().abs().flatten(), int(round(t.numel() * ratio)))
            for t in tensors
        ]
    if masking == "global":
        return _global_masks(tensors, ratio)
    raise ValueError(f"masking must be one of {MASKING_MODES}, got {masking!r}")


@dataclass
class _Removed:
    param: torch.Tensor
    mask: torch.Tensor  # bool, shaped like param: the zeroed entries
    values: torch.Tensor  # their original values, kept on the host


@contextlib.contextmanager
def masked(module: nn.Module, ratio: float, masking: str = "layer") -> Iterator[nn.Module]:
    """Mask ``module``'s weights in place for the duration of the ``with`` block.

    The original values are restored bit for bit on exit, also after an exception.
    Ratio 0 is a no-op (the unmasked model).
    """
    if ratio == 0.0:
        yield module
        return
    params = [p for _, p in maskable_parameters(module)]
    removed: list[_Removed] = []
    try:
        with torch.no_grad():
            # Boolean indexing works in logical order, so this is right for any memory
            # format (channels_last weights are not viewable as a flat vector).
            for p, m in zip(params, compute_masks(params, ratio, masking)):
                m = m.view(p.shape)
                removed.append(_Removed(p, m, p.data[m].to("cpu", copy=True)))
                p.data.masked_fill_(m, 0)
        yield module
    finally:
        with torch.no_grad():
            for r in removed:
                r.param.data[r.mask] = r.values.to(r.param.device)


def masked_state(
    module: nn.Module, ratio: float, masking: str = "layer"
) -> dict[str, torch.Tensor]:
    """Masked copies of the maskable weights, by parameter name.

    For ``torch.func.functional_call``: used when the model is small enough to keep
    every variant's weights and run each decoded batch through all variants.
    """
    named = maskable_parameters(module)
    if ratio == 0.0:
        return {}
    masks = compute_masks([p for _, p in named], ratio, masking)
    out = {}
    with torch.no_grad():
        for (name, p), m in zip(named, masks):
            out[name] = p.detach().masked_fill(m.view_as(p), 0)
    return out
