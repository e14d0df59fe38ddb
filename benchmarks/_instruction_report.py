"""The results page of benchmarks/instruction_selection.py, from its raw JSON."""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

from skdlc.datasets import INSTRUCTION_TASK_MIX

NAMES = {"random": "Random", "flexrand": "DLC+FlexRand (gamma 0.5, the paper's)",
         "auto": "`auto` on the whole set (old default)",
         "auto_cluster": "**new default**, no category field (`auto` per prompt cluster)",
         "auto_input_cluster": "`auto` per cluster of the inputs alone (harder grouping)",
         "auto_task": "`auto` per task (`--category-field`, or the default with the field)",
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
              "records; whole set = the old CLI default; prompt clusters = the new default "
              "on this pool with the category field removed; input clusters = clusters of the "
              "inputs alone, the shared task instruction removed (a harder case):", "",
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
             "random; \"whole set\" and \"clusters\" rules see no categories and draw over "
             "the whole set (the clusters only group the estimate); \"per task\" rules keep "
             "the fraction of each task:", "",
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
    order = ["random", "flexrand", "easy", "auto", "auto_cluster", "auto_input_cluster",
             "auto_task", "full"]
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


def _mean_diff(raw, rate, method, keep=0.5):
    runs = raw.get("downstream", {}).get("runs", {}).values()
    rnd = {r["seed"]: r["loss"] for r in runs if r["rate"] == rate and r["method"] == "random"
           and r["keep"] == keep}
    me = {r["seed"]: r["loss"] for r in runs if r["rate"] == rate and r["method"] == method
          and r["keep"] == keep}
    d = np.array([me[k] - rnd[k] for k in sorted(set(rnd) & set(me))])
    spread = float(np.std(list(rnd.values()), ddof=1)) if len(rnd) > 1 else float("nan")
    return d, spread


def grouping_lines(raw) -> list[str]:
    """What skdlc's grouping finds on the pool with the category field removed."""
    out = []
    for name, g in raw.get("grouping", {}).items():
        sil = ", ".join(f"{k}: {v:.2f}" for k, v in g.get("silhouette", {}).items())
        out.append(f"- {name}: {g['description']}; adjusted Rand index against the tasks "
                   f"{g['adjusted_rand_vs_tasks']:.2f}; cluster sizes "
                   f"{', '.join(str(v) for v in g.get('sizes', {}).values())}; silhouette by k: {sil}")
    return out


def _est(e, key):
    x = e[key]
    return (f"{x['share']:.1%} (precision {_f(x['precision'], '.2f')}, recall "
            f"{_f(x['recall'], '.2f')})")


def findings(raw) -> list[str]:
    """The page's conclusions, every number read from the raw results."""
    d = raw.get("detect")
    if not d:
        return []
    a20 = d["0.2"]["auroc"]
    names = list(a20)
    e = {r: d[r]["estimate"] for r in ("0", "0.1", "0.2")}
    g = raw.get("grouping", {})
    pc, ic = "DLC / response-only, prompt clusters [new default]", "DLC / response-only, input clusters"
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
             f"- **Estimating the broken share needs the groups; the default now finds them.** "
             f"Per task, the mixture on DLC / response-only flags "
             f"{_est(e['0.2'], 'DLC / response-only, per task')} at 20% broken, "
             f"{e['0.1']['DLC / response-only, per task']['share']:.1%} at 10% and "
             f"{e['0']['DLC / response-only, per task']['share']:.1%} on the clean pool; on the "
             "whole mixed set (the old default) the six tasks' own levels make a two-mode "
             "mixture meaningless and it flags nothing at 0%, 10% and 20%. `prune-instructions` "
             "now groups the estimate itself: by a category-like field when every record has "
             "one (here `category`, i.e. per task), else by k-means clusters of the prompts' "
             "TF-IDF vectors.",
             ]
    if pc in e["0.2"]:
        lines.append(
            f"- **The clusters, with the category field removed.** The prompt clusters recover "
            f"the six tasks (adjusted Rand index "
            f"{g['prompt clusters [new default]']['adjusted_rand_vs_tasks']:.2f}, k = "
            f"{g['prompt clusters [new default]'].get('k')}): flags {_est(e['0.2'], pc)} at 20% "
            f"broken, {_est(e['0.1'], pc)} at 10%, {e['0'][pc]['share']:.1%} clean, the same "
            "as per task. This pool makes it easy: five of the six tasks share one instruction "
            "each. The harder case, the inputs alone (instruction removed where there is an "
            f"input; adjusted Rand {g['input clusters']['adjusted_rand_vs_tasks']:.2f}, k = "
            f"{g['input clusters'].get('k')}), still flags {_est(e['0.2'], ic)} at 20%, "
            f"{_est(e['0.1'], ic)} at 10% and {e['0'][ic]['share']:.1%} of the clean pool.")
    ds = raw.get("downstream", {}).get("runs")
    if ds:
        status, parts = [], []
        for keep in (0.5, 0.3):
            d2, s2 = _mean_diff(raw, 0.2, "auto_cluster", keep)
            d0, s0 = _mean_diff(raw, 0.0, "auto_cluster", keep)
            if not len(d2):
                continue
            parts.append(
                f"keep {keep:.0%}: {d2.mean():+.4f} nats against Random with 20% broken "
                f"(better in {int((d2 < 0).sum())} of {len(d2)} seeds, by more than Random's "
                f"seed spread {s2:.4f} in {int((d2 < -s2).sum())}), {d0.mean():+.4f} clean "
                f"(largest {d0.max():+.4f}; spread {s0:.4f})")
            status.append((keep, bool((d2 < -s2).all()), bool(len(d0) and (d0 <= s0).all())))
        i2, _ = _mean_diff(raw, 0.2, "auto_input_cluster")
        i0, _ = _mean_diff(raw, 0.0, "auto_input_cluster")
        if len(i2) and len(i0):
            parts.append(f"estimated per cluster of the inputs alone (the harder grouping), keep "
                         f"50%: {i2.mean():+.4f} with 20% broken (better in "
                         f"{int((i2 < 0).sum())} of {len(i2)} seeds), {i0.mean():+.4f} clean "
                         f"(largest {i0.max():+.4f})")
        t2, _ = _mean_diff(raw, 0.2, "auto_task")
        o2, _ = _mean_diff(raw, 0.2, "auto")
        f2, _ = _mean_diff(raw, 0.2, "flexrand")
        lines.append(
            "- **Downstream (LoRA, 5 seeds), the new default without a category field.** "
            + "; ".join(parts) + ". "
            + (f"For comparison at keep 50% with 20% broken: per task {t2.mean():+.4f}, the old "
               f"whole-set default {o2.mean():+.4f} (it was Random), the paper's FlexRand "
               f"{f2.mean():+.4f}." if len(t2) and len(o2) and len(f2) else ""))
        task = []
        for keep in (0.5, 0.3):
            a2, _ = _mean_diff(raw, 0.2, "auto_task", keep)
            a0, s0 = _mean_diff(raw, 0.0, "auto_task", keep)
            if len(a2) and len(a0):
                task.append(f"keep {keep:.0%}: {a2.mean():+.4f} with 20% broken, "
                            f"{a0.mean():+.4f} clean (per seed "
                            + ", ".join(f"{x:+.4f}" for x in a0) + f"; Random's spread {s0:.4f})")
        if task:
            lines.append(
                "- **With the category field (the default then keeps the fraction of each task, "
                "as `--category-field`).** " + "; ".join(task) + ". On the clean pool nothing "
                "is flagged, so the clean differences are those of a per-task random draw "
                "against Random's unstratified one.")
        met = [f"keep {k:.0%}" for k, a, b in status if a and b]
        missed = [f"keep {k:.0%} ({'20% broken' if not a else ''}{' and ' if not a and not b else ''}"
                  f"{'clean' if not b else ''})" for k, a, b in status if not (a and b)]
        lines.append(
            "- **Done-when status.** The detection and downstream tables and their commands "
            "are here; `prune-instructions` writes the estimated broken share, the likely "
            "broken records and the grouping it used (summary JSON, stderr, report). "
            + (f"Met for {', '.join(met)}: with 20% broken pairs the default (no "
               "`--category-field`, no category field in the records: the prompt clusters) "
               "beats Random in every "
               "seed by more than Random's seed spread, and on clean data it is not worse "
               "than Random beyond that spread. " if met else "")
            + (f"**Missed** for {', '.join(missed)}." if missed else ""))
    return lines


