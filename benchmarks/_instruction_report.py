"""The results page of benchmarks/instruction_selection.py, from its raw JSON."""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

from skdlc.datasets import INSTRUCTION_TASK_MIX

NAMES = {"random": "Random", "flexrand": "DLC+FlexRand (gamma 0.5, the paper's)",
         "auto": "**new default** (`auto`)", "auto_task": "`auto` per task (`--category-field`)",
         "easy": "DLC+easy", "full": "full pool (100%)"}


def _f(v, fmt=".3f"):
    return "n/a" if v is None else format(v, fmt)


def _ms(vals, fmt=".4f"):
    a = np.asarray(vals, dtype=float)
    sd = a.std(ddof=1) if a.size > 1 else 0.0
    return f"{a.mean():{fmt}} ± {sd:{fmt}}"


def detection(raw) -> list[str]:
    d = raw["detect"]
    rates = [k for k in d if k != "0"]
    names = list(d[rates[0]]["auroc"])
    lines = ["## 1. Finding the broken pairs (AUROC; 0.5 = chance, higher = the broken pairs "
             "score higher)", "",
             "| score | " + " | ".join(f"{float(r):.0%} broken" for r in rates)
             + " | swapped (20%) | truncated (20%) | wrong format (20%) |",
             "|---|" + "---:|" * (len(rates) + 3)]
    last = d[rates[-1]]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(_f(d[r]["auroc"][n]) for r in rates) + " | "
                     + " | ".join(_f(last["per_kind"][n][k]) for k in ("swap", "truncate", "format"))
                     + " |")
    tasks = list(last["per_task"][names[0]])
    lines += ["", f"Per task, {float(rates[-1]):.0%} broken (broken / records of the task: "
              + ", ".join(f"{t.split('/')[0]} {last['broken_per_task'][t]}" for t in tasks) + "):", "",
              "| score | " + " | ".join(t.split("/")[0] for t in tasks) + " |",
              "|---|" + "---:|" * len(tasks)]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(_f(last["per_task"][n][t]) for t in tasks) + " |")
    lines += ["", "Estimated broken share (`skdlc.estimate_broken_share`: a two-component mixture "
              "on the log of the signal, per group) and the precision / recall of the flagged "
              "records; whole set = the CLI without `--category-field`:", "",
              "| signal, groups | " + " | ".join(f"{float(r):.0%} broken: estimate / precision / recall"
                                                  for r in ["0", *rates]) + " |",
              "|---|" + "---:|" * (len(rates) + 1)]
    for key in d["0"]["estimate"]:
        cells = []
        for r in ["0", *rates]:
            e = d[r]["estimate"][key]
            cells.append(f"{e['share']:.3f} / {_f(e['precision'], '.2f')} / {_f(e['recall'], '.2f')}")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return lines


def selection(raw) -> list[str]:
    s = raw["select"]
    rows = {}
    for key, v in s.items():
        rate, keep, rule = key.split("|")
        rows.setdefault((keep, rule), {})[rate] = v
    rates = sorted({k.split("|")[0] for k in s}, key=float)
    lines = ["## 2. What each rule keeps (no training; mean over 50 draws)", "",
             "Share of broken pairs among the kept records, and the largest drift of a task's "
             "share of the kept set from its share of the pool (1/6 each). `auto` leaves out "
             "what `estimate_broken_share` flags on the signal named and draws the rest at "
             "random; rules without \"per task\" see no categories (the CLI's default):", "",
             "| keep | rule | " + " | ".join(f"broken kept, {float(r):.0%} broken" for r in rates)
             + " | task drift, clean | task drift, 20% broken |",
             "|---:|---|" + "---:|" * (len(rates) + 2)]
    for (keep, rule), v in sorted(rows.items(), key=lambda kv: -float(kv[0][0])):
        lines.append(f"| {float(keep):.0%} | {rule} | "
                     + " | ".join(f"{v[r]['broken_kept']:.3f}" for r in rates)
                     + f" | {v['0']['max_task_drift']:.3f} | {v[rates[-1]]['max_task_drift']:.3f} |")
    return lines


