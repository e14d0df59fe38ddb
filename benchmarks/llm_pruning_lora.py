"""Instruction-data pruning with an LLM: Random vs DLC+FlexRand, LoRA fine-tuning.

    nice -n 10 python benchmarks/llm_pruning_lora.py             # ~15-30 min on 2 busy cores
    nice -n 10 python benchmarks/llm_pruning_lora.py --sopt      # + S_Opt / masking evidence

Protocol (the paper's instruction-tuning setting, scaled to a small CPU):

- data: the OpenAI Evals tasks of ``skdlc.datasets.INSTRUCTION_TASK_MIX`` (the
  ``evals==3.0.1.post1`` wheel, docs/data.md), ``--n-train`` + ``--n-eval`` examples
  drawn per task; the instruction is the task's system prompt; a compact template ``{instruction}\\n\\n{input}\\n\\nAnswer: ``
  + response + EOS (used for scoring, training and evaluation alike);
- scores: :class:`skdlc.InstructionScorer` on SmolLM2-135M-Instruct (offline GGUF),
  ``--mask-ratios``, layer-wise masking of the linear layers;
- selection: keep ``--keep`` of each task (the ``category`` column): Random (uniform
  within each task) vs DLC+FlexRand (gamma ``--gamma``, per task); ``--seeds`` seeds,
  each seed fixing the subset draw, the LoRA initialisation and the data order, so the
  two methods are paired by seed;
- fine-tuning: LoRA (peft; rank 8, alpha 16, on q/k/v/o/gate/up/down) on the top
  ``--lora-layers`` decoder layers only, ``--epochs`` epochs, AdamW, batch 8, linear
  decay. The frozen lower layers are run once for every example and their output is
  cached (checked against the full model), which is what makes several fine-tuning
  runs affordable on a CPU; the LoRA update is therefore restricted to the top layers;
- evaluation: held-out examples of the same tasks: mean response cross-entropy (macro
  over tasks) and greedy exact match against the first reference (all teacher-forced
  arg-max tokens right, EOS included, is exactly what greedy decoding would produce);
  zero-shot (no fine-tuning) and the full training pool (100%) as references;
- ``--sopt``: the full-pool run also records every example's training loss at each
  epoch; their sum is S_Opt (the paper's learning complexity on the real fine-tuning
  path). Reported: Spearman correlation of S_Opt with DLC scores computed with and
  without masking the embeddings / lm_head, and with the loss at each single ratio.

Results: a markdown report (``--out``) and the raw numbers as JSON beside it.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from skdlc._instruction import (  # noqa: E402
    InstructionScorer,
    encode_examples,
    extract_fields,
    select_instructions,
)
from skdlc._paths import cache_dir  # noqa: E402
from skdlc.datasets import INSTRUCTION_TASK_MIX, load_instructions  # noqa: E402

METHOD_NAMES = {"random": "Random", "flexrand": "DLC+FlexRand", "easy": "DLC+easy",
                "hard": "DLC+hard", "flexible": "DLC+flexible", "bins": "DLC+bins"}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def compact_template(instruction: str, input: str, output: str):  # noqa: A002
    prompt = f"{instruction}\n\n{input}\n\nAnswer: " if input else f"{instruction}\n\nAnswer: "
    return prompt, output, True  # True: append EOS to the response


# ------------------------------------------------------------------------ data
def load_split(n_train: int, n_eval: int, seed: int = 0):
    recs = load_instructions(n_per_task=n_train + n_eval, random_state=seed)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for task in INSTRUCTION_TASK_MIX:
        rows = [r for r in recs if r["category"] == task]
        order = rng.permutation(len(rows))
        train += [rows[i] for i in order[:n_train]]
        test += [rows[i] for i in order[n_train:n_train + n_eval]]
    return train, test


def encode(records, tokenizer, max_length):
    enc = encode_examples(extract_fields(records), tokenizer, compact_template, max_length)
    return enc.ids, enc.n_response


# ---------------------------------------------------------- frozen-prefix cache
@torch.no_grad()
def prefix_states(model, ids, split_layer, batch_size=8):
    """Hidden states entering decoder layer ``split_layer`` for every sequence.

    Right padding with no attention mask is exact for a causal model: real tokens only
    attend to earlier (real) tokens.
    """
    out = [None] * len(ids)
    order = np.argsort([-len(x) for x in ids], kind="stable")
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        length = max(len(ids[i]) for i in idx)
        x = torch.zeros((len(idx), length), dtype=torch.long)
        for j, i in enumerate(idx):
            x[j, :len(ids[i])] = torch.tensor(ids[i])
        hs = model.model(input_ids=x, output_hidden_states=True).hidden_states[split_layer]
        for j, i in enumerate(idx):
            out[i] = hs[j, :len(ids[i])].clone()
    return out


class Top(torch.nn.Module):
    """The top decoder layers + final norm + lm_head of a Llama model, on cached states."""

    def __init__(self, model, split_layer):
        super().__init__()
        self.layers = copy.deepcopy(torch.nn.ModuleList(model.model.layers[split_layer:]))
        self.norm = model.model.norm
        self.rotary = model.model.rotary_emb
        self.lm_head = model.lm_head

    def forward(self, h):  # h: (B, T, D), right-padded
        pos = torch.arange(h.shape[1])[None].expand(h.shape[0], -1)
        pe = self.rotary(h, pos)
        for layer in self.layers:
            out = layer(h, attention_mask=None, position_ids=pos, position_embeddings=pe)
            h = out[0] if isinstance(out, tuple) else out
        return self.norm(h)


def batch_losses(top, states, ids, n_resp, idx):
    """Per-example mean response CE, token-accuracy and exact match for a batch."""
    length = max(states[i].shape[0] for i in idx)
    d = states[idx[0]].shape[1]
    h = torch.zeros((len(idx), length, d))
    for j, i in enumerate(idx):
        h[j, :states[i].shape[0]] = states[i]
    z = top(h)
    losses, accs, ems = [], [], []
    for j, i in enumerate(idx):
        n, r = len(ids[i]), n_resp[i]
        logits = top.lm_head(z[j, n - r - 1:n - 1]).float()
        tgt = torch.tensor(ids[i][n - r:])
        ce = F.cross_entropy(logits, tgt, reduction="mean")
        right = logits.argmax(-1) == tgt
        losses.append(ce)
        accs.append(right.float().mean())
        ems.append(right.all().float())
    return torch.stack(losses), torch.stack(accs), torch.stack(ems)


def make_top(model, split_layer, seed, rank=8):
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(seed)
    top = Top(model, split_layer)
    cfg = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=TARGETS)
    top.layers = inject_adapter_in_model(cfg, top.layers)
    for name, p in top.named_parameters():
        p.requires_grad_("lora_" in name)
    return top


def train(model, split_layer, states, ids, n_resp, subset, *, seed, epochs, lr,
          batch_size=8, record=False):
    top = make_top(model, split_layer, seed)
    params = [p for p in top.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    steps = epochs * int(np.ceil(len(subset) / batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / max(steps, 1))
    rng = np.random.default_rng(seed)
    traj = np.zeros((len(subset), epochs)) if record else None
    pos_of = {int(i): k for k, i in enumerate(subset)}
    top.train()
    for ep in range(epochs):
        order = rng.permutation(np.asarray(subset))
        for s in range(0, len(order), batch_size):
            idx = [int(i) for i in order[s:s + batch_size]]
            loss, _, _ = batch_losses(top, states, ids, n_resp, idx)
            if record:
                for i, v in zip(idx, loss.detach().numpy()):
                    traj[pos_of[i], ep] = v
            opt.zero_grad()
            loss.mean().backward()
            opt.step()
            sched.step()
    top.eval()
    return top, traj


@torch.no_grad()
def evaluate(top, states, ids, n_resp, tasks, batch_size=16):
    n = len(ids)
    loss, acc, em = np.zeros(n), np.zeros(n), np.zeros(n)
    for s in range(0, n, batch_size):
        idx = list(range(s, min(n, s + batch_size)))
        a, b, c = batch_losses(top, states, ids, n_resp, idx)
        loss[idx], acc[idx], em[idx] = a.numpy(), b.numpy(), c.numpy()
    tasks = np.asarray(tasks)
    macro = lambda v: float(np.mean([v[tasks == t].mean() for t in np.unique(tasks)]))  # noqa: E731
    per_task = {t: float(loss[tasks == t].mean()) for t in np.unique(tasks)}
    return {"loss": macro(loss), "token_acc": macro(acc), "exact_match": macro(em),
            "loss_per_task": per_task}


def within_task_spearman(a, b, tasks):
    tasks = np.asarray(tasks)
    vals = [spearmanr(a[tasks == t], b[tasks == t])[0] for t in np.unique(tasks)]
    return float(np.mean(vals)), float(spearmanr(a, b)[0])


# ------------------------------------------------------------------------ main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-train", type=int, default=20, help="training-pool examples per task")
    ap.add_argument("--n-eval", type=int, default=10, help="held-out examples per task")
    ap.add_argument("--keep", type=float, default=0.5)
    ap.add_argument("--gamma", type=float, default=0.5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--strategies", nargs="+", default=["random", "flexrand"],
                    choices=sorted(METHOD_NAMES),
                    help="selection rules to compare ('random' ignores the scores)")
    ap.add_argument("--mask-ratios", default="0,0.1,0.2,0.3")
    ap.add_argument("--lora-layers", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-length", type=int, default=192)
    ap.add_argument("--batch-size", type=int, default=8, help="scoring batch size")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sopt", action="store_true",
                    help="also compute S_Opt on the full pool and the masking evidence")
    ap.add_argument("--sopt-ratios", default="0,0.1,0.2,0.3,0.5")
    ap.add_argument("--cache", default=str(cache_dir("benchmarks", "llm")))
    ap.add_argument("--out", default=str(HERE / "results" / "llm_pruning_lora.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ratios = [float(x) for x in args.mask_ratios.split(",")]
    t_start = time.perf_counter()
    load0 = os.getloadavg()
    timings = {}

    train_recs, test_recs = load_split(args.n_train, args.n_eval)
    tasks_tr = [r["category"] for r in train_recs]
    tasks_te = [r["category"] for r in test_recs]
    print(f"{len(train_recs)} training-pool and {len(test_recs)} held-out examples", flush=True)

    # 1. DLC scores (cached by content with memory=)
    t = time.perf_counter()
    scorer = InstructionScorer(mask_ratios=ratios, template=compact_template,
                               max_length=args.max_length, batch_size=args.batch_size,
                               memory=args.cache, verbose=True).fit()
    losses = scorer.path_losses(train_recs)
    scores = losses.mean(1)
    timings["dlc_scoring_s"] = time.perf_counter() - t
    model, tok = scorer.model_, scorer.tokenizer_
    n_layers = model.config.num_hidden_layers
    split = n_layers - args.lora_layers
    print(f"DLC scores in {timings['dlc_scoring_s']:.0f} s", flush=True)

    # 2. frozen-prefix cache, checked against the full model on one example
    t = time.perf_counter()
    ids_tr, r_tr = encode(train_recs, tok, args.max_length)
    ids_te, r_te = encode(test_recs, tok, args.max_length)
    st_tr = prefix_states(model, ids_tr, split)
    st_te = prefix_states(model, ids_te, split)
    with torch.no_grad():
        top0 = Top(model, split).eval()
        full = model(torch.tensor([ids_te[0]])).logits[0]
        mine = model.lm_head(top0(st_te[0][None]))[0]
        err = float((full - mine).abs().max())
    assert err < 1e-3, f"cached-prefix forward differs from the model by {err}"
    timings["prefix_cache_s"] = time.perf_counter() - t
    print(f"prefix cache in {timings['prefix_cache_s']:.0f} s (max |logit diff| {err:.2e})",
          flush=True)

    results = {"zero_shot": evaluate(top0, st_te, ids_te, r_te, tasks_te)}
    n_keep = {t_: int(np.floor(args.keep * tasks_tr.count(t_) + 0.5)) for t_ in INSTRUCTION_TASK_MIX}
    runs = []
    t = time.perf_counter()
    for seed in args.seeds:
        for strategy in args.strategies:
            method = METHOD_NAMES[strategy]
            subset = select_instructions(scores, args.keep, gamma=args.gamma,
                                         strategy=strategy, groups=tasks_tr,
                                         random_state=seed)
            top, _ = train(model, split, st_tr, ids_tr, r_tr, subset, seed=seed,
                           epochs=args.epochs, lr=args.lr)
            ev = evaluate(top, st_te, ids_te, r_te, tasks_te)
            runs.append({"method": method, "seed": seed, "n_kept": int(len(subset)),
                         "mean_dlc_score_kept": float(scores[subset].mean()), **ev})
            print(f"seed {seed} {method}: loss {ev['loss']:.4f} EM {ev['exact_match']:.3f}",
                  flush=True)
    timings["pruned_runs_s"] = time.perf_counter() - t

    t = time.perf_counter()
    full_top, traj = train(model, split, st_tr, ids_tr, r_tr, np.arange(len(ids_tr)),
                           seed=args.seeds[0], epochs=args.epochs, lr=args.lr,
                           record=args.sopt)
    results["full_pool"] = evaluate(full_top, st_te, ids_te, r_te, tasks_te)
    timings["full_run_s"] = time.perf_counter() - t
    print(f"full pool: loss {results['full_pool']['loss']:.4f}", flush=True)

    evidence = None
    if args.sopt:
        t = time.perf_counter()
        s_opt = traj.sum(1)
        sr = [float(x) for x in args.sopt_ratios.split(",")]
        evidence = {"ratios": sr}
        for emb in (False, True):
            sc = InstructionScorer(mask_ratios=sr, mask_embeddings=emb,
                                   template=compact_template, max_length=args.max_length,
                                   batch_size=args.batch_size, memory=args.cache,
                                   verbose=True).fit()
            L = sc.path_losses(train_recs)
            key = "with_embeddings" if emb else "linear_only"
            evidence[key] = {
                "mean_loss_per_ratio": L.mean(0).tolist(),
                "spearman_per_ratio": [within_task_spearman(L[:, j], s_opt, tasks_tr)
                                       for j in range(len(sr))],
                "spearman_score": {
                    f"{sr[:k]}": within_task_spearman(L[:, :k].mean(1), s_opt, tasks_tr)
                    for k in range(1, len(sr) + 1)
                },
            }
            del sc
        timings["sopt_evidence_s"] = time.perf_counter() - t

    raw = {"args": vars(args), "n_train": len(train_recs), "n_eval": len(test_recs),
           "n_keep_per_task": n_keep, "mask_ratios": ratios, "runs": runs,
           "references": results, "timings": timings, "evidence": evidence,
           "load_avg_start": load0, "load_avg_end": os.getloadavg(),
           "total_s": time.perf_counter() - t_start}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    (out.parent / "raw").mkdir(exist_ok=True)
    (out.parent / "raw" / (out.stem + ".json")).write_text(json.dumps(raw, indent=1))
    cmd = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    out.write_text(report(raw, cmd))
    print(out.read_text())
    return 0


def _ms(v):
    v = np.asarray(v, dtype=float)
    return f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0:.4f}"


def report(raw, cmd) -> str:
    runs = raw["runs"]
    a = raw["args"]
    lines = [
        "# Instruction-data pruning with SmolLM2-135M: Random vs DLC+FlexRand (LoRA)",
        "",
        f"Command: `{cmd}`",
        "",
        f"- data: {raw['n_train']} training-pool / {raw['n_eval']} held-out OpenAI Evals "
        f"examples, {len(INSTRUCTION_TASK_MIX)} tasks ({', '.join(INSTRUCTION_TASK_MIX)}); "
        f"keep {a['keep']:.0%} of each task ({sum(raw['n_keep_per_task'].values())} examples)",
        f"- DLC: SmolLM2-135M-Instruct (offline GGUF, float32), mask ratios "
        f"{tuple(raw['mask_ratios'])}, layer-wise, linear layers only; FlexRand gamma "
        f"{a['gamma']} per task; seeds {a['seeds']}",
        f"- LoRA r=8 on the top {a['lora_layers']} of 30 layers, {a['epochs']} epochs, "
        f"lr {a['lr']}, batch 8; evaluation on the held-out examples (macro over tasks)",
        f"- wall time: {raw['total_s'] / 60:.1f} min in all; "
        + ", ".join(f"{k} {v:.0f} s" for k, v in raw["timings"].items())
        + f"; load average {raw['load_avg_start'][0]:.1f} -> {raw['load_avg_end'][0]:.1f} "
        "on 2 shared cores",
        "",
        "| method | held-out loss (lower is better) | token accuracy | greedy exact match | mean DLC score of kept |",
        "|---|---:|---:|---:|---:|",
    ]
    z = raw["references"]["zero_shot"]
    f = raw["references"]["full_pool"]
    lines.append(f"| zero-shot (no fine-tuning) | {z['loss']:.4f} | {z['token_acc']:.3f} | "
                 f"{z['exact_match']:.3f} | |")
    methods = [METHOD_NAMES[s] for s in a.get("strategies", ["random", "flexrand"])]
    for m in methods:
        rs = [r for r in runs if r["method"] == m]
        lines.append(
            f"| {m} ({a['keep']:.0%}, {len(rs)} seeds) | {_ms([r['loss'] for r in rs])} | "
            f"{_ms([r['token_acc'] for r in rs])} | {_ms([r['exact_match'] for r in rs])} | "
            f"{np.mean([r['mean_dlc_score_kept'] for r in rs]):.3f} |")
    lines.append(f"| full pool (100%, seed {a['seeds'][0]}) | {f['loss']:.4f} | "
                 f"{f['token_acc']:.3f} | {f['exact_match']:.3f} | |")
    by = {m: {r["seed"]: r for r in runs if r["method"] == m} for m in methods}
    if "Random" in by and "DLC+FlexRand" in by:
        rnd, dlc = by["Random"], by["DLC+FlexRand"]
        diff = [dlc[s]["loss"] - rnd[s]["loss"] for s in rnd if s in dlc]
        wins = sum(d < 0 for d in diff)
        lines += [
            "",
            "Paired by seed, DLC+FlexRand minus Random held-out loss: "
            + ", ".join(f"{d:+.4f}" for d in diff)
            + f" (DLC better in {wins} of {len(diff)} seeds; mean {np.mean(diff):+.4f}).",
        ]
    lines += [
        "",
        "Held-out loss per task (mean over seeds):",
        "",
        "| task | zero-shot | " + " | ".join(methods) + " | full pool |",
        "|---|---:|" + "---:|" * len(methods) + "---:|",
    ]
    for t in INSTRUCTION_TASK_MIX:
        cells = [f"{np.mean([r['loss_per_task'][t] for r in by[m].values()]):.3f}"
                 for m in methods]
        lines.append(f"| {t} | {z['loss_per_task'][t]:.3f} | " + " | ".join(cells)
                     + f" | {f['loss_per_task'][t]:.3f} |")
    ev = raw.get("evidence")
    if ev:
        sr = ev["ratios"]
        lines += [
            "",
            "## S_Opt and the masking of embeddings / lm_head",
            "",
            "S_Opt = sum over the epochs of each training-pool example's loss during the "
            "full-pool LoRA run. Spearman correlations with S_Opt, as mean within-task "
            "(global in brackets):",
            "",
            "| ratio | mean loss, linear only | mean loss, + embeddings/lm_head | rho(loss at ratio, S_Opt), linear only | rho, + embeddings/lm_head |",
            "|---:|---:|---:|---:|---:|",
        ]
        lo, we = ev["linear_only"], ev["with_embeddings"]
        for j, r in enumerate(sr):
            lines.append(
                f"| {r:g} | {lo['mean_loss_per_ratio'][j]:.3f} | "
                f"{we['mean_loss_per_ratio'][j]:.3f} | "
                f"{lo['spearman_per_ratio'][j][0]:.3f} ({lo['spearman_per_ratio'][j][1]:.3f}) | "
                f"{we['spearman_per_ratio'][j][0]:.3f} ({we['spearman_per_ratio'][j][1]:.3f}) |")
        lines += ["", "| DLC score = mean over ratios | rho, linear only | rho, + embeddings/lm_head |",
                  "|---|---:|---:|"]
        for k in lo["spearman_score"]:
            a1, a2 = lo["spearman_score"][k], we["spearman_score"][k]
            lines.append(f"| {k} | {a1[0]:.3f} ({a1[1]:.3f}) | {a2[0]:.3f} ({a2[1]:.3f}) |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
