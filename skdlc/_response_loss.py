"""Response losses of encoded examples under masked versions of a causal LM.

Batches are built from length-sorted examples, left-padded, with explicit position ids
(so padding changes nothing), and only the logits of response positions are computed
(``logits_to_keep``): the vocabulary projection is the largest single matrix product of
a small LLM.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ._encoding import Encoded, _batches
from ._llm import forward_accepts
from ._masking import MaskPlan

__all__ = ["response_losses"]


def _batch_response_losses(
    model: nn.Module,
    seqs: Sequence[Sequence[int]],
    n_response: Sequence[int],
    *,
    pad_id: int,
    device: torch.device,
    keep_kw: str | None,
) -> torch.Tensor:
    """Mean response cross-entropy of each sequence in one batch (teacher forcing).

    Left padding with position ids counted from each sequence's first real token: a
    causal model then sees exactly the tokens it would see unpadded, and every
    response sits at the end of its row, so only the last ``max(C) + 1`` positions
    need logits.
    """
    b = len(seqs)
    length = max(len(s) for s in seqs)
    ids = torch.full((b, length), pad_id, dtype=torch.long)
    att = torch.zeros((b, length), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, length - len(s):] = torch.as_tensor(s, dtype=torch.long)
        att[i, length - len(s):] = 1
    pos = (att.cumsum(1) - 1).clamp_(min=0)
    resp = torch.as_tensor(list(n_response), dtype=torch.long)
    k = int(resp.max()) + 1  # logits at the last k positions predict the last k-1 tokens
    kw = {"input_ids": ids.to(device), "attention_mask": att.to(device),
          "position_ids": pos.to(device), "use_cache": False}
    if keep_kw is not None:
        kw[keep_kw] = k
    logits = model(**kw).logits[:, -k:]
    pred = logits[:, :-1].float()
    target = ids[:, length - k + 1:].to(device)
    ce = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), reduction="none")
    ce = ce.view(b, k - 1)
    # column j predicts absolute position length-k+1+j; response of row i = last C_i
    cols = torch.arange(k - 1, device=device)
    valid = cols[None, :] >= (k - 1 - resp.to(device))[:, None]
    return (ce * valid).sum(1) / resp.to(device).to(ce.dtype)


def _logits_keep_kwarg(model: nn.Module) -> str | None:
    for name in ("logits_to_keep", "num_logits_to_keep"):
        if forward_accepts(model, name):
            return name
    return None


def response_losses(
    model: nn.Module,
    encoded: Encoded,
    ratios: Sequence[float] = (0.0,),
    *,
    targets: nn.Module | None = None,
    masking: str = "layer",
    batch_size: int = 8,
    pad_id: int = 0,
    device: torch.device | str | None = None,
    progress: bool = False,
    plan: MaskPlan | None = None,
) -> np.ndarray:
    """Per-ratio mean response cross-entropy, shape ``(n_examples, len(ratios))``.

    For each ratio the weights in ``targets`` (default: every ``ndim >= 2`` weight of
    ``model``) are masked in place, smallest ``|w|`` first, every batch is run, and the
    weights are restored bit for bit before the next ratio. The thresholds of all
    ratios come from one pass over the weights (a :class:`~skdlc._masking.MaskPlan`;
    pass ``plan`` to reuse one across calls, it then replaces ``targets``/``masking``).
    """
    n = len(encoded.ids)
    out = np.zeros((n, len(ratios)), dtype=np.float64)
    if n == 0:
        return out
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    if plan is None:
        plan = MaskPlan(model if targets is None else targets, masking)
    plan.prepare(ratios)  # every ratio's thresholds in one pass over the weights
    keep_kw = _logits_keep_kwarg(model)
    batches = _batches(encoded.lengths, batch_size)
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(ratios) * len(batches), disable=not progress,
               desc="DLC instructions", unit="batch")
    try:
        with torch.inference_mode():
            for t, ratio in enumerate(ratios):
                bar.set_postfix(ratio=f"{ratio:.2f}")
                with plan.applied(float(ratio)):
                    for idx in batches:
                        loss = _batch_response_losses(
                            model, [encoded.ids[i] for i in idx],
                            [encoded.n_response[i] for i in idx],
                            pad_id=pad_id, device=device, keep_kw=keep_kw,
                        )
                        out[idx, t] = loss.double().cpu().numpy()
                        bar.update(1)
    finally:
        bar.close()
        model.train(was_training)
    return out
