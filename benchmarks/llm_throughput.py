"""InstructionScorer against T bare forward passes of the same model over the same batches.

    nice -n 10 python benchmarks/llm_throughput.py                  # CPU, SmolLM2-135M (offline)
    python benchmarks/llm_throughput.py --device cuda --n 256 --batch-size 32

Data: OpenAI Evals instruction records (the INSTRUCTION_TASK_MIX tasks) in the Alpaca template.
One run measures, side by side:

- *bare pass*: the model's forward over the scorer's own batches (length-sorted,
  left-padded, position ids, ``logits_to_keep``), nothing else: no masking, no loss;
- *DLC*: ``InstructionScorer.path_losses`` over the same records at T mask ratios
  (applying and undoing the masks, forwards, losses, host copies); the thresholds of
  the path's masks are computed once per loaded model, in ``fit`` (timed separately
  here and counted in the load time);
- runs alternate bare, DLC, bare, DLC, ..., bare (``--rounds`` DLC runs); each DLC
  run is compared with the mean of the two bare passes around it, and the page gives
  every round and their median;
- *within-run*: inside each DLC run the model's forward calls are timed, so DLC /
  (its own T forward passes) measures the overhead (masks, losses, batching, copies)
  under exactly the load the run had: on a shared machine, where the load moves by a
  factor of several within minutes, this is the robust figure;
- the ratio DLC / (T x bare pass), in wall and in CPU seconds (the machine may be
  shared: CPU seconds are the robust figure), tokens/s, padding share;
- the masking alone (thresholds of the whole path + applying and restoring each ratio);
- the model load time (``fit``), and whether the dequantized GGUF was already cached.

Writes the page to benchmarks/results/llm_throughput.md (or --out) with the command.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from skdlc._encoding import _batches  # noqa: E402
from skdlc._instruction import InstructionScorer  # noqa: E402
from skdlc._response_loss import _logits_keep_kwarg  # noqa: E402
from skdlc.datasets import INSTRUCTION_TASK_MIX, load_instructions  # noqa: E402


def _cpu_s() -> float:
    """CPU seconds of this process (user + system, all threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _Clock:
    """Wall and CPU seconds of a block, synchronising CUDA at both ends."""

    def __init__(self, cuda: bool):
        self.cuda = cuda

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
        self.w, self.c = time.perf_counter(), _cpu_s()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
        self.wall, self.cpu = time.perf_counter() - self.w, _cpu_s() - self.c


def padded_batches(enc, batch_size: int, pad_id: int):
    """The scorer's batches (same order, padding and positions) as model inputs."""
    out = []
    for idx in _batches(enc.lengths, batch_size):
        seqs = [enc.ids[i] for i in idx]
        length = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
        att = torch.zeros_like(ids)
        for i, s in enumerate(seqs):
            ids[i, length - len(s):] = torch.as_tensor(s)
            att[i, length - len(s):] = 1
        pos = (att.cumsum(1) - 1).clamp_(min=0)
        keep = max(enc.n_response[i] for i in idx) + 1
        out.append((ids, att, pos, keep))
    return out


def bare_pass(model, batches, device, keep_kw) -> None:
    """One forward of the unmasked model over every batch, outputs discarded."""
    with torch.inference_mode():
        for ids, att, pos, keep in batches:
            kw = {"input_ids": ids.to(device), "attention_mask": att.to(device),
                  "position_ids": pos.to(device), "use_cache": False}
            if keep_kw is not None:
                kw[keep_kw] = keep
            model(**kw)


class _ForwardTimer:
    """Time every call of ``model.forward`` (wall and process CPU seconds)."""

    def __init__(self, model, cuda: bool):
        self.model, self.cuda, self.wall, self.cpu = model, cuda, 0.0, 0.0

    def __enter__(self):
        orig = self.model.forward

        def timed(*a, **k):
            with _Clock(self.cuda) as c:
                out = orig(*a, **k)
            self.wall += c.wall
            self.cpu += c.cpu
            return out

        self.model.forward = timed  # nn.Module.__call__ looks up self.forward
        return self

    def __exit__(self, *exc):
        del self.model.forward


def masking_only(scorer, ratios) -> None:
    """The masking work of one path: thresholds of every ratio, apply + restore each."""
    try:
        from skdlc._masking import MaskPlan
    except ImportError:  # an older skdlc (``--root``): one selection per ratio
        from skdlc._masking import masked

        for r in ratios:
            with masked(scorer._targets, float(r), scorer.masking):
                pass
        return
    plan = MaskPlan(list(zip(scorer._targets.names, scorer._targets.parameters())), scorer.masking)
    plan.prepare(ratios)
    for r in ratios:
        with plan.applied(float(r)):
            pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=16, help="examples to score")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--mask-ratios", default="0,0.1,0.2")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="DLC runs, alternating with bare passes")
    ap.add_argument("--out", default=str(HERE / "results" / "llm_throughput.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ratios = [float(x) for x in args.mask_ratios.split(",")]
    T = len(ratios)
    cuda = args.device.startswith("cuda")

    per_task = -(-args.n // len(INSTRUCTION_TASK_MIX))
    records = load_instructions(n_per_task=per_task, random_state=0)[: args.n]
    load0 = os.getloadavg()

    cached = None
    try:  # was the dequantized copy of the offline GGUF there before this run?
        from skdlc._llm import _gguf_cache_folder, offline_smollm2_path

        cached = (_gguf_cache_folder(*offline_smollm2_path()) / "config.json").is_file()
    except Exception:  # noqa: BLE001 - informational only
        pass
    with _Clock(cuda) as load:
        scorer = InstructionScorer(mask_ratios=ratios, max_length=args.max_length,
                                   batch_size=args.batch_size, device=args.device,
                                   dtype=args.dtype).fit()
    rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    plan_s = None
    try:  # the share of fit that computes the thresholds of the path's masks
        from skdlc._masking import MaskPlan

        with _Clock(cuda) as c:
            MaskPlan(list(zip(scorer._targets.names, scorer._targets.parameters())), scorer.masking, ratios)
        plan_s = c
    except ImportError:
        pass
    enc = scorer.encode(records)
    model, device = scorer.model_, scorer.device_
    batches = padded_batches(enc, args.batch_size, scorer._pad_id())
    keep_kw = _logits_keep_kwarg(model)
    data_tokens = int(enc.lengths.sum())
    run_tokens = int(sum(ids.numel() for ids, *_ in batches))

    bare_pass(model, batches[-1:], device, keep_kw)  # warm-up: first-call costs, not timed
    bares, dlcs = [], []
    for _ in range(args.rounds):
        with _Clock(cuda) as c:
            bare_pass(model, batches, device, keep_kw)
        bares.append(c)
        with _ForwardTimer(model, cuda) as fwd, _Clock(cuda) as c:
            losses = scorer.path_losses(records)
        c.fwd_wall, c.fwd_cpu = fwd.wall, fwd.cpu
        dlcs.append(c)
    with _Clock(cuda) as c:
        bare_pass(model, batches, device, keep_kw)
    bares.append(c)
    with _Clock(cuda) as mask:
        masking_only(scorer, ratios)
    load1 = os.getloadavg()

    # each DLC run against the two bare passes around it
    per_w = [d.wall / (T * (bares[i].wall + bares[i + 1].wall) / 2) for i, d in enumerate(dlcs)]
    per_c = [d.cpu / (T * (bares[i].cpu + bares[i + 1].cpu) / 2) for i, d in enumerate(dlcs)]
    own_w = [d.wall / d.fwd_wall for d in dlcs]
    own_c = [d.cpu / d.fwd_cpu for d in dlcs]
    ratio_w, ratio_c = float(np.median(per_w)), float(np.median(per_c))
    in_w, in_c = float(np.median(own_w)), float(np.median(own_c))
    bare_w, bare_c = float(np.median([b.wall for b in bares])), float(np.median([b.cpu for b in bares]))
    dlc_w, dlc_c = float(np.median([d.wall for d in dlcs])), float(np.median([d.cpu for d in dlcs]))

    def runs(xs, attr):
        return " / ".join(f"{getattr(x, attr):.1f}" for x in xs)
    cmd = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/llm_throughput.py",
                                                          *(argv if argv is not None else sys.argv[1:])])
    dev = (torch.cuda.get_device_name() if cuda
           else f"CPU ({platform.processor() or platform.machine()}), {os.cpu_count()} cores visible, "
                f"torch threads = {args.threads}")
    status = "met" if in_c <= 1.15 and in_w <= 1.15 else "not met"
    lines = [
        "# InstructionScorer throughput: SmolLM2-135M-Instruct against bare forward passes",
        "",
        f"Command: `{cmd}`",
        "",
        f"- device: {dev}; dtype {args.dtype}",
        f"- data: {len(records)} OpenAI Evals records ({len(INSTRUCTION_TASK_MIX)} tasks), "
        f"Alpaca template; tokens per example: mean "
        f"{enc.lengths.mean():.0f}, max {enc.lengths.max()}, response mean "
        f"{np.mean(enc.n_response):.1f}; {enc.n_truncated} truncated to {args.max_length}",
        f"- batches: {len(batches)} of up to {args.batch_size}, length-sorted; tokens run per pass "
        f"{run_tokens} for {data_tokens} tokens of data (padding {1 - data_tokens / run_tokens:.1%})",
        f"- T = {T} mask ratios {tuple(ratios)} (layer-wise, embeddings and lm_head not masked): "
        f"{scorer.n_masked_weights_:,} weights in {len(scorer.masked_parameter_names_)} tensors",
        f"- model load (`fit`): {load.wall:.1f} s wall ({load.cpu:.1f} CPU s); dequantized GGUF "
        + {True: "read from skdlc's cache", False: "converted in this run (first load on this "
           "machine)", None: "cache state unknown"}[cached]
        + f"; peak RSS after loading {rss_model:.0f} MB"
        + ("" if plan_s is None else f"; of which the thresholds of the masks of all T ratios (one pass "
           f"over the weights, measured again after fit): {plan_s.wall:.1f} s wall ({plan_s.cpu:.1f} CPU s)"),
        f"- 1-min load average at start / end: {load0[0]:.1f} / {load1[0]:.1f} on "
        f"{os.cpu_count()} CPUs (shared machine: compare within the table, not across runs)",
        "",
        "| | DLC runs (T ratios) | bare passes (around them) | DLC / (T x bare), per round (median) "
        "| DLC / its own T forward passes, per round (median) | target <= 1.15 |",
        "|---|---:|---:|---:|---:|---|",
        f"| wall s | {runs(dlcs, 'wall')} | {runs(bares, 'wall')} | "
        f"{' / '.join(f'{x:.3f}' for x in per_w)} ({ratio_w:.3f}) | "
        f"{' / '.join(f'{x:.3f}' for x in own_w)} (**{in_w:.3f}**) | |",
        f"| CPU s | {runs(dlcs, 'cpu')} | {runs(bares, 'cpu')} | "
        f"{' / '.join(f'{x:.3f}' for x in per_c)} ({ratio_c:.3f}) | "
        f"{' / '.join(f'{x:.3f}' for x in own_c)} (**{in_c:.3f}**) | {status} (within-run) |",
        "",
        f"Tokens/s of data (medians, wall): DLC {T * data_tokens / dlc_w:.0f} (T passes), bare pass "
        f"{data_tokens / bare_w:.0f}.",
        "",
        f"Masking from scratch (thresholds of all {T} ratios from one pass + apply and restore each), "
        f"measured after the run: {mask.wall:.2f} s wall, {mask.cpu:.2f} CPU s "
        f"({mask.cpu / max(dlc_c, 1e-9):.1%} of the DLC CPU time).",
        "",
        "Mean response loss per ratio (sanity check): "
        + ", ".join(f"r={r:g}: {v:.3f}" for r, v in zip(ratios, losses.mean(0))),
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
