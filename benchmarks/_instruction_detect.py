"""Detection and selection-only parts of benchmarks/instruction_selection.py.

``detect``: AUROC of each score for telling the planted broken pairs from the clean
ones, overall, per task and per kind of break; the broken share that
``skdlc.estimate_broken_share`` estimates, and the precision / recall of its flags.

``select``: what each selection rule keeps, without training: the share of broken
pairs among the kept records and how far each task's share of the kept set drifts
from its share of the pool, averaged over ``N_DRAWS`` seeds.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from skdlc import estimate_broken_share, select_instructions

N_DRAWS = 50


def groupings(pool, tasks):
    """Groups the estimate can use: the task field, and what ``skdlc prune-instructions``
    finds with the field removed (clusters of the prompts: its default on this pool), and a
    harder case: clusters of the inputs alone (the shared task instruction removed where
    there is an input). Returns ``{name: labels}`` and a description of each."""
    from sklearn.metrics import adjusted_rand_score

    from skdlc._instruction_groups import find_instruction_groups

    nocat = [{k: v for k, v in r.items() if k != "category"} for r in pool]
    inputs = [{**r, "instruction": "" if r["input"] else r["instruction"]} for r in nocat]
    out, info = {"per task": tasks}, {}
    for name, recs in (("prompt clusters [new default]", nocat), ("input clusters", inputs)):
        g = find_instruction_groups(recs)
        labels = g.labels if g.labels is not None else np.array(["all"] * len(recs))
        out[name] = labels
        info[name] = {**g.to_dict(), "adjusted_rand_vs_tasks": round(float(
            adjusted_rand_score(tasks, labels)), 4)}
    return out, info


def _pool_facts(args):
    from instruction_selection import pool_and_variants

    pool, _, plan, variants, _ = pool_and_variants(args)
    tasks = np.array([r["category"] for r in pool])
    kinds = np.array(["clean"] * len(pool), dtype=object)
    return pool, tasks, plan, variants, kinds


def detectors(view, tasks):
    """Candidate scores for a broken pair (higher = more suspicious)."""
    L, A = view["losses"], view["alone"]
    dlc = L.mean(1)
    within = np.zeros_like(dlc)
    for t in np.unique(tasks):
        rows = np.flatnonzero(tasks == t)
        within[rows] = (np.argsort(np.argsort(dlc[rows])) + 0.5) / rows.size
    return {
        "DLC score, ratios (0, 0.1, 0.2, 0.3) [InstructionScorer default]": dlc,
        "unmasked loss (ratio 0)": L[:, 0],
        "loss at ratio 0.3": L[:, -1],
        "DLC score ranked within its task": within,
        "response length in tokens": view["n_resp"],
        "response-only loss (no instruction, unmasked)": A[:, 0],
        "IFD: unmasked loss / response-only loss": L[:, 0] / A[:, 0],
        "DLC score / response-only loss [new default's signal]": dlc / A[:, 0],
        "mean over ratios of L_t(y|x) / L_t(y)": (L / A).mean(1),
        "DLC score minus response-only DLC score": dlc - A.mean(1),
    }


SIGNALS = {"DLC score": lambda L, A: L.mean(1),
           "DLC / response-only": lambda L, A: L.mean(1) / A[:, 0],
           "unmasked / response-only (IFD)": lambda L, A: L[:, 0] / A[:, 0],
           "path mean of L_t(y|x) / L_t(y)": lambda L, A: (L / A).mean(1),
           "DLC minus response-only DLC": lambda L, A: L.mean(1) - A.mean(1)}


CLI_SIGNAL = "DLC / response-only"


def _auc(y, s):
    return float(roc_auc_score(y, s)) if 0 < y.sum() < y.size else None


def part_detect(raw, rates, args):
    from instruction_selection import broken_view

    pool, tasks, plan, variants, _ = _pool_facts(args)
    groups, raw["grouping"] = groupings(pool, tasks)
    out = {}
    for rate in rates:
        view = broken_view(raw, rate)
        y = view["broken"]
        kinds = np.array([plan["kind"][i] if y[i] else "clean" for i in range(len(pool))])
        res = {"n_broken": int(y.sum()), "auroc": {}, "per_task": {}, "per_kind": {}}
        for name, s in detectors(view, tasks).items():
            res["auroc"][name] = _auc(y, s)
            res["per_task"][name] = {t: _auc(y[tasks == t], s[tasks == t]) for t in np.unique(tasks)}
            res["per_kind"][name] = {k: _auc(y[(kinds == k) | ~y], s[(kinds == k) | ~y])
                                     for k in ("swap", "truncate", "format")}
        res["broken_per_task"] = {t: int(y[tasks == t].sum()) for t in np.unique(tasks)}
        res["estimate"] = _estimates(view, groups)
        out[f"{rate:g}"] = res
        best = max(res["auroc"], key=lambda k: res["auroc"][k])
        print(f"{rate:.0%} broken: DLC AUROC {res['auroc'][next(iter(res['auroc']))]:.3f}; "
              f"best {best} {res['auroc'][best]:.3f}", flush=True)
    # the clean pool: what the estimate says when nothing is broken
    out["0"] = {"estimate": _estimates(broken_view(raw, 0.0), groups)}
    raw["detect"] = out


def _estimates(view, groupings):
    """estimate_broken_share of each signal, whole set and per task (and, for the CLI's
    signal, per found group), against the truth."""
    y = view["broken"]
    res = {}
    for name, f in SIGNALS.items():
        s = f(view["losses"], view["alone"])
        found = [(k, g) for k, g in groupings.items() if k != "per task"]
        for label, groups in (("whole set", None), ("per task", groupings["per task"]),
                              *(found if name == CLI_SIGNAL else [])):
            est = estimate_broken_share(s, groups=groups)
            fl = est.flagged
            res[f"{name}, {label}"] = {
                "share": est.share, "true_share": float(y.mean()),
                "precision": float((fl & y).sum() / fl.sum()) if fl.any() else None,
                "recall": float((fl & y).sum() / y.sum()) if y.any() else None,
                "fits": est.to_dict()["groups"]}
    return res


def part_select(raw, rates, args):
    from instruction_selection import broken_view

    pool, tasks, _, _, _ = _pool_facts(args)
    found, _ = groupings(pool, tasks)
    share0 = {t: float(np.mean(tasks == t)) for t in np.unique(tasks)}
    # (label, strategy, signal, groups of the estimate, groups of the selection)
    rules = [("random", "random", None, None, None),
             ("flexrand", "flexrand", None, None, None),
             ("easy", "easy", None, None, None),
             ("auto on the DLC score, whole set", "auto", "DLC score", None, None),
             ("auto on DLC / response-only, whole set [old default]", "auto", CLI_SIGNAL,
              None, None),
             ("auto on DLC / response-only, prompt clusters [new default, no field]", "auto",
              CLI_SIGNAL, found["prompt clusters [new default]"], None),
             ("auto on DLC / response-only, input clusters", "auto", CLI_SIGNAL,
              found["input clusters"], None),
             ("auto on DLC / response-only, per task [new default with the field]", "auto",
              CLI_SIGNAL, tasks, tasks),
             ("flexrand, per task", "flexrand", None, tasks, tasks)]
    out = {}
    for rate in (0.0, *rates):
        view = broken_view(raw, rate)
        dlc = view["losses"].mean(1)
        for keep in (0.5, 0.3):
            for label, strategy, signal, est_groups, groups in rules:
                broken = None
                if signal is not None:
                    broken = estimate_broken_share(
                        SIGNALS[signal](view["losses"], view["alone"]), groups=est_groups)
                kept_broken, drift = [], []
                for seed in range(N_DRAWS):
                    idx = select_instructions(dlc, keep, strategy=strategy, gamma=0.5,
                                              groups=groups, random_state=seed, broken=broken)
                    kept_broken.append(view["broken"][idx].mean())
                    drift.append(max(abs(np.mean(tasks[idx] == t) - share0[t]) for t in share0))
                    if strategy == "easy":
                        break  # deterministic
                out[f"{rate:g}|{keep:g}|{label}"] = {
                    "broken_kept": float(np.mean(kept_broken)),
                    "max_task_drift": float(np.mean(drift))}
    raw["select"] = out