def downstream(raw) -> list[str]:
    ds = raw["downstream"]
    runs = list(ds["runs"].values())
    st = ds["setup"]
    z = ds["zero_shot"]
    lines = ["## 3. Fine-tuning on the kept records (LoRA, SmolLM2-135M-Instruct, CPU)", "",
             f"- LoRA rank {st['rank']} on the last decoder layer, {st['epochs']} epochs, lr "
             f"{st['lr']}, batch {st['train_batch']}; seeds {st['seeds']} (full pool: "
             f"{st['full_seeds']}); held-out: {raw['scores']['n_test']} clean records, macro "
             "over the 6 tasks",
             f"- partial forward checked against the full model: max |logit difference| "
             f"{ds['check_max_abs_logit_diff']:.1e}",
             "- timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in ds["timings"].items())
             + f"; fine-tuning runs {sum(r['train_s'] for r in runs):.0f} s in all "
             f"({np.mean([r['train_s'] for r in runs if not r.get('reused')]):.1f} s each)", "",
             "| pool | keep | method | runs | held-out loss | token accuracy | exact match | "
             "broken kept |", "|---|---:|---|---:|---:|---:|---:|---:|",
             f"| | | zero-shot (no fine-tuning) | | {z['loss']:.4f} | {z['token_acc']:.3f} | "
             f"{z['exact_match']:.3f} | |"]
    groups = {}
    for r in runs:
        groups.setdefault((r["rate"], r["keep"], r["method"]), []).append(r)
    order = ["random", "flexrand", "easy", "auto", "auto_task", "full"]
    keys = sorted(groups, key=lambda k: (k[0], -k[1], order.index(k[2])))
    for key in keys:
        rs = groups[key]
        rate, keep, m = key
        lines.append(f"| {'clean' if rate == 0 else f'{rate:.0%} broken'} | {keep:.0%} | "
                     f"{NAMES[m]} | {len(rs)} | {_ms([r['loss'] for r in rs])} | "
                     f"{_ms([r['token_acc'] for r in rs], '.3f')} | "
                     f"{_ms([r['exact_match'] for r in rs], '.3f')} | "
                     f"{np.mean([r['n_broken_kept'] for r in rs]):.0f} |")
    lines += ["", "Paired by seed against Random (held-out loss; negative = better than Random). "
              "Sign test: one-sided binomial on the seeds where the method is better; "
              "seed spread = standard deviation of Random's loss over the seeds:", "",
              "| pool | keep | method | difference per seed | mean | better in | sign-test p | "
              "Random's seed spread | beats Random by more than the spread in every seed |",
              "|---|---:|---|---|---:|---:|---:|---:|---|"]
    verdicts = {}
    for key in keys:
        rate, keep, m = key
        if m in ("random", "full") or (rate, keep, "random") not in groups:
            continue
        rnd = {r["seed"]: r["loss"] for r in groups[(rate, keep, "random")]}
        mine = {r["seed"]: r["loss"] for r in groups[key]}
        seeds = sorted(set(rnd) & set(mine))
        diff = np.array([mine[s] - rnd[s] for s in seeds])
        spread = float(np.std(list(rnd.values()), ddof=1)) if len(rnd) > 1 else 0.0
        wins = int((diff < 0).sum())
        p = binomtest(wins, len(diff), 0.5, alternative="greater").pvalue if len(diff) else 1.0
        clear = bool((diff < -spread).all())
        verdicts[key] = (diff, spread, clear)
        lines.append(f"| {'clean' if rate == 0 else f'{rate:.0%} broken'} | {keep:.0%} | {NAMES[m]} | "
                     + ", ".join(f"{x:+.4f}" for x in diff) + f" | {diff.mean():+.4f} | "
                     f"{wins}/{len(diff)} | {p:.3f} | {spread:.4f} | {'yes' if clear else 'no'} |")
    lines += ["", "Held-out loss per task (mean over seeds):", "",
              "| pool | keep | method | " + " | ".join(t.split("/")[0] for t in INSTRUCTION_TASK_MIX) + " |",
              "|---|---:|---|" + "---:|" * len(INSTRUCTION_TASK_MIX),
              "| | | zero-shot | " + " | ".join(f"{z['loss_per_task'][t]:.3f}" for t in INSTRUCTION_TASK_MIX) + " |"]
    for key in keys:
        rs = groups[key]
        rate, keep, m = key
        lines.append(f"| {'clean' if rate == 0 else f'{rate:.0%} broken'} | {keep:.0%} | {m} | "
                     + " | ".join(f"{np.mean([r['loss_per_task'][t] for r in rs]):.3f}"
                                  for t in INSTRUCTION_TASK_MIX) + " |")
    raw["_verdicts"] = verdicts
    return lines


