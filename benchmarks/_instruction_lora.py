"""Downstream part of benchmarks/instruction_selection.py: LoRA fine-tuning on kept records.

Protocol, sized for two shared CPU cores:

- the pool (``--n-train`` per task, clean or with 20% broken pairs) and the clean
  held-out records (``--n-eval`` per task) are run once through SmolLM2-135M-Instruct
  (the unmasked pass of the ``scores`` part, bfloat16); the input of the LAST decoder
  layer is kept for every token;
- fine-tuning: LoRA (rank ``--rank``, alpha 2 x rank, on q/k/v/o/gate/up/down) on that
  last layer only, AdamW, ``--epochs`` epochs, batch ``--train-batch``, linear decay.
  Keys and values are computed for every position (their LoRA is trained too), but the
  queries, the MLP, the final norm and the 49,152-word output layer only at the
  positions that predict response tokens: that is the whole loss, and it makes one run
  cost seconds of CPU per hundred records instead of minutes. Checked against the full
  model's logits (float32) on two records;
- evaluation on the clean held-out records: mean response cross-entropy, token
  accuracy and exact match (every teacher-forced arg-max right, EOS included: what
  greedy decoding would produce), each macro-averaged over the tasks;
- methods: Random, DLC+FlexRand (gamma 0.5, the paper's), ``auto`` (flags the broken
  pairs on DLC score / response-only loss, as ``skdlc prune-instructions`` does) on the
  whole set (the old CLI default), per prompt cluster (``auto_cluster``: the CLI default
  on this pool with the category field removed: the clusters ``find_instruction_groups`` finds, the
  draw over the whole set) and per task (``auto_task``: ``--category-field``, or the
  default when the field is there); the full pool; seeds pair the subset draw, the LoRA
  initialisation and the data order.
"""

from __future__ import annotations

import copy
import hashlib
import time

import numpy as np
import torch
import torch.nn.functional as F
from _instruction_report import NAMES  # the methods (keys) and their labels on the page

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def add_arguments(ap) -> None:
    g = ap.add_argument_group("downstream (LoRA)")
    g.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    g.add_argument("--keeps", type=float, nargs="+", default=[0.5, 0.3])
    g.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.2],
                   help="broken shares of the pool to fine-tune on")
    g.add_argument("--methods", nargs="+", default=["random", "flexrand", "auto", "auto_task"],
                   choices=[m for m in NAMES if m != "full"])
    g.add_argument("--full-seeds", type=int, nargs="*", default=[0],
                   help="seeds of the full-pool runs")
    g.add_argument("--epochs", type=int, default=2)
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--rank", type=int, default=8)
    g.add_argument("--train-batch", type=int, default=8)


def _rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class LastLayer(torch.nn.Module):
    """The last decoder layer (with LoRA), the final norm and lm_head of a Llama model."""

    def __init__(self, model, seed: int, rank: int):
        super().__init__()
        from peft import LoraConfig, inject_adapter_in_model

        torch.manual_seed(seed)
        layer = copy.deepcopy(model.model.layers[-1]).float()
        cfg = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=TARGETS)
        self.layer = inject_adapter_in_model(cfg, layer)
        self.norm = copy.deepcopy(model.model.norm).float()
        self.rotary = model.model.rotary_emb
        self.lm_head = model.lm_head  # frozen, shared (float32)
        for name, p in self.named_parameters():
            p.requires_grad_("lora_" in name)
        a = self.layer.self_attn
        c = model.config
        self.n_heads, self.n_kv = c.num_attention_heads, c.num_key_value_heads
        self.head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        self.scaling = getattr(a, "scaling", self.head_dim ** -0.5)

    def _attend(self, h, c):
        """Attention output at the ``c`` positions that predict the last ``c`` tokens."""
        t = h.shape[0]
        a, hd = self.layer.self_attn, self.head_dim
        x = self.layer.input_layernorm(h)
        qpos = torch.arange(t - c - 1, t - 1)
        cos, sin = self.rotary(h[None], torch.arange(t)[None])
        cos, sin = cos[0].float(), sin[0].float()
        k = a.k_proj(x).view(t, self.n_kv, hd).transpose(0, 1)
        v = a.v_proj(x).view(t, self.n_kv, hd).transpose(0, 1)
        q = a.q_proj(x[qpos]).view(c, self.n_heads, hd).transpose(0, 1)
        k = k * cos + _rotate_half(k) * sin
        q = q * cos[qpos] + _rotate_half(q) * sin[qpos]
        rep = self.n_heads // self.n_kv
        k, v = k.repeat_interleave(rep, 0), v.repeat_interleave(rep, 0)
        w = (q @ k.transpose(1, 2)) * self.scaling  # (heads, c, t)
        w = w.masked_fill(torch.arange(t)[None, :] > qpos[:, None], float("-inf"))
        o = (w.softmax(-1) @ v).transpose(0, 1).reshape(c, -1)
        return h[qpos] + a.o_proj(o)

    def logits(self, states, n_resp):
        """Logits predicting each record's response tokens, concatenated."""
        h = torch.cat([self._attend(s.float(), c) for s, c in zip(states, n_resp)])
        h = h + self.layer.mlp(self.layer.post_attention_layernorm(h))
        return self.lm_head(self.norm(h))

    def record_losses(self, states, ids, n_resp):
        """Per-record mean response CE, token accuracy and exact match."""
        logits = self.logits(states, n_resp)
        tgt = torch.cat([torch.as_tensor(x[len(x) - c:]) for x, c in zip(ids, n_resp)])
        ce = F.cross_entropy(logits, tgt, reduction="none")
        right = (logits.argmax(-1) == tgt).float()
        seg = torch.repeat_interleave(torch.arange(len(n_resp)), torch.as_tensor(n_resp))
        n = torch.as_tensor(n_resp, dtype=torch.float32)
        loss = torch.zeros(len(n_resp)).index_add(0, seg, ce) / n
        acc = torch.zeros(len(n_resp)).index_add(0, seg, right) / n
        return loss, acc, (acc == 1).float()


