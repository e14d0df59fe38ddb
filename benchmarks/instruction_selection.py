"""Instruction data: finding broken pairs, and a selection default that does no harm.

    nice -n 10 python benchmarks/instruction_selection.py --parts scores detect select
    nice -n 10 python benchmarks/instruction_selection.py --parts downstream   # LoRA runs
    python benchmarks/instruction_selection.py --parts report                # page only

Parts (each caches what it computes; a re-run of a finished part is free):

- ``scores``: per-record response losses of a pool of OpenAI Evals records
  (``--n-train`` per task of ``INSTRUCTION_TASK_MIX``) and of its broken variants
  (``benchmarks/_broken_pairs.py``: swapped, truncated and wrongly formatted
  responses), with :class:`skdlc.InstructionScorer` at the default path (0, 0.1, 0.2,
  0.3), plus the loss of the response alone at the same ratios (the same template with an
  empty instruction and input: ``InstructionScorer.response_only_losses``). Cached per
  chunk of records and per ratio with ``memory=``.
- ``detect``: AUROC for finding the broken pairs at 10% and 20% broken, overall, per
  task and per kind of break, for the DLC score, the unmasked loss, the response length,
  the response-alone loss and its difference with the conditional loss.
- ``select``: the selection rules without training: share of broken pairs kept, over
  many draws; the estimated broken share of ``skdlc.estimate_broken_share``.
- ``downstream``: LoRA fine-tuning on the kept records (``_instruction_lora.py``).
- ``report``: ``--out`` (markdown) from the raw JSON beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _plant_broken import broken_plan  # noqa: E402
from llm_pruning_lora import compact_template, load_split  # noqa: E402

from skdlc._paths import cache_dir  # noqa: E402

RATIOS = (0.0, 0.1, 0.2, 0.3)
RATES = (0.1, 0.2)


# ---------------------------------------------------------------------- scores
def _scorer(ratios, template, args):
    from skdlc import InstructionScorer

    return InstructionScorer(mask_ratios=list(ratios), template=template,
                             max_length=args.max_length, batch_size=args.batch_size,
                             dtype=args.dtype, device="cpu", memory=args.cache,
                             verbose=False).fit()


def _chunked_losses(records, ratios, template, args, chunk=120, response_only=False):
    """Per-ratio losses in chunks (each cached with ``memory=``); ``response_only``: the
    outputs alone, as ``InstructionScorer.response_only_losses`` (empty instruction and
    input in the same template), at every ratio."""
    scorer = _scorer(ratios, template, args)
    out = []
    for s in range(0, len(records), chunk):
        t = time.perf_counter()
        part = records[s:s + chunk]
        if response_only:
            out.append(scorer._losses([("", "", r["output"]) for r in part], list(ratios),
                                      record=False))
        else:
            out.append(scorer.path_losses(part))
        print(f"  {'response only' if response_only else 'with prompt'} ratios {ratios}: "
              f"{s + len(out[-1])}/{len(records)} ({time.perf_counter() - t:.0f} s)", flush=True)
    return np.concatenate(out)


def unmasked_pass(records, args, chunk=120):
    """Unmasked response losses and the hidden states entering the last decoder layer.

    The same computation as ``InstructionScorer.path_losses`` at ratio 0 (the library's
    encoding and batch loss), with a hook keeping the input of the last layer for the
    LoRA part. Cached per chunk in ``--cache``/states.
    """
    import hashlib

    import torch

    from skdlc._encoding import _batches
    from skdlc._response_loss import _batch_response_losses, _logits_keep_kwarg

    scorer = _scorer([0.0], compact_template, args)
    model, folder = scorer.model_, Path(args.cache) / "states"
    folder.mkdir(parents=True, exist_ok=True)
    last = model.model.layers[-1]
    grabbed = {}

    def hook(module, a, kw):
        grabbed["h"] = (a[0] if a else kw["hidden_states"]).detach()

    losses, states, ntok = [], [], 0
    for s in range(0, len(records), chunk):
        t = time.perf_counter()
        part = records[s:s + chunk]
        enc = scorer.encode(part)
        ntok += int(enc.lengths.sum())
        key = hashlib.sha256(json.dumps([scorer.model_fingerprint_, args.dtype, args.max_length,
                                         enc.ids, enc.n_response]).encode()).hexdigest()[:24]
        path = folder / f"{key}.pt"
        if path.exists():
            got = torch.load(path)
        else:
            loss, st = np.zeros(len(part)), [None] * len(part)
            handle = last.register_forward_pre_hook(hook, with_kwargs=True)
            try:
                with torch.inference_mode():
                    for idx in _batches(enc.lengths, args.batch_size):
                        seqs = [enc.ids[i] for i in idx]
                        loss[idx] = _batch_response_losses(
                            model, seqs, [enc.n_response[i] for i in idx],
                            pad_id=scorer._pad_id(), device=torch.device("cpu"),
                            keep_kw=_logits_keep_kwarg(model)).double().numpy()
                        h = grabbed.pop("h")
                        for j, i in enumerate(idx):  # left-padded: the last len(seq) rows
                            st[i] = h[j, h.shape[1] - len(seqs[j]):].to(torch.bfloat16).clone()
            finally:
                handle.remove()
            got = {"loss": torch.from_numpy(loss), "states": st, "ids": enc.ids, "n_response": enc.n_response}
            torch.save(got, path)
        losses.append(np.asarray(got["loss"], dtype=np.float64))
        states += got["states"]
        print(f"  unmasked + states: {s + len(part)}/{len(records)} "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
    ids = [list(x) for x in scorer.encode(records).ids]
    n_resp = list(scorer.encode(records).n_response)
    return np.concatenate(losses), states, ids, n_resp, ntok


def pool_and_variants(args):
    """The clean pool, the held-out set, the broken plan and the broken variants."""
    pool, test = load_split(args.n_train, args.n_eval)
    plan = broken_plan(pool, seed=0)
    m = int(np.floor(max(RATES) * len(pool) + 0.5))
    variants = [int(i) for i in plan["order"][:m]]
    broken_recs = [{**pool[i], "output": plan["output"][i]} for i in variants]
    return pool, test, plan, variants, broken_recs


def all_records(args):
    """pool + broken variants + held-out: the order of every per-record array."""
    pool, test, plan, variants, broken_recs = pool_and_variants(args)
    return pool + broken_recs + test, len(pool), variants


def part_scores(args, raw):
    recs, n_pool, variants = all_records(args)
    scored = recs[:n_pool + len(variants)]  # the held-out records get the unmasked pass only
    timings = {}
    t = time.perf_counter()
    l0, _, ids, n_resp, ntok = unmasked_pass(recs, args)
    timings["unmasked_and_states_s"] = time.perf_counter() - t
    t = time.perf_counter()
    lm = _chunked_losses(scored, RATIOS[1:], compact_template, args)
    timings["masked_s"] = time.perf_counter() - t
    t = time.perf_counter()
    alone = _chunked_losses(scored, RATIOS, compact_template, args, response_only=True)
    timings["response_only_s"] = time.perf_counter() - t
    m = len(scored)
    raw["scores"] = {
        "n_pool": n_pool, "n_test": len(recs) - m, "variants": variants,
        "losses": np.column_stack([l0[:m], lm]).round(6).tolist(),
        "zero_shot_test": l0[m:].round(6).tolist(),
        "alone": alone.round(6).tolist(), "n_response_tokens": n_resp[:m],
        "n_tokens": [len(x) for x in ids[:m]],
        "tokens_per_pass": ntok, "timings": timings, "dtype": args.dtype,
        "load_avg": os.getloadavg(),
    }
    if args.dtype != "float32":
        raw["scores"]["dtype_check"] = dtype_check(scored, args)


def dtype_check(recs, args, n=48):
    """Losses of ``n`` records in float32 vs ``args.dtype``, at ratios 0 and 0.2."""
    from scipy.stats import spearmanr

    sub = recs[:: max(1, len(recs) // n)][:n]
    a32 = argparse.Namespace(**{**vars(args), "dtype": "float32"})
    x = _chunked_losses(sub, [0.0, 0.2], compact_template, a32)
    y = _chunked_losses(sub, [0.0, 0.2], compact_template, args)
    return {"n": len(sub), "max_abs_diff": np.abs(x - y).max(0).tolist(),
            "spearman": [float(spearmanr(x[:, j], y[:, j])[0]) for j in range(2)]}


def broken_view(raw, rate):
    """Per-record arrays of the pool at ``rate`` broken: losses, baselines, labels."""
    sc = raw["scores"]
    n = sc["n_pool"]
    L = np.asarray(sc["losses"])
    alone = np.asarray(sc["alone"]).reshape(len(L), -1)
    nresp = np.asarray(sc["n_response_tokens"], dtype=float)
    m = int(np.floor(rate * n + 0.5))
    rows = np.arange(n)
    for k, i in enumerate(sc["variants"][:m]):
        rows[i] = n + k
    broken = np.zeros(n, dtype=bool)
    broken[sc["variants"][:m]] = True
    return {"losses": L[rows], "alone": alone[rows], "n_resp": nresp[rows], "broken": broken}


# ---------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", nargs="+", default=["scores", "detect", "select", "report"],
                    choices=["scores", "detect", "select", "downstream", "report"])
    ap.add_argument("--n-train", type=int, default=200, help="pool records per task")
    ap.add_argument("--n-eval", type=int, default=30, help="held-out records per task")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"],
                    help="scoring dtype (bfloat16: about twice as fast on this CPU)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; on a loaded machine 1 is several times faster than 2 "
                         "(threads wait for each other)")
    ap.add_argument("--cache", default=str(cache_dir("benchmarks", "instruction_selection")))
    ap.add_argument("--out", default=str(HERE / "results" / "instruction_selection.md"))
    from _instruction_lora import add_arguments
    add_arguments(ap)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    raw_path = out.parent / "raw" / (out.stem + ".json")
    raw = json.loads(raw_path.read_text()) if raw_path.exists() else {}
    cmd = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0]),
                                                          *(argv or sys.argv[1:])])
    raw.setdefault("commands", {})

    def save():
        raw_path.parent.mkdir(parents=True, exist_ok=True)
        raw_path.write_text(json.dumps(raw, indent=1))

    for part in args.parts:
        t = time.perf_counter()
        if part == "scores":
            part_scores(args, raw)
        elif part == "detect":
            from _instruction_detect import part_detect
            part_detect(raw, RATES, args)
        elif part == "select":
            from _instruction_detect import part_select
            part_select(raw, RATES, args)
        elif part == "downstream":
            from _instruction_lora import part_downstream
            part_downstream(raw, args, save)
        elif part == "report":
            from _instruction_report import write_page
            out.write_text(write_page(raw))
            print(out.read_text())
            continue
        raw.setdefault("part_seconds", {})[part] = time.perf_counter() - t
        done = raw["commands"].get(part, [])
        done = [done] if isinstance(done, str) else done
        raw["commands"][part] = done + ([cmd] if cmd not in done else [])
        raw.setdefault("args", {})[part] = {k: v for k, v in vars(args).items() if k != "parts"}
        save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
