"""Label issues from DLC's per-class losses vs cleanlab on a cross-validated logistic probe.

For every data set, noise kind (symmetric, pair-flip k -> k+1) and rate (10%, 20%) and
seed, the labels are corrupted and:

- skdlc: ``skdlc.find_label_issues`` on the per-class losses of the calibrated DLC path
  (``DLCScorer``'s default: masked prototypes, cosine logits at T=0.1, the path chosen by
  the calibration on the noisy labels) and on the unmasked model's losses alone (ratio 0,
  one pass), each with every flagging rule and both quality scores;
- cleanlab 2.9: ``cleanlab.filter.find_label_issues`` (its default rule) given 5-fold
  cross-validated probabilities of a logistic probe (PCA-128 of the same embedding, standardised),
  ranked by ``cleanlab.rank.get_label_quality_scores`` (self-confidence).

Measured against the rows whose label was changed: flagged count, precision, recall, F1,
AUROC of the quality score (low quality = issue), precision at the flagged count (top
rows by quality, as many as flagged) and at the true count; time: forward passes (from
the feature cache's timings) + the rest, measured here.

Features come from ``benchmarks/_selection_features.py`` (cached per data set under
``~/.cache/skdlc/benchmarks/selection``; EfficientNet-Lite0 at 64 px, ONNX Runtime, CPU),
computed here first when missing. Reproduce:

    nice -n 10 python benchmarks/label_issues.py --datasets mnist digits
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _selection_features as feats  # noqa: E402

from skdlc import find_label_issues  # noqa: E402
from skdlc._calibration import calibrate, probe_grid, sample_rows  # noqa: E402
from skdlc._label_issues import FILTERS, QUALITIES  # noqa: E402
from skdlc._losses import per_class_losses  # noqa: E402
from skdlc._prototypes import class_means  # noqa: E402
from skdlc.report import likely_mislabelled  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
NOISES = (("symmetric", 0.1), ("symmetric", 0.2), ("pair", 0.1), ("pair", 0.2))
SEEDS = (0, 1, 2)


# ------------------------------------------------------------------------------- data
class Features:
    """Cached per-ratio features of one data set (rows in data order) and pass timings."""

    def __init__(self, dataset: str):
        self.name = dataset
        missing = [r for r in probe_grid("layer") if not feats.feature_path(dataset, "layer", r).exists()]
        if missing and not (dataset in feats.TEXT_SETS and feats.feature_path(dataset, "layer", 0.0).exists()):
            feats.extract(dataset, "layer", missing)
        # A text set may come with part of the probe grid only (a MiniLM pass over 2,000
        # posts is slow on a shared CPU): the calibration then chooses among those ratios.
        self.probes = [r for r in probe_grid("layer") if feats.feature_path(dataset, "layer", r).exists()]
        self.dir = feats.CACHE / dataset
        self.classes, self.y = np.unique(np.load(self.dir / "y.npy", allow_pickle=True), return_inverse=True)
        self.K = len(self.classes)
        self.F = {r: np.load(feats.feature_path(dataset, "layer", r)).astype(np.float32) for r in self.probes}
        self.secs = {}
        for line in (self.dir / "times.tsv").read_text().splitlines():
            m, r, n, t = line.split("\t")
            if m == "layer":
                self.secs[float(r)] = float(t) / int(n)  # seconds per image, last run

    def pass_time(self, r: float, n: int) -> float:
        return self.secs.get(float(r), float("nan")) * n


def corrupt(y: np.ndarray, K: int, kind: str, rate: float, seed: int):
    """Change the labels of ``rate`` of the rows: to a uniform other class, or k -> k+1."""
    rng = np.random.RandomState(1000 + seed)
    flip = np.zeros(len(y), bool)
    if kind == "symmetric":
        flip[rng.choice(len(y), int(round(rate * len(y))), replace=False)] = True
        shift = rng.randint(1, K, flip.sum())
    else:  # pair flip: the same share of every class moves to the next class
        for k in range(K):
            rows = np.flatnonzero(y == k)
            flip[rng.choice(rows, int(round(rate * len(rows))), replace=False)] = True
        shift = np.ones(flip.sum(), int)
    yn = y.copy()
    yn[flip] = (y[flip] + shift) % K
    return yn, flip


# ----------------------------------------------------------------------------- losses
def dlc_losses(data: Features, yn: np.ndarray, seed: int):
    """(path-average losses, unmasked losses, path ratios, seconds of the path incl. probes)."""
    rows = sample_rows(yn, 300, seed)
    t0 = time.perf_counter()
    cal = calibrate({r: f[rows] for r, f in data.F.items()}, yn[rows], 5)
    losses = {r: per_class_losses(data.F[r], class_means(data.F[r], yn, data.K), "cosine", 0.1)
              for r in cal.ratios}
    compute = time.perf_counter() - t0
    n = len(yn)
    passes = sum(data.pass_time(r, n) for r in cal.ratios)
    probes = sum(data.pass_time(r, len(rows)) for r in cal.probe_ratios)
    path = np.mean([losses[r] for r in cal.ratios], axis=0)
    return path, losses[0.0], cal.ratios, passes + probes + compute, data.pass_time(0.0, n)


def cv_probe(E: np.ndarray, yn: np.ndarray, seed: int, pca: int | None) -> np.ndarray:
    """5-fold cross-validated logistic-probe probabilities on the standardised embedding.

    ``pca``: first project on that many principal components (fitted inside each fold):
    the selection benchmark's probe, minutes faster than the full 1,280-d one.
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    steps = ([PCA(pca, random_state=0)] if pca else []) + [StandardScaler(), LogisticRegression(C=0.1, max_iter=500)]
    from threadpoolctl import threadpool_limits

    with warnings.catch_warnings(), threadpool_limits(1):  # 2 shared cores: no oversubscription
        warnings.simplefilter("ignore")
        return cross_val_predict(make_pipeline(*steps), E, yn, cv=StratifiedKFold(5, shuffle=True, random_state=seed),
                                 method="predict_proba")