def write_page(raw) -> str:
    sc = raw["scores"]
    cmds = raw.get("commands", {})
    lines = [
        "# Instruction data: finding broken pairs, and a selection default that does no harm",
        "",
        "Commands (each part caches what it computes; re-running a finished part is free):",
        "",
        *[f"- {part}: " + "; then ".join(f"`nice -n 10 {c}`" for c in
                                          ([cs] if isinstance(cs, str) else cs))
          for part, cs in cmds.items()],
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
        if raw.get("grouping"):
            lines += ["What `skdlc prune-instructions` finds on the pool without its category "
                      "field (`find_instruction_groups`: TF-IDF of instruction + input, truncated SVD to 64 "
                      "dimensions, k-means for k = 2..16, the fewest clusters within 95% of the "
                      "best silhouette; none below a silhouette of 0.1):", "",
                      *grouping_lines(raw), ""]
    if "select" in raw:
        lines += selection(raw) + [""]
    if "downstream" in raw and raw["downstream"].get("runs"):
        lines += downstream(raw) + [""]
    lines += ["## 4. GPU", "",
              "`benchmarks/instruction_gpu.py` runs the same comparison with LoRA on all 30 "
              "layers, a pool of 3,600 records (600 per task), keep 50% and 30%, 3 seeds and a "
              "multiple-choice accuracy on the five closed-answer tasks; its `auto` is the "
              "CLI's default on records without a category field (DLC / response-only loss, "
              "estimated per prompt cluster). **It was not run**: no GPU was lent to this "
              "task. Its docstring gives the device-tool recipe.", ""]
    raw.pop("_verdicts", None)
    return "\n".join(lines)
