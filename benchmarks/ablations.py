"""Ablations of DLCScorer's settings, on cached forward passes.

    nice -n 15 python benchmarks/ablations.py --dataset fashion-mnist --backbone efficientnet_lite0
    nice -n 15 python benchmarks/ablations.py --gamma-study --dataset fashion-mnist   # fixed gammas
    nice -n 15 python benchmarks/ablations.py --fixes --dataset fashion-mnist --keep-ratios 0.1 0.3 0.5 0.7 0.9
    python benchmarks/plots.py

Same data, split, probe and gamma tuning as ``image_pruning.py`` (its forward passes are
shared through the same joblib cache). For each variant of DLCScorer's parameters it
reports (gamma tuned over 0.1, 0.3, ..., 0.9) the class-averaged Spearman correlation with S_Opt, the mean accuracy gain of
DLC + FlexRand over Random over the keep ratios, and the scoring time (forward passes of
the path + losses). Variants change one setting of the defaults at a time:

- masking: "layer" (paper) vs "global" (official code);
- ratio range: the paper's grid 2-98% (the default draws 5 from it) vs the official
  code's 0-63%;
- prototypes: "masked" (paper) vs "unmasked" (official code);
- logits: cosine with temperature 0.05 / 0.1 / 0.5 / 1, inverse distance (official
  code), negative squared distance;
- path length |T| = 1, 3, 5 (default), 10 and "auto" (grown until successive rankings agree at 0.99);
- the official code's whole configuration (global, unmasked, inverse distance, 0-63%).

``--fixes`` (issue 3's follow-up) profiles each layer-masking ratio (loss spread,
nearest-prototype accuracy, agreement with the unmasked model) and measures the fixes the
first pass suggested, the same way: a low ratio range {0, .1, .2, .3, .4}, per-variant
z-scoring of the losses before averaging (benchmark only, not in DLCScorer), dropping
collapsed variants, and, with ``--n-per-class``, a larger data regime.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import image_pruning as ip  # noqa: E402

from skdlc._losses import per_class_losses  # noqa: E402
from skdlc._prototypes import class_means  # noqa: E402
from skdlc._ratios import auto_ratio_order, resolve_mask_ratios  # noqa: E402
from skdlc.baselines import SOptScorer, class_spearman  # noqa: E402

OFFICIAL_RANGE = (0.0, 0.16, 0.32, 0.48, 0.63)
#: Coarser gamma grid than the main benchmark's 19 values, to fit ~15 variants on a CPU
#: (run with --keep-ratios 0.1 0.3 0.5 0.7 0.9 for the same reason; see results/README.md).
GAMMAS = (0.1, 0.3, 0.5, 0.7, 0.9)


def variants(full: bool = True) -> dict[str, dict]:
    base = dict(ratios=resolve_mask_ratios(5, 0), masking="layer", prototypes="masked",
                logits="cosine", temperature=0.1)
    v = {"default (layer, 5 of 2-98%, masked, cosine T=0.1)": base}
    v["masking=global"] = {**base, "masking": "global"}
    v["ratios 0-63% (official)"] = {**base, "ratios": OFFICIAL_RANGE}
    v["prototypes=unmasked"] = {**base, "prototypes": "unmasked"}
    for t in (0.05, 0.5, 1.0):
        v[f"cosine T={t}"] = {**base, "temperature": t}
    v["logits=inverse_distance"] = {**base, "logits": "inverse_distance"}
    v["logits=neg_sq_distance"] = {**base, "logits": "neg_sq_distance"}
    if full:
        for n in (1, 3, 10):
            v[f"|T|={n}"] = {**base, "ratios": resolve_mask_ratios(n, 0)}
        v["|T|=auto"] = {**base, "ratios": "auto"}
        v["official code (global, unmasked, 1/d, 0-63%)"] = dict(
            ratios=OFFICIAL_RANGE, masking="global", prototypes="unmasked",
            logits="inverse_distance", temperature=1.0)
    return v


def auto_path(store, y_idx, K, tol=0.99, max_ratios=10, **kw):
    """DLCScorer's mask_ratios="auto" on cached passes: grow until rankings agree."""
    used, prev = [], None
    for r in auto_ratio_order(0)[:max_ratios]:
        used.append(r)
        pc, _ = ip.dlc_per_class(store, y_idx, K, ratios=tuple(sorted(used)), **kw)
        cur = ip.own(pc, y_idx)
        if prev is not None and len(used) >= 3 and spearmanr(prev, cur).statistic >= tol:
            break
        prev = cur
    return tuple(sorted(used))


