"""MaskPlan: one pass over the weights gives every ratio's masks, exactly the exact-k ones."""

import pytest
import torch

from skdlc._masking import MaskPlan, compute_masks, maskable_parameters, masked, masked_state

RATIOS = [0.0, 0.05, 0.1, 0.37, 0.5, 0.8, 0.98]


def _reference_masks(tensors, ratio, masking):
    """The exact-k rule written out with a full stable sort: the k smallest |w|, ties by
    position (per tensor, or over the tensors in order for "global")."""
    if masking == "layer":
        out = []
        for t in tensors:
            a = t.detach().abs().flatten().double()
            k = int(round(a.numel() * ratio))
            m = torch.zeros(a.numel(), dtype=torch.bool)
            m[torch.sort(a, stable=True).indices[:k]] = True
            out.append(m)
        return out
    flat = torch.cat([t.detach().abs().flatten().float() for t in tensors])
    k = int(round(flat.numel() * ratio))
    gone = torch.zeros(flat.numel(), dtype=torch.bool)
    gone[torch.sort(flat, stable=True).indices[:k]] = True
    return list(gone.split([t.numel() for t in tensors]))


def _weights(quantized: bool):
    g = torch.Generator().manual_seed(0)
    shapes = [(7, 5), (3, 3, 2, 2), (1, 1), (64, 33)]
    ts = [torch.randn(s, generator=g) for s in shapes]
    if quantized:  # few distinct values: ties at nearly every threshold
        ts = [torch.round(t * 3) / 3 for t in ts]
    return ts


@pytest.mark.parametrize("masking", ["layer", "global"])
@pytest.mark.parametrize("quantized", [False, True])
def test_plan_masks_are_the_exact_k_masks(masking, quantized):
    ts = _weights(quantized)
    plan = MaskPlan(ts, masking, RATIOS)
    for r in RATIOS:
        want = _reference_masks(ts, r, masking)
        for got, single, ref in zip(plan.masks(r), compute_masks(ts, r, masking), want):
            assert torch.equal(got, ref), (masking, r)
            assert torch.equal(single, ref), (masking, r)


def test_exact_count_per_tensor_and_in_place_restore():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(8, 4)).to(
        memory_format=torch.channels_last)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.round(p * 8) / 8)
    before = {n: p.clone() for n, p in net.named_parameters()}
    plan = MaskPlan(net, "layer", [0.3, 0.6])
    for r in [0.3, 0.6]:
        masks = plan.masks(r)
        state = masked_state(net, r)
        with plan.applied(r):
            for m, (_, p) in zip(masks, maskable_parameters(net)):
                assert int(m.sum()) == int(round(p.numel() * r))  # exactly k, ties or not
                assert bool((p.flatten() if p.is_contiguous() else p.reshape(-1))[m].eq(0).all())
            with pytest.raises(RuntimeError, match="inside applied"):
                plan.masks(r)
            for n, p in maskable_parameters(net):  # the in-place and the copied variants agree
                assert torch.equal(p, state[n])
        for n, p in net.named_parameters():
            assert torch.equal(p, before[n])
    with pytest.raises(RuntimeError), masked(net, 0.5):
        raise RuntimeError("restored after an error too")
    for n, p in net.named_parameters():
        assert torch.equal(p, before[n])


def test_plan_follows_in_place_changes_of_the_weights():
    lin = torch.nn.Linear(20, 10)
    plan = MaskPlan(lin, "layer", [0.5])
    with torch.no_grad():
        lin.weight.mul_(-1).add_(torch.linspace(0, 1, 200).view(10, 20))
    assert torch.equal(plan.masks(0.5)[0], _reference_masks([lin.weight], 0.5, "layer")[0])


def test_bad_ratio_and_mode():
    with pytest.raises(ValueError, match="mask ratio"):
        MaskPlan([torch.ones(2, 2)], "layer", [1.0])
    with pytest.raises(ValueError, match="masking"):
        MaskPlan([torch.ones(2, 2)], "per-channel")