def check_against_model(model, ids, n_resp):
    """Max |logit difference| of LastLayer (no LoRA update yet) vs the full model."""
    top = LastLayer(model, 0, 4).eval()
    got = {}
    hook = model.model.layers[-1].register_forward_pre_hook(
        lambda m, a, kw: got.__setitem__("h", (a[0] if a else kw["hidden_states"])[0]),
        with_kwargs=True)
    err = 0.0
    try:
        with torch.no_grad():
            for x, c in zip(ids, n_resp):
                full = model(torch.tensor([x])).logits[0, len(x) - c - 1:len(x) - 1]
                err = max(err, float((top.logits([got["h"]], [c]) - full).abs().max()))
    finally:
        hook.remove()
    return err


def train(model, states, ids, n_resp, subset, *, seed, args):
    top = LastLayer(model, seed, args.rank)
    params = [p for p in top.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    bs = args.train_batch
    steps = args.epochs * int(np.ceil(len(subset) / bs))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / max(steps, 1))
    rng = np.random.default_rng(seed)
    top.train()
    for _ in range(args.epochs):
        order = rng.permutation(np.asarray(subset))
        for s in range(0, len(order), bs):
            idx = [int(i) for i in order[s:s + bs]]
            loss, _, _ = top.record_losses([states[i] for i in idx], [ids[i] for i in idx],
                                           [n_resp[i] for i in idx])
            opt.zero_grad()
            loss.mean().backward()
            opt.step()
            sched.step()
    return top.eval()


@torch.no_grad()
def evaluate(top, states, ids, n_resp, tasks, batch=32):
    out = [np.zeros(len(ids)) for _ in range(3)]
    for s in range(0, len(ids), batch):
        r = list(range(s, min(len(ids), s + batch)))
        vals = top.record_losses([states[i] for i in r], [ids[i] for i in r], [n_resp[i] for i in r])
        for o, v in zip(out, vals):
            o[r] = v.numpy()
    tasks = np.asarray(tasks)
    names = sorted(set(tasks))
    macro = {k: float(np.mean([v[tasks == t].mean() for t in names]))
             for k, v in zip(("loss", "token_acc", "exact_match"), out)}
    macro["loss_per_task"] = {t: float(out[0][tasks == t].mean()) for t in names}
    return macro