def gamma_study(argv=None) -> int:
    """FlexRand at fixed gammas vs tuned (ridge on the validation split), default DLC.

    Tells whether a miss comes from the scores or from the gamma tuning.
    """
    args = ip.parse_args(argv)
    torch.set_num_threads(args.threads)
    images, y, _ = ip.load_data(args.dataset, args.n_per_class)
    pool, val, test = ip.split(y)
    memory = joblib.Memory(args.cache_dir, verbose=0) if args.cache_dir else None
    store = ip.FeatureStore(images, pool, args.backbone, args.image_size, memory)
    ctx = ip.context(store, y, pool, val, test)
    classes, y_idx = np.unique(ctx["y_pool"], return_inverse=True)
    keeps, seeds = tuple(args.keep_ratios), tuple(args.seeds)
    pc, _ = ip.dlc_per_class(store, y_idx, len(classes), ratios=resolve_mask_ratios(5, 0))
    s = ip.own(pc, y_idx)
    rand, _, _ = ip.evaluate(np.zeros(len(pool)), "random", ctx, keeps, seeds)
    rows = {}
    for g in (0.1, 0.3, 0.5, 0.7, 0.9):
        acc, _, _ = ip.evaluate(s, "flexrand", ctx, keeps, seeds, gammas=(g,), tune=True)
        rows[f"gamma={g}"] = (100 * (acc.mean(1) - rand.mean(1))).tolist()
        print(f"gamma={g}: gap {np.mean(rows[f'gamma={g}']):+.2f}  per keep "
              + " ".join(f"{v:+.1f}" for v in rows[f"gamma={g}"]), flush=True)
    best = np.max(np.asarray(list(rows.values())), axis=0)
    rows["best fixed gamma per keep ratio (oracle on test)"] = best.tolist()
    out = dict(dataset=args.dataset, backbone=args.backbone, keep_ratios=list(keeps), gaps=rows)
    path = Path(args.out) / f"gammastudy_{args.dataset}_{args.backbone}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------------- fixes (issue 3)
#: The informative range for layer masking on EfficientNet-Lite0 (the per-ratio profile
#: written by ``fixes`` shows the nearest-prototype accuracy falling to chance above ~0.5).
LOW_RANGE = (0.0, 0.1, 0.2, 0.3, 0.4)
PROFILE_RATIOS = (0.0, 0.1, 0.16, 0.2, 0.3, 0.32, 0.4, 0.48, 0.54, 0.6, 0.62)


def variant_losses(store, y_idx, n_classes, ratios, masking="layer", logits="cosine",
                   temperature=0.1):
    """Per-variant per-class losses (masked prototypes) and the seconds of the path."""
    out, seconds = {}, 0.0
    for r in ratios:
        F, tr = store.pool(masking, r)
        t = time.perf_counter()
        out[float(r)] = per_class_losses(F, class_means(F, y_idx, n_classes), logits, temperature)
        seconds += tr + time.perf_counter() - t
    return out, seconds