def _mean_diff(raw, rate, method):
    runs = raw.get("downstream", {}).get("runs", {}).values()
    rnd = {r["seed"]: r["loss"] for r in runs if r["rate"] == rate and r["method"] == "random"
           and r["keep"] == 0.5}
    me = {r["seed"]: r["loss"] for r in runs if r["rate"] == rate and r["method"] == method
          and r["keep"] == 0.5}
    d = np.array([me[k] - rnd[k] for k in sorted(set(rnd) & set(me))])
    spread = float(np.std(list(rnd.values()), ddof=1)) if len(rnd) > 1 else float("nan")
    return d, spread


def findings(raw) -> list[str]:
    """The page's conclusions, every number read from the raw results."""
    d = raw.get("detect")
    if not d:
        return []
    a20 = d["0.2"]["auroc"]
    names = list(a20)
    e = {r: d[r]["estimate"] for r in ("0", "0.1", "0.2")}
    lines = ["## Findings", "",
             f"- **The loss does not find broken pairs in this mix; the loss relative to the "
             f"response's loss without its instruction does.** At 20% broken the DLC score's "
             f"AUROC is {a20[names[0]]:.3f} and the unmasked loss's {a20[names[1]]:.3f}: "
             "one- and two-token answers carry a large, nearly constant loss on the "
             "end-of-sequence token, and a wrong-format answer (a longer, fluent sentence) has "
             "a *lower* mean loss per token than the right one. Dividing by the response-only "
             f"loss (the instruction-following difficulty of Li et al., 2024) gives "
             f"{a20[names[6]]:.3f} (unmasked), {a20[names[7]]:.3f} (DLC score, the signal the "
             f"CLI uses) and {a20[names[8]]:.3f} (the ratio averaged over the masked path).",
             f"- **Estimating the broken share needs the task.** Per task, the mixture on "
             f"DLC / response-only flags {e['0.2']['DLC / response-only, per task']['share']:.1%} "
             f"at 20% broken (precision "
             f"{e['0.2']['DLC / response-only, per task']['precision']:.2f}, recall "
             f"{e['0.2']['DLC / response-only, per task']['recall']:.2f}), "
             f"{e['0.1']['DLC / response-only, per task']['share']:.1%} at 10% and "
             f"{e['0']['DLC / response-only, per task']['share']:.1%} on the clean pool. On the "
             "whole mixed set (the CLI without `--category-field`) the six tasks' own levels "
             "make a two-mode mixture meaningless (the high mode holds about half the records), "
             "so the guard flags nothing at 0%, 10% and 20%: the default then is exactly Random.",
             ]
    ds = raw.get("downstream", {}).get("runs")
    if ds:
        d0, s0 = _mean_diff(raw, 0.0, "auto")
        d2, s2 = _mean_diff(raw, 0.2, "auto")
        t2, _ = _mean_diff(raw, 0.2, "auto_task")
        t0, _ = _mean_diff(raw, 0.0, "auto_task")
        f2, _ = _mean_diff(raw, 0.2, "flexrand")
        lines.append(
            f"- **Downstream (keep 50%, {len(d2)} seeds).** The default, with no categories, "
            f"is Random in every run here (difference {d2.mean():+.4f} with 20% broken, "
            f"{d0.mean():+.4f} clean; Random's seed spread {s2:.4f} and {s0:.4f}): no harm, "
            "and no gain. "
            + (f"With the task as category it leaves out the flagged pairs: "
               f"{t2.mean():+.4f} nats against Random with 20% broken (better in "
               f"{int((t2 < 0).sum())} of {len(t2)} seeds), {t0.mean():+.4f} clean. "
               if len(t2) else "")
            + f"The paper's FlexRand: {f2.mean():+.4f} with 20% broken.")
        lines.append(
            "- **Done-when status.** Met: the detection and downstream tables and their "
            "commands; `prune-instructions` writes the estimated broken share and the likely "
            "broken records (summary JSON, stderr, report). Clean data: the default is not "
            "worse than Random (identical). **Missed**: with 20% broken pairs the default "
            "`skdlc prune-instructions --keep 0.5` (no `--category-field`) does not beat "
            "Random, because its whole-set estimate flags nothing in this six-task mix; tried: "
            "the mixture on the DLC score, on DLC / response-only, on the unmasked ratio, on "
            "the path-averaged ratio and on the difference (table in section 1 and "
            "benchmarks/instruction_selection.py's `detect` part): on the whole set each "
            "either flags nothing at 20% broken, or flags 41-49% of the pool with precision "
            "0.40-0.41 there (and 35-49% of the pool at 0% or 10% broken). Per task, the "
            "unmasked ratio and the difference reach a better recall (0.63-0.64 at precision "
            "0.93-0.94) than the CLI's DLC / response-only (0.48 at 0.98).")
    return lines