def part_downstream(raw, args, save):
    from instruction_selection import all_records, broken_view, unmasked_pass

    from skdlc import estimate_broken_share, select_instructions
    from skdlc._llm import load_causal_lm

    ds = raw.setdefault("downstream", {"runs": {}, "timings": {}})
    recs, n_pool, variants = all_records(args)
    t = time.perf_counter()
    _, states, ids, n_resp, _ = unmasked_pass(recs, args)  # cached by the scores part
    ds["timings"]["load_states_s"] = time.perf_counter() - t
    t = time.perf_counter()
    model = load_causal_lm("SmolLM2-135M-Instruct", dtype="float32",
                           device=torch.device("cpu")).model.eval()
    test_rows = list(range(n_pool + len(variants), len(recs)))
    ds["check_max_abs_logit_diff"] = check_against_model(
        model, [ids[i] for i in test_rows[:2]], [n_resp[i] for i in test_rows[:2]])
    ds["timings"]["model_and_check_s"] = time.perf_counter() - t
    tasks_te = [recs[i]["category"] for i in test_rows]
    st_te = [states[i] for i in test_rows]
    ids_te, nr_te = [ids[i] for i in test_rows], [n_resp[i] for i in test_rows]
    t = time.perf_counter()
    ds["zero_shot"] = evaluate(LastLayer(model, 0, args.rank).eval(), st_te, ids_te, nr_te, tasks_te)
    ds["timings"]["zero_shot_eval_s"] = time.perf_counter() - t
    ds["setup"] = {k: getattr(args, k) for k in ("epochs", "lr", "rank", "train_batch", "seeds",
                                                 "keeps", "rates", "methods", "full_seeds")}
    print(f"check {ds['check_max_abs_logit_diff']:.2e}; zero-shot {ds['zero_shot']['loss']:.4f}",
          flush=True)
    save()

    tasks_pool = np.array([r["category"] for r in recs[:n_pool]])
    found = {}
    if {"auto_cluster", "auto_input_cluster"} & set(args.methods):
        from _instruction_detect import groupings

        g = groupings(recs[:n_pool], tasks_pool)[0]  # what the CLI finds without the field
        found = {"auto_cluster": g["prompt clusters [new default]"],
                 "auto_input_cluster": g["input clusters"]}
    plan = []
    for rate in args.rates:
        for keep in args.keeps:
            plan += [(rate, m, keep, s) for s in args.seeds for m in args.methods]
        plan += [(rate, "full", 1.0, s) for s in args.full_seeds]
    by_subset = {r["subset_hash"]: {k: r[k] for k in ("loss", "token_acc", "exact_match",
                                                     "loss_per_task")}
                 for r in ds["runs"].values()}
    for rate, method, keep, seed in plan:
        key = f"{rate:g}|{method}|{keep:g}|{seed}"
        view = broken_view(raw, rate)
        rows = np.arange(n_pool)  # the pool at this rate: the broken variants replace rows
        for k, i in enumerate(variants[:int(view["broken"].sum())]):
            rows[i] = n_pool + k
        scores = view["losses"].mean(1)
        if method == "full":
            subset = np.arange(n_pool)
        else:  # "auto" flags broken pairs on the CLI's signal, DLC score / response-only loss
            groups = tasks_pool if method == "auto_task" else None
            broken = scores / view["alone"][:, 0]
            if method in found:  # estimated per cluster, drawn over the whole set
                broken = estimate_broken_share(broken, groups=found[method])
            subset = select_instructions(scores, keep, strategy=method.split("_")[0],
                                         gamma=0.5, random_state=seed, groups=groups,
                                         broken=broken)
        h = hashlib.sha256(np.asarray(rows[subset]).tobytes() + str(seed).encode()).hexdigest()[:16]
        if key in ds["runs"] and ds["runs"][key].get("subset_hash") == h:
            continue
        t = time.perf_counter()
        if h in by_subset:  # the same records and seed as a finished run (e.g. auto == random)
            ev = dict(by_subset[h], reused=True)
        else:
            top = train(model, states, ids, n_resp, rows[subset], seed=seed, args=args)
            ev = evaluate(top, st_te, ids_te, nr_te, tasks_te)
        ev.update(rate=rate, method=method, keep=keep, seed=seed, n_kept=int(len(subset)),
                  n_broken_kept=int(view["broken"][subset].sum()), subset_hash=h,
                  train_s=time.perf_counter() - t,
                  n_tokens=int(sum(len(ids[i]) for i in rows[subset])))
        by_subset[h] = {k: v for k, v in ev.items() if k in ("loss", "token_acc", "exact_match",
                                                             "loss_per_task")}
        ds["runs"][key] = ev
        print(f"{key}: loss {ev['loss']:.4f} acc {ev['token_acc']:.3f} EM {ev['exact_match']:.3f} "
              f"broken kept {ev['n_broken_kept']} ({ev['train_s']:.0f} s)", flush=True)
        save()