def combine(losses: dict, y_idx, how: str = "mean", n_classes: int | None = None):
    """Own-class DLC score from per-variant losses.

    - ``"mean"``: the library's estimator (average of the variants' losses);
    - ``"zscore"``: z-score each variant's own-class losses across the samples, then
      average: every variant gets unit weight, whatever the spread of its losses;
    - ``"drop_collapsed"``: average only the variants whose own-class losses still spread:
      standard deviation at least 10% of the unmasked variant's (training-free; the
      in-sample nearest-prototype accuracy is no use here, it stays above 2/K even for
      collapsed variants because the prototypes are fitted on the same samples).
    """
    own_ = {r: ip.own(L, y_idx) for r, L in losses.items()}
    if how == "mean":
        return np.mean(list(own_.values()), axis=0)
    if how == "zscore":
        return np.mean([(v - v.mean()) / (v.std() + 1e-12) for v in own_.values()], axis=0)
    if how == "drop_collapsed":
        ref = own_[min(own_)].std()
        keep = [r for r, v in own_.items() if v.std() >= 0.1 * ref]
        return np.mean([own_[r] for r in keep], axis=0)
    raise ValueError(how)


def fix_variants(backbone: str) -> dict[str, tuple]:
    d = tuple(resolve_mask_ratios(5, 0))
    return {
        "default (5 of 2-98%, mean)": (d, "mean"),
        "low range {0,.1,.2,.3,.4}, mean": (LOW_RANGE, "mean"),
        "default ratios, z-scored per variant": (d, "zscore"),
        "low range, z-scored per variant": (LOW_RANGE, "zscore"),
        "default ratios, collapsed variants dropped": (d, "drop_collapsed"),
        "|T|=1 (unmasked only)": ((0.0,), "mean"),
    }


