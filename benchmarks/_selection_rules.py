"""Rule variants of tune_selection's choice (1 SE, 2 SE, best) on the matrix's exact data.

    nice -n 10 python benchmarks/_selection_rules.py   # writes results/raw/selection_rules.json
"""
import json
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
import selection as S
from skdlc import FlexRandSampler
from skdlc.tuning import SelectionResult, tune_selection, default_candidates, _complexity
warnings.simplefilter("ignore")
out = []
cands = default_candidates()
for ds in ("mnist", "cifar10"):
    d = S.Cached(ds); y0 = d.y[d.pool]; Zp = d.Z[d.pool]
    E = np.asarray(d.E[d.pool], dtype=np.float64)  # what skdlc prune passes
    for noise in (0.0, 0.2):
        for seed in (0, 1, 2):
            yp, flip = S.noisy_labels(y0, d.K, noise, seed)
            cal = S.calibrated_path(d, "layer", yp, seed)
            s = S.own(S.dlc_losses(d, "layer", cal.ratios, d.pool, yp), yp)
            for keep in (0.1, 0.3, 0.5, 0.7, 0.9):
                res = tune_selection(E, s, yp, keep, random_state=seed)
                t = res.table
                best = int(t["mean"].idxmax())
                rnd = S.linear_probe(d, FlexRandSampler(keep, strategy="random", random_state=seed).fit(s[:, None], yp).sample_indices_, yp)
                row = {"ds": ds, "noise": noise, "seed": seed, "keep": keep, "random": rnd}
                for rule, k in (("1se", 1.0), ("2se", 2.0), ("best", 0.0)):
                    ok = [i for i in range(len(t)) if t["mean"][i] >= t["mean"][best] - k * t["sem"][best] - 1e-12]
                    i = min(ok, key=lambda i: (_complexity(cands[i]), -t["mean"][i]))
                    c = cands[i]
                    kept = SelectionResult(c["strategy"], c.get("gamma"), dict(c), t).select(
                        E, s, yp, keep, random_state=seed)  # herding candidates too
                    row[rule] = S.linear_probe(d, kept, yp); row[rule + "_choice"] = t["candidate"][i]
                out.append(row); print(row, flush=True)
json.dump(out, open(S.RAW / "selection_rules.json", "w"), indent=1)