def write_page(raw) -> str:
    sc = raw["scores"]
    cmds = raw.get("commands", {})
    lines = [
        "# Instruction data: finding broken pairs, and a selection default that does no harm",
        "",
        "Commands (each part caches what it computes; re-running a finished part is free):",
        "",
        *[f"- {part}: `nice -n 10 {c}`" for part, c in cmds.items()],
        "",
        f"- pool: {sc['n_pool']} OpenAI Evals records, {sc['n_pool'] // 6} from each of 6 tasks "
        f"({', '.join(INSTRUCTION_TASK_MIX)}); held-out: {sc['n_test']} clean records of the same "
        "tasks; template `{instruction}\\n\\n{input}\\n\\nAnswer: ` + response + EOS for "
        "scoring, training and evaluation",
        f"- broken pairs (benchmarks/_plant_broken.py): {len(sc['variants'])} of the pool "
        "records, a third each: the response of another record (most from another task), "
        "the response cut to a few tokens (a one-character answer becomes `.`), the right "
        "answer in the wrong format (JSON, a chatty sentence, Spanish, upper-case markup); "
        "the 10% set is the first half of the 20% set",
        f"- scores: `InstructionScorer` on SmolLM2-135M-Instruct, the default path (ratios 0, "
        f"0.1, 0.2, 0.3, layer-wise, linear layers), {sc['dtype']} on the CPU, 1 torch thread; "
        f"{sc['tokens_per_pass']:,} tokens per pass over pool + broken variants + held-out; "
        "timings of the last run of this part (cached chunks are not recomputed; the first "
        "run took about an hour of wall time on the shared cores): "
        + ", ".join(f"{k} {v:.0f} s" for k, v in sc["timings"].items())
        + f" (load average {sc['load_avg'][0]:.1f} on 2 shared cores)",
    ]
    if "dtype_check" in sc:
        c = sc["dtype_check"]
        lines.append(f"- {sc['dtype']} against float32 on {c['n']} records: Spearman "
                     f"{c['spearman'][0]:.4f} (ratio 0) and {c['spearman'][1]:.4f} (ratio 0.2), "
                     f"largest |difference| {c['max_abs_diff'][0]:.3f} and {c['max_abs_diff'][1]:.3f} nats")
    lines.append("")
    lines += findings(raw) + [""]
    if "detect" in raw:
        lines += detection(raw) + [""]
    if "select" in raw:
        lines += selection(raw) + [""]
    if "downstream" in raw and raw["downstream"].get("runs"):
        lines += downstream(raw) + [""]
    lines += ["## 4. GPU", "",
              "`benchmarks/instruction_gpu.py` runs the same comparison with LoRA on all 30 "
              "layers, a pool of 3,600 records (600 per task), keep 50% and 30%, 3 seeds and a "
              "multiple-choice accuracy on the five closed-answer tasks. **It was not run**: no "
              "GPU was lent to this task. Its docstring gives the device-tool recipe.", ""]
    raw.pop("_verdicts", None)
    return "\n".join(lines)
