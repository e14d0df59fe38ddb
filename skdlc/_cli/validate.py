"""``skdlc validate``: does DLC rank samples like the optimization-based complexity?

Scores a labelled image set with :class:`~skdlc.DLCScorer` (no training) and with
:class:`~skdlc.baselines.SOptScorer` (each sample's loss summed over the epochs of
training a linear head on the frozen embedding), then reports their Spearman rank
correlation within each class, averaged over classes (the paper reports 0.51 on
average), and over all samples.

    skdlc validate --dataset mnist --n-per-class 50
    skdlc validate --data my_images.npz --backbone squeezenet1_1 --json
"""

from __future__ import annotations

import argparse
import time

import numpy as np

__all__ = ["add_parser", "run"]


def _image_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of pixels, got {text!r}") from None
    if value < 8:
        raise argparse.ArgumentTypeError(f"must be at least 8 pixels, got {value}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "validate",
        help="Spearman correlation between DLC and the optimization-based learning complexity",
        description=__doc__.split("\n\n")[1],
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist",
                     help="an offline data set (default: mnist)")
    src.add_argument("--data", metavar="NPZ",
                     help="a .npz file with arrays X (uint8 images, N x H x W [x C]) and y")
    p.add_argument("--n-per-class", type=int, default=50, help="images per class from --dataset (default 50)")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--image-size", type=_image_size, default=None,
                   help="input px override, at least 8 (faster when smaller)")
    p.add_argument("--mask-ratios", default="5",
                   help="a count, a comma list of ratios in [0, 1), 'auto' or 'calibrated'; 0 is the "
                        "unmasked model alone (default 5)")
    p.add_argument("--epochs", type=int, default=50, help="epochs of S_Opt's head training, at least 1 (default 50)")
    p.add_argument("--lr", type=float, default=0.01, help="S_Opt's SGD learning rate, above 0 (default 0.01)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--memory", default=None, metavar="DIR", help="joblib cache folder for DLC scores")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)
    return p


def _load(args):
    from . import CLIError

    if args.data:
        try:
            with np.load(args.data, allow_pickle=False) as z:
                X, y = z["X"], z["y"]
        except (OSError, KeyError, ValueError) as exc:
            raise CLIError(f"cannot read X and y from {args.data!r}: {exc}") from exc
        if len(X) != len(y):
            raise CLIError(f"{args.data}: X has {len(X)} rows but y has {len(y)}")
        return X, y
    from .. import datasets

    loader = datasets.load_mnist if args.dataset == "mnist" else datasets.load_fashion_mnist
    try:
        return loader(n_per_class=args.n_per_class, random_state=args.seed, return_X_y=True)
    except (ValueError, datasets.DatasetNotAvailableError) as exc:
        raise CLIError(str(exc)) from exc


def _check_options(args) -> None:
    """Every option, before any data is read or scored."""
    import math

    from . import CLIError
    from ._common import check_cache_dir, parse_device, parse_mask_ratios

    if args.epochs < 1:
        raise CLIError(f"--epochs must be at least 1, got {args.epochs}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise CLIError(f"--lr must be a number above 0, got {args.lr}")
    if args.n_per_class < 1:
        raise CLIError(f"--n-per-class must be at least 1, got {args.n_per_class}")
    args.mask_ratios = parse_mask_ratios(args.mask_ratios, keywords=("auto", "calibrated"))
    args.device = parse_device(args.device)
    check_cache_dir(args.memory, "--memory")


def run(args) -> int:
    from scipy.stats import spearmanr

    from .. import DLCScorer
    from .._layout import class_index, own_class, split_columns
    from .._outputs import dumps_json
    from ..baselines import SOptScorer, class_spearman

    _check_options(args)
    X, y = _load(args)
    t0 = time.perf_counter()
    scorer = DLCScorer(args.backbone, mask_ratios=args.mask_ratios, embedding=True,
                       image_size=args.image_size, device=args.device, memory=args.memory,
                       random_state=args.seed, verbose=not args.json)
    out = scorer.fit_transform(X, y)
    dlc_s = time.perf_counter() - t0
    K = len(scorer.classes_)
    emb, per_class = split_columns(out, K)
    dlc = own_class(per_class, class_index(scorer.classes_, y))
    sopt = SOptScorer("precomputed", epochs=args.epochs, lr=args.lr, random_state=args.seed).fit(emb, y)
    result = {
        "n_samples": int(len(y)),
        "n_classes": int(K),
        "backbone": str(args.backbone),
        "mask_ratios": list(scorer.mask_ratios_),
        "spearman_class_avg": class_spearman(sopt.scores_, dlc, y),
        "spearman_all": float(spearmanr(sopt.scores_, dlc).statistic),
        "dlc_seconds": dlc_s,
        "sopt_head_seconds": sopt.fit_time_,
    }
    if args.json:
        print(dumps_json(result))  # strict JSON: a NaN correlation is null
    else:
        print(f"{result['n_samples']} samples, {K} classes, backbone {result['backbone']}, "
              f"DLC path {result['mask_ratios']}")
        print(f"Spearman(S_Opt, DLC), class-averaged: {result['spearman_class_avg']:.3f} "
              f"(paper: 0.51 on average); over all samples: {result['spearman_all']:.3f}")
        print(f"DLC scoring {dlc_s:.1f}s; S_Opt head training on the DLC embedding "
              f"{sopt.fit_time_:.1f}s ({args.epochs} epochs)")
    return 0