def fixes(argv=None) -> int:
    """The fixes the first pass's evidence suggests, measured like ``main``'s rows.

    Writes ``fixes_<dataset>_<backbone>_<n>.json``: a per-ratio profile (spread of the
    own-class loss, nearest-prototype accuracy, Spearman with the unmasked variant) and,
    per fix, rho vs S_Opt and the FlexRand gap vs Random (gamma tuned over GAMMAS).
    """
    args = ip.parse_args(argv)
    torch.set_num_threads(args.threads)
    images, y, _ = ip.load_data(args.dataset, args.n_per_class)
    pool, val, test = ip.split(y)
    memory = joblib.Memory(args.cache_dir, verbose=0) if args.cache_dir else None
    store = ip.FeatureStore(images, pool, args.backbone, args.image_size, memory)
    ctx = ip.context(store, y, pool, val, test)
    y_pool = ctx["y_pool"]
    classes, y_idx = np.unique(y_pool, return_inverse=True)
    K = len(classes)
    keeps, seeds = tuple(args.keep_ratios), tuple(args.seeds)
    vs = fix_variants(args.backbone)
    ratios = sorted({r for rs, _ in vs.values() for r in rs} | set(args.profile_ratios or ()))
    print(f"[{args.dataset}/{args.backbone}/{args.n_per_class}] pool {len(pool)}; passes {ratios}", flush=True)
    losses, _ = variant_losses(store, y_idx, K, ratios)
    own0 = ip.own(losses[0.0], y_idx)
    profile = {}
    for r in ratios:
        o = ip.own(losses[r], y_idx)
        profile[r] = dict(own_loss_mean=float(o.mean()), own_loss_std=float(o.std()),
                          np_acc=float((losses[r].argmin(1) == y_idx).mean()),
                          spearman_vs_unmasked=float(spearmanr(o, own0).statistic),
                          pass_s=float(store.pool("layer", r)[1]))
        print(f"  ratio {r:.2f}: loss {o.mean():.3f} ± {o.std():.3f}  NP acc {profile[r]['np_acc']:.3f}"
              f"  rho(unmasked) {profile[r]['spearman_vs_unmasked']:.3f}", flush=True)
    sopt = SOptScorer("precomputed", random_state=0).fit(ctx["Fp"], y_pool)
    rand, _, _ = ip.evaluate(np.zeros(len(pool)), "random", ctx, keeps, seeds)
    rows = {}
    for name, (rs, how) in vs.items():
        t = time.perf_counter()
        s = combine({r: losses[float(r)] for r in rs}, y_idx, how, K)
        acc, gam, _ = ip.evaluate(s, "flexrand", ctx, keeps, seeds, tune=True, gammas=GAMMAS)
        rows[name] = dict(
            ratios=[float(r) for r in rs], combine=how,
            spearman_sopt=class_spearman(sopt.scores_, s, y_pool),
            gap_per_keep=(100 * (acc.mean(1) - rand.mean(1))).tolist(),
            gap=float(100 * (acc.mean() - rand.mean())),
            gap_seed_std=float(100 * (acc.mean(0) - rand.mean(0)).std()),
            acc=float(acc.mean()), n_passes=len(rs),
            pass_s=float(sum(profile[float(r)]["pass_s"] for r in rs)),
        )
        r_ = rows[name]
        print(f"  {name:44s} rho {r_['spearman_sopt']:.3f}  gap {r_['gap']:+.2f} ± {r_['gap_seed_std']:.2f}"
              f"  per keep " + " ".join(f"{g:+.1f}" for g in r_["gap_per_keep"])
              + f"  (eval {time.perf_counter() - t:.0f}s)", flush=True)
    out = dict(dataset=args.dataset, backbone=args.backbone, image_size=args.image_size,
               n_per_class=args.n_per_class, n_pool=len(pool), keep_ratios=list(keeps),
               seeds=list(seeds), random_acc=float(rand.mean()),
               profile={str(k): v for k, v in profile.items()}, variants=rows)
    path = Path(args.out) / f"fixes_{args.dataset}_{args.backbone}_{args.n_per_class}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--gamma-study" in argv:
        argv.remove("--gamma-study")
        return gamma_study(argv)
    if "--fixes" in argv:
        argv.remove("--fixes")
        return fixes(argv)
    args = ip.parse_args(argv)
    torch.set_num_threads(args.threads)
    images, y, names = ip.load_data(args.dataset, args.n_per_class)
    pool, val, test = ip.split(y)
    memory = joblib.Memory(args.cache_dir, verbose=0) if args.cache_dir else None
    store = ip.FeatureStore(images, pool, args.backbone, args.image_size, memory)
    ctx = ip.context(store, y, pool, val, test)
    y_pool = ctx["y_pool"]
    classes, y_idx = np.unique(y_pool, return_inverse=True)
    K = len(classes)
    keeps, seeds = tuple(args.keep_ratios), tuple(args.seeds)
    sopt = SOptScorer("precomputed", random_state=0).fit(ctx["Fp"], y_pool)
    rand, _, _ = ip.evaluate(np.zeros(len(pool)), "random", ctx, keeps, seeds)
    rows = {}
    for name, v in variants().items():
        t = time.perf_counter()
        v = dict(v)
        if v["ratios"] == "auto":
            kw = {k: v[k] for k in ("masking", "prototypes", "logits", "temperature")}
            v["ratios"] = auto_path(store, y_idx, K, **kw)
        pc, secs = ip.dlc_per_class(store, y_idx, K, **v)
        s = ip.own(pc, y_idx)
        acc, gam, tune_s = ip.evaluate(s, "flexrand", ctx, keeps, seeds, tune=True, gammas=GAMMAS)
        rows[name] = dict(
            ratios=list(v["ratios"]), spearman_sopt=class_spearman(sopt.scores_, s, y_pool),
            gap_per_keep=(100 * (acc.mean(1) - rand.mean(1))).tolist(),
            gap=float(100 * (acc.mean() - rand.mean())),
            gap_seed_std=float(100 * (acc.mean(0) - rand.mean(0)).std()),
            acc=float(acc.mean()), score_s=secs, tune_s=tune_s, n_passes=len(v["ratios"]),
        )
        r = rows[name]
        print(f"{name:48s} rho {r['spearman_sopt']:.3f}  gap {r['gap']:+.2f}  passes {r['n_passes']}"
              f"  score {secs:.1f}s  (eval {time.perf_counter() - t:.0f}s)", flush=True)
    out = dict(dataset=args.dataset, backbone=args.backbone, image_size=args.image_size,
               n_per_class=args.n_per_class, random_acc=float(rand.mean()), variants=rows)
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"ablations_{args.dataset}_{args.backbone}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
