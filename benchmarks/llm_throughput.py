"""Scoring throughput and peak memory of InstructionScorer with SmolLM2-135M-Instruct.

    nice -n 10 python benchmarks/llm_throughput.py                     # CPU, defaults
    python benchmarks/llm_throughput.py --device cuda --n 512 --batch-sizes 8 32 64

Data: Natural Instructions examples (the NI_TASK_MIX subtasks, full task instruction
or its one-line prompt) in the Alpaca template. For each batch size the model is fitted
once and the records are scored at T mask ratios; reported are examples/s (examples
scored through the whole path per second), example-forwards/s (n x T / time), tokens/s,
and memory: peak resident set size of the process (CPU) or peak allocated CUDA memory.
The model itself is float32 (135M parameters = 538 MB); masking keeps the removed values
(and a boolean mask) of the current ratio on the host.

Writes a markdown table to benchmarks/results/llm_throughput.md (or --out) together
with the exact command and the machine's load.
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

from skdlc._instruction import InstructionScorer  # noqa: E402
from skdlc._text_data import NI_TASK_MIX, load_natural_instructions  # noqa: E402


def _cpu_s() -> float:
    """CPU seconds used by this process (user + system, all threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss_peak_mb() -> float:
    # ru_maxrss is in kB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=32, help="examples to score")
    ap.add_argument("--instruction", choices=["prompt", "full"], default="full")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--mask-ratios", default="0,0.1,0.2")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "results" / "llm_throughput.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ratios = [float(x) for x in args.mask_ratios.split(",")]

    per_task = -(-args.n // len(NI_TASK_MIX))
    records = load_natural_instructions(n_per_task=per_task, instruction=args.instruction,
                                        random_state=0)[: args.n]
    load0 = os.getloadavg()
    rows = []
    t = time.perf_counter()
    scorer = InstructionScorer(mask_ratios=ratios, max_length=args.max_length,
                               device=args.device, dtype=args.dtype).fit()
    fit_s = time.perf_counter() - t
    rss_model = _rss_peak_mb()
    enc = scorer.encode(records)
    lengths = enc.lengths
    for bs in args.batch_sizes:
        scorer.set_params(batch_size=bs)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t, c = time.perf_counter(), _cpu_s()
        losses = scorer.path_losses(records)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        dt, cpu = time.perf_counter() - t, _cpu_s() - c
        mem = (torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda")
               else _rss_peak_mb())
        rows.append(dict(bs=bs, seconds=dt, ex_s=len(records) / dt,
                         fwd_s=len(records) * len(ratios) / dt,
                         tok_s=lengths.sum() * len(ratios) / dt, mem=mem, cpu=cpu,
                         tok_cpu_s=lengths.sum() * len(ratios) / cpu,
                         mean_loss=losses.mean(0)))
        print(f"batch {bs}: {dt:.1f} s, {len(records) / dt:.2f} examples/s", flush=True)
    load1 = os.getloadavg()

    cmd = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    dev = (torch.cuda.get_device_name() if args.device.startswith("cuda")
           else f"CPU ({platform.processor() or platform.machine()}), "
                f"{os.cpu_count()} cores visible, torch threads = {args.threads}")
    mem_name = "peak CUDA allocated (MB)" if args.device.startswith("cuda") else "peak RSS (MB)"
    lines = [
        "# InstructionScorer throughput: SmolLM2-135M-Instruct",
        "",
        f"Command: `{cmd}`",
        "",
        f"- device: {dev}; dtype {args.dtype}",
        f"- data: {len(records)} Natural Instructions examples ({len(NI_TASK_MIX)} subtasks, "
        f"instruction = {args.instruction}), Alpaca template; tokens per example: "
        f"mean {lengths.mean():.0f}, max {lengths.max()}, response mean "
        f"{np.mean(enc.n_response):.1f}; {enc.n_truncated} truncated to max_length "
        f"{args.max_length}",
        f"- T = {len(ratios)} mask ratios {tuple(ratios)} (layer-wise, embeddings and "
        "lm_head not masked)",
        f"- model load (fit): {fit_s:.1f} s; peak RSS after loading: {rss_model:.0f} MB",
        f"- load average (1 min) at start / end: {load0[0]:.1f} / {load1[0]:.1f} "
        "(the machine is shared; higher load = fewer cycles for this run: "
        "tokens per CPU-second is the figure that does not depend on the load)",
        "",
        f"| batch size | seconds | examples/s (whole path) | example-forwards/s | tokens/s | "
        f"CPU seconds | tokens per CPU-second | {mem_name} |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['bs']} | {r['seconds']:.1f} | {r['ex_s']:.2f} | {r['fwd_s']:.2f} | "
                     f"{r['tok_s']:.0f} | {r['cpu']:.0f} | {r['tok_cpu_s']:.0f} | {r['mem']:.0f} |")
    lines += ["", "Mean response loss per ratio (sanity check): "
              + ", ".join(f"r={r:g}: {v:.3f}" for r, v in zip(ratios, rows[-1]["mean_loss"])), ""]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