def cached_cv_probe(data: Features, yn, kind, rate, seed, pca):
    """(probabilities, seconds the cross-validation took), cached per condition and probe."""
    tag = "" if pca is None else f"_pca{pca}"
    cache = data.dir / "label_issues" / f"cv_{kind}_{rate}_{seed}{tag}.npz"
    if cache.exists():
        got = np.load(cache)
        return got["probs"], float(got["seconds"])
    t0 = time.perf_counter()
    probs = cv_probe(data.F[0.0], yn, seed, pca)
    t_cv = time.perf_counter() - t0
    cache.parent.mkdir(exist_ok=True)
    np.savez(cache, probs=probs, seconds=t_cv)
    return probs, t_cv


# ---------------------------------------------------------------------------- metrics
def metrics(flag: np.ndarray, quality: np.ndarray, truth: np.ndarray) -> dict:
    n_flag, n_true = int(flag.sum()), int(truth.sum())
    tp = int((flag & truth).sum())
    prec = tp / n_flag if n_flag else float("nan")
    rec = tp / n_true
    order = np.argsort(quality, kind="stable")
    return {
        "flagged": n_flag,
        "precision": prec,
        "recall": rec,
        "f1": 2 * prec * rec / (prec + rec) if n_flag and tp else 0.0,
        "auroc": float(roc_auc_score(truth, -quality)),
        "p_at_flagged": float(truth[order[:n_flag]].mean()) if n_flag else float("nan"),
        "p_at_true": float(truth[order[:n_true]].mean()),
    }


