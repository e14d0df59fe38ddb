"""Masking a learning path: one selection per ratio (before) against one MaskPlan (now).

    nice -n 10 python benchmarks/speed_masking.py [--models lite0 smollm2] [--repeat 2]

For each model the same path of ratios is masked in place and restored, ratio after
ratio, as the engines do:

- *per-ratio selection* (skdlc before issue 13): for every ratio, a ``kthvalue`` of
  every tensor's ``|w|`` on a float32 host copy, then the comparison and tie passes,
  with torch's intra-op threads as the process has them;
- *MaskPlan*: the thresholds of all ratios from one multi-``kth`` partition per tensor,
  then one comparison pass per ratio (single-threaded element-wise passes).

The middle column runs the per-ratio selection on one thread, to show how much of the
gain is the threads and how much the single pass. Both give identical masks (checked
here on every tensor). Runs alternate and each time
is the minimum over ``--repeat``; wall and CPU seconds of this process.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from skdlc._masking import MaskPlan, maskable_parameters  # noqa: E402


# -------------------------------------------------- the per-ratio selection, as it was
def _smallest_k(absval: torch.Tensor, k: int) -> torch.Tensor:
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
        mask[torch.nonzero(absval == tau).flatten()[:need]] = True
    return mask


def per_ratio_masks(tensors, ratio):
    return [_smallest_k(t.detach().abs().flatten(), int(round(t.numel() * ratio))) for t in tensors]


@contextlib.contextmanager
def per_ratio_masked(tensors, ratio):
    removed = []
    try:
        with torch.no_grad():
            for p, m in zip(tensors, per_ratio_masks(tensors, ratio)):
                m = m.view(p.shape)
                removed.append((p, m, p.data[m].to("cpu", copy=True)))
                p.data.masked_fill_(m, 0)
        yield
    finally:
        with torch.no_grad():
            for p, m, v in removed:
                p.data[m] = v.to(p.device)


# ----------------------------------------------------------------------------- runs
def targets(name: str) -> list[tuple[str, torch.Tensor]]:
    if name == "lite0":
        from skdlc import create_backbone

        return maskable_parameters(create_backbone("efficientnet_lite0").module)
    from skdlc._llm import lm_target_parameters, load_causal_lm

    return lm_target_parameters(load_causal_lm().model, mask_embeddings=False)


def clock():
    w, c = time.perf_counter(), time.process_time()
    return lambda: (time.perf_counter() - w, time.process_time() - c)


def run_old(tensors, ratios, threads=None):
    n = torch.get_num_threads()
    torch.set_num_threads(threads or n)
    try:
        read = clock()
        for r in ratios:
            with per_ratio_masked(tensors, r):
                pass
        return read()
    finally:
        torch.set_num_threads(n)


def run_plan(named, ratios):
    read = clock()
    plan = MaskPlan(named, "layer", ratios)
    for r in ratios:
        with plan.applied(r):
            pass
    return read()


PATHS = {"lite0": [0.1, 0.2, 0.3, 0.4], "smollm2": [0.1, 0.2]}
LABELS = {"lite0": "EfficientNet-Lite0", "smollm2": "SmolLM2-135M (layer weights, no embeddings)"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", choices=list(PATHS), default=list(PATHS))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the engines' setting)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "speed_masking.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    rows = []
    for name in args.models:
        named = targets(name)
        tensors = [t for _, t in named]
        ratios = PATHS[name]
        plan = MaskPlan(named, "layer", ratios)
        same = all(torch.equal(a, b) for r in ratios
                   for a, b in zip(plan.masks(r), per_ratio_masks(tensors, r)))
        old, one, new = [float("inf")] * 2, [float("inf")] * 2, [float("inf")] * 2
        for _ in range(args.repeat):
            o, o1, n = run_old(tensors, ratios), run_old(tensors, ratios, 1), run_plan(named, ratios)
            old, one, new = ([min(a, b) for a, b in zip(x, y)] for x, y in ((old, o), (one, o1), (new, n)))
            print(f"{name}: per-ratio {o[0]:.2f} s wall / {o[1]:.2f} CPU s, per-ratio on one thread "
                  f"{o1[0]:.2f} / {o1[1]:.2f}, plan {n[0]:.2f} / {n[1]:.2f}", flush=True)
        rows.append((LABELS[name], sum(t.numel() for t in tensors), len(tensors), ratios, old, one, new, same))
    load1 = os.getloadavg()[0]
    cmd = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/speed_masking.py",
                                                          *(argv if argv is not None else sys.argv[1:])])
    lines = ["# Masking a path: per-ratio selection against one MaskPlan", "", f"Command: `{cmd}`", "",
             f"torch threads = {args.threads}; min of {args.repeat} alternating runs; 1-min load average "
             f"{load0:.1f} / {load1:.1f} on {os.cpu_count()} CPUs (shared machine: read the ratios).", "",
             "| model | weights masked | tensors | ratios | per-ratio selection: wall s / CPU s "
             "| same, one thread | MaskPlan: wall s / CPU s | speed-up over per-ratio: wall / CPU "
             "| identical masks |",
             "|---|---:|---:|---|---:|---:|---:|---:|---|"]
    for label, n, k, ratios, old, one, new, same in rows:
        lines.append(f"| {label} | {n:,} | {k} | {ratios} | {old[0]:.2f} / {old[1]:.2f} | {one[0]:.2f} / "
                     f"{one[1]:.2f} | {new[0]:.2f} / {new[1]:.2f} | **{old[0] / new[0]:.1f}x / "
                     f"{old[1] / new[1]:.1f}x** | {same} |")
    lines.append("")
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