def run_dataset(data: Features, seeds, cleanlab_seeds=(0,)) -> list[dict]:
    import cleanlab.filter
    import cleanlab.rank

    rows = []
    for kind, rate in NOISES:
        for seed in seeds:
            yn, truth = corrupt(data.y, data.K, kind, rate, seed)
            base = dict(dataset=data.name, noise=kind, rate=rate, seed=seed, n_true=int(truth.sum()))
            path, unmasked, ratios, t_path, t_pass0 = dlc_losses(data, yn, seed)
            for source, L, t_feat in (("path", path, t_path), ("unmasked", unmasked, t_pass0)):
                for fb in FILTERS:
                    for q in QUALITIES:
                        t0 = time.perf_counter()
                        issues, _ = find_label_issues(L, yn, filter_by=fb, quality=q)
                        dt = time.perf_counter() - t0
                        m = metrics(issues["is_label_issue"].to_numpy(), issues["label_quality"].to_numpy(), truth)
                        rows.append(dict(base, method=f"skdlc {source}", filter_by=fb, quality=q,
                                         seconds=t_feat + dt, ratios=list(ratios) if source == "path" else [0.0],
                                         **m))
                # the report's earlier heuristic (skdlc.report.likely_mislabelled), ranked
                # by the DLC score itself (own-class loss: higher = more suspect)
                t0 = time.perf_counter()
                sus = likely_mislabelled(L, yn)
                flag = np.zeros(len(yn), bool)
                flag[sus["index"].to_numpy()] = True
                own = L[np.arange(len(yn)), yn]
                dt = time.perf_counter() - t0
                rows.append(dict(base, method=f"skdlc {source}", filter_by="report's likely_mislabelled",
                                 quality="DLC score", seconds=t_feat + dt,
                                 ratios=list(ratios) if source == "path" else [0.0],
                                 **metrics(flag, -own, truth)))
            if seed not in cleanlab_seeds:
                continue
            for pca, name in [(128, "cleanlab (5-fold logistic probe, PCA-128)")]:
                probs, t_cv = cached_cv_probe(data, yn, kind, rate, seed, pca)
                t0 = time.perf_counter()
                flag = cleanlab.filter.find_label_issues(yn, probs, n_jobs=1)
                quality = cleanlab.rank.get_label_quality_scores(yn, probs)
                t_cl = time.perf_counter() - t0
                m = metrics(flag, quality, truth)
                rows.append(dict(base, method=name, filter_by="prune_by_noise_rate", quality="self_confidence",
                                 seconds=t_pass0 + t_cv + t_cl, ratios=[0.0], **m))
                print(f"{data.name} {kind} {rate} seed {seed} {name}: P={m['precision']:.3f} R={m['recall']:.3f} "
                      f"AUROC={m['auroc']:.3f} ({t_cv:.1f} s CV)", flush=True)
    return rows


# ----------------------------------------------------------------------------- report
def _agg(rows, key):
    v = np.array([r[key] for r in rows], float)
    return float(np.nanmean(v)), float(np.nanstd(v))


def report(rows: list[dict], command: str) -> str:
    out = ["# Label issues: skdlc (DLC per-class losses, no training) vs cleanlab (CV logistic probe)",
           "", f"Made by `{command}` (benchmarks/label_issues.py). Mean ± sd over seeds "
           f"{sorted({r['seed'] for r in rows})}; EfficientNet-Lite0 at 64 px on the CPU, all rows of each set.",
           "", "- **skdlc path**: `find_label_issues` on the calibrated DLC path's per-class losses "
           "(what `DLCScorer.transform` returns); **skdlc unmasked**: on the unmasked model's losses "
           "alone (ratio 0, one pass). `filter_by` = the flagging rule, quality = the ranking score.",
           "- **cleanlab**: `cleanlab.filter.find_label_issues` (default `prune_by_noise_rate`) on 5-fold "
           "cross-validated probabilities of a logistic probe (PCA-128 of the same embedding, standardised, C=0.1).",
           "- precision / recall of the flagged rows against the rows whose label was changed; AUROC of "
           "the quality score; P@flagged: precision of the lowest-quality rows, as many as flagged; "
           "P@true: the same at the true number of changed rows; time: forward passes (probes "
           "included) + everything after, on this 2-core machine.", ""]
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    for d in datasets:
        paths = sorted({tuple(r["ratios"]) for r in rows if r["dataset"] == d and r["method"] == "skdlc path"})
        out += [f"## {d}", "", "Calibrated paths (mask ratios) chosen on the noisy labels: "
                + "; ".join("(" + ", ".join(f"{x:g}" for x in p) + ")" for p in paths), ""]
        for kind, rate in NOISES:
            sub = [r for r in rows if r["dataset"] == d and r["noise"] == kind and r["rate"] == rate]
            if not sub:
                continue
            n = sub[0]["n_true"]
            out += [f"### {kind} noise, {int(rate * 100)}% ({n} changed labels)", "",
                    "| method | filter_by | quality | seeds | flagged | precision | recall | F1 | AUROC | P@flagged "
                    "| P@true | time (s) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
            groups = list(dict.fromkeys((r["method"], r["filter_by"], r["quality"]) for r in sub))
            for g in groups:
                gr = [r for r in sub if (r["method"], r["filter_by"], r["quality"]) == g]
                cells = [str(len(gr)), f"{_agg(gr, 'flagged')[0]:.0f}"]
                for k in ("precision", "recall", "f1", "auroc", "p_at_flagged", "p_at_true"):
                    m, s = _agg(gr, k)
                    cells.append(f"{m:.3f} ± {s:.3f}")
                cells.append(f"{_agg(gr, 'seconds')[0]:.1f}")
                out.append(f"| {g[0]} | {g[1]} | {g[2]} | " + " | ".join(cells) + " |")
            out.append("")
    out += _overall(rows)
    return "\n".join(out) + "\n"


def _overall(rows) -> list[str]:
    """Mean over every data set and noise condition, per method/rule/quality (cleanlab's seeds only)."""
    seeds = {r["seed"] for r in rows if r["method"].startswith("cleanlab")} or {r["seed"] for r in rows}
    rows = [r for r in rows if r["seed"] in seeds]
    out = [f"## Averaged over data sets and noise conditions (seeds {sorted(seeds)}, where cleanlab ran)", "",
           "| method | filter_by | quality | precision | recall | F1 | AUROC | P@true |",
           "|---|---|---|---|---|---|---|---|"]
    groups = list(dict.fromkeys((r["method"], r["filter_by"], r["quality"]) for r in rows))
    scored = []
    for g in groups:
        gr = [r for r in rows if (r["method"], r["filter_by"], r["quality"]) == g]
        vals = [_agg(gr, k)[0] for k in ("precision", "recall", "f1", "auroc", "p_at_true")]
        scored.append((g, vals))
    for g, vals in sorted(scored, key=lambda t: -t[1][2]):
        out.append(f"| {g[0]} | {g[1]} | {g[2]} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    return out + [""]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["mnist", "digits"])
    p.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    p.add_argument("--cleanlab-seeds", nargs="+", type=int, default=[0],
                   help="seeds on which the cleanlab baseline runs (its CV takes minutes on a shared CPU)")
    p.add_argument("--out", default=str(RESULTS / "label_issues.md"))
    p.add_argument("--report-only", action="store_true", help="rewrite the .md from raw/label_issues.json")
    a = p.parse_args(argv)
    raw = RESULTS / "raw" / "label_issues.json"
    if a.report_only:
        state = json.loads(raw.read_text())
        Path(a.out).write_text(report(state["rows"], state["command"]))
        return
    rows = []
    for d in a.datasets:
        rows += run_dataset(Features(d), a.seeds, a.cleanlab_seeds)
    command = "nice -n 10 python benchmarks/label_issues.py --datasets " + " ".join(a.datasets)
    if list(a.seeds) != list(SEEDS):
        command += " --seeds " + " ".join(map(str, a.seeds))
    if a.cleanlab_seeds != [0]:
        command += " --cleanlab-seeds " + " ".join(map(str, a.cleanlab_seeds))
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    text = report(rows, command)
    Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
