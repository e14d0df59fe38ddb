"""Does the subset beat a random one? Paths, selection rules and baselines, clean and noisy.

Everything runs on feature matrices computed once by ``benchmarks/_selection_features.py``
(one forward pass per data set x masking x ratio, cached under
``~/.cache/skdlc/benchmarks/selection``). Label noise changes labels only, so every noise
level and every path reuses the same features; prototypes, losses, selections and the
downstream models are numpy/sklearn/torch on those caches.

Parts (``--part``):

- ``paths``: learning paths compared on the same features: the paper's random draw
  (today's default ``mask_ratios=5``), a fixed low range, the official cumulative-global
  schedule, the calibrated path: (a) gap over Random of the cross-validated selection
  and of FlexRand with the paper's gamma tuning, (b) AUROC for flipped labels at 10% and
  20% symmetric noise (with EL2N, the unmasked-model loss, confident learning),
  (c) Spearman with today's scores.
- ``default``: only the cross-validated default's cells of the matrix (probe and, with
  ``--finetune``, the CPU fine-tuning), re-run with today's ``SelectionSampler`` (herding
  candidates included) on the full-model embedding, as ``skdlc prune`` passes it; merged
  into ``raw/selection_matrix_<set>.json``: the earlier default's rows are kept under
  :data:`OLD_DEFAULT_NAME`, every other method's rows are left as they are.
- ``matrix``: the methods x keep ratios x seeds matrix under the linear probe, clean and
  20% noise; ``--finetune`` adds the CPU fine-tuning downstream (last stage + new head on
  cached activations of the frozen earlier stages) on the keep ratios of
  ``--finetune-keep``.

Reproduce (commands also written on benchmarks/results/selection.md):

    nice -n 10 python benchmarks/_selection_features.py --dataset fashion-mnist
    nice -n 10 python benchmarks/_selection_features.py --dataset mnist
    nice -n 10 python benchmarks/selection.py --part paths  --datasets fashion-mnist mnist
    nice -n 10 python benchmarks/selection.py --part matrix --datasets fashion-mnist mnist --finetune
    python benchmarks/selection.py --part report
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import binomtest, spearmanr
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _selection_features import CACHE  # noqa: E402

from skdlc import FlexRandSampler  # noqa: E402
from skdlc._calibration import calibrate, probe_grid, sample_rows  # noqa: E402
from skdlc import _driver  # noqa: E402
from skdlc._ratios import resolve_mask_ratios  # noqa: E402
from skdlc.baselines import (  # noqa: E402
    EL2NScorer, ForgettingScorer, HerdingScorer, KCenterGreedyScorer, ModerateScorer,
)
from skdlc import SelectionSampler  # noqa: E402
from skdlc.tuning import tune_gamma  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
RAW = RESULTS / "raw"
KEEP = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_NAME = "Default (CV selection)"
#: The default before herding became a candidate (rows of the earlier matrix run).
OLD_DEFAULT_NAME = "Old default (CV, no herding)"
#: The same CV tables, herding ranked after random with a dropped tail (order variant).
ALT_DEFAULT_NAME = "Default, herding after random+tail"
GAP_PATHS = ("paper", "low", "cumulative", "calibrated")
CUMULATIVE = tuple([0.0] + [round(1 - 0.98**k, 4) for k in (10, 20, 30, 40, 50)])


# ----------------------------------------------------------------------------- data
def ratio_key(r: float) -> str:
    return f"{r:.4f}"


class Cached:
    """The cached features of one data set, the fixed pool/test split, the probe space."""

    def __init__(self, dataset: str, test_frac: float = 0.2):
        self.name = dataset
        self.dir = CACHE / dataset
        y = np.load(self.dir / "y.npy")
        self.classes, self.y = np.unique(y, return_inverse=True)
        self.K = self.classes.size
        rng = np.random.RandomState(12345)
        test = np.concatenate([rng.choice(np.flatnonzero(self.y == k),
                                          int(round(test_frac * (self.y == k).sum())), replace=False)
                               for k in range(self.K)])
        self.test = np.sort(test)
        self.pool = np.setdiff1d(np.arange(len(self.y)), self.test)
        self.times = self._times()
        self._feats: dict[tuple, np.ndarray] = {}
        E = self.features("layer", 0.0)
        from sklearn.decomposition import PCA
        pca = PCA(128, random_state=0).fit(E[self.pool])  # label-free, pool only
        Z = pca.transform(E)
        mu, sd = Z[self.pool].mean(0), Z[self.pool].std(0)
        self.Z = (Z - mu) / sd  # probe space of the linear downstream
        self.E = E

    def _times(self) -> dict:
        out = {}
        path = self.dir / "times.tsv"
        if path.exists():
            for line in path.read_text().splitlines():
                m, r, n, t = line.split("\t")
                out[(m, float(r))] = float(t) / int(n)  # seconds per image
        return out

    def pass_time(self, masking: str, r: float, n: int) -> float:
        key = ("layer", 0.0) if r == 0 else (masking, r)
        return self.times.get(key, float("nan")) * n

    def features(self, masking: str, r: float) -> np.ndarray:
        m = "layer" if r == 0 else masking
        key = (m, round(r, 4))
        if key not in self._feats:
            self._feats[key] = np.load(self.dir / f"{m}_{ratio_key(r)}.npy", mmap_mode="r")
        return self._feats[key]

    def has(self, masking: str, r: float) -> bool:
        m = "layer" if r == 0 else masking
        return (self.dir / f"{m}_{ratio_key(r)}.npy").exists()


def noisy_labels(y: np.ndarray, K: int, rate: float, seed: int):
    """Symmetric noise: ``rate`` of the rows get a label drawn from the other classes."""
    if rate <= 0:
        return y.copy(), np.zeros(len(y), bool)
    rng = np.random.RandomState(1000 + seed)
    flip = np.zeros(len(y), bool)
    flip[rng.choice(len(y), int(round(rate * len(y))), replace=False)] = True
    yn = y.copy()
    yn[flip] = (y[flip] + rng.randint(1, K, flip.sum())) % K
    return yn, flip


# ---------------------------------------------------------------------------- scores
def dlc_losses(data: Cached, masking: str, ratios, rows, y_idx) -> np.ndarray:
    """DLCScorer's default estimator on cached features (the library's own loop, fed by an
    ArraySource): masked prototypes, cosine logits at T=0.1."""
    feats = {float(r): np.asarray(data.features(masking, r)[rows], dtype=np.float32) for r in ratios}
    return _driver.fit(_driver.Plan(ratios=tuple(feats)), _driver.ArraySource(feats),
                       y_idx, data.K).losses


def own(losses: np.ndarray, y_idx: np.ndarray) -> np.ndarray:
    return losses[np.arange(len(y_idx)), y_idx]


def calibrated_path(data: Cached, masking: str, y_pool: np.ndarray, seed: int, n_ratios=5):
    rows = sample_rows(y_pool, 300, seed)
    probes = {r: np.asarray(data.features(masking, r)[data.pool[rows]])
              for r in probe_grid(masking) if data.has(masking, r)}
    return calibrate(probes, y_pool[rows], n_ratios)


def paths_for(data: Cached, y_pool: np.ndarray, seed: int) -> dict:
    """name -> (masking, ratios, extra probe cost in image-passes)."""
    paper = resolve_mask_ratios(5, 0)
    out = {"paper": ("layer", paper, 0), "low": ("layer", (0.0, 0.1, 0.2, 0.3, 0.4), 0)}
    if all(data.has("global", r) for r in CUMULATIVE):
        out["cumulative"] = ("global", CUMULATIVE, 0)
    cal = calibrated_path(data, "layer", y_pool, seed)
    out["calibrated"] = ("layer", cal.ratios, cal)
    if all(data.has("global", r) for r in probe_grid("global")):
        calg = calibrated_path(data, "global", y_pool, seed)
        out["calibrated-global"] = ("global", calg.ratios, calg)
    out["unmasked"] = ("layer", (0.0,), 0)
    return out


def path_time(data: Cached, masking: str, ratios, cal, n: int) -> float:
    t = sum(data.pass_time(masking, r, n) for r in ratios)
    if cal:  # the probe passes over the sample
        t += sum(data.pass_time(masking, r, cal.n_rows) for r in cal.probe_ratios)
    return t


def confident_learning(Z: np.ndarray, y_idx: np.ndarray, seed: int) -> np.ndarray:
    """Cleanlab-style self-confidence: 1 - out-of-fold p(given label), 5-fold logistic."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = cross_val_predict(LogisticRegression(C=0.1, max_iter=300), Z, y_idx,
                              cv=StratifiedKFold(5, shuffle=True, random_state=seed),
                              method="predict_proba")
    return 1.0 - p[np.arange(len(y_idx)), y_idx]


# ------------------------------------------------------------------------ downstream
def linear_probe(data: Cached, kept_pool_rows: np.ndarray, y_pool: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    rows = data.pool[kept_pool_rows]
    with warnings.catch_warnings(), threadpool_limits(1, "blas"):
        warnings.simplefilter("ignore")
        clf = LogisticRegression(C=0.1, max_iter=300).fit(data.Z[rows], y_pool[kept_pool_rows])
    return 100.0 * float((clf.predict(data.Z[data.test]) == data.y[data.test]).mean())


class FineTune:
    """CPU fine-tuning downstream: the encoder's last conv stage (conv_head + bn2) + a new head.

    The frozen earlier stages (stem .. blocks[-1]) run once (``ft_in.npy`` cached by
    ``_selection_features.py``, then blocks[-1] applied here and cached as
    ``ft_head_in.npy``: 320 channels x 2 x 2 at 64 px). The 1x1 conv_head and its
    BatchNorm are pre-trained weights that move with the new linear head; they are run
    as a matrix product over the 4 spatial positions (the same arithmetic as the 1x1
    conv, much faster on a CPU). SGD, momentum 0.9, weight decay 1e-5, batch 128, 10 epochs, lr
    0.1 divided by 10 at 50% and 75% of the epochs (tuned once on a random MNIST subset:
    6 epochs at lr 0.01 under-trained it, below the linear probe).
    """

    def __init__(self, data: Cached, epochs: int = 10, lr: float = 0.1):
        import torch

        from _selection_features import backbone

        self.torch = torch
        self.data, self.epochs, self.lr = data, epochs, lr
        m = backbone().module.eval()
        path = data.dir / "ft_head_in.npy"
        if not path.exists():
            x = torch.from_numpy(np.load(data.dir / "ft_in.npy").astype(np.float32))
            with torch.inference_mode():
                h = torch.cat([m.blocks[-1](x[s:s + 512]) for s in range(0, len(x), 512)])
            np.save(path, h.numpy().astype(np.float32))
        h = torch.from_numpy(np.load(path))  # (N, C, H, W)
        n, c = h.shape[:2]
        self.T = h.shape[2] * h.shape[3]
        self.X = h.permute(0, 2, 3, 1).reshape(n, self.T, c).contiguous()  # tokens
        self.conv_w = m.conv_head.weight.detach()[:, :, 0, 0].clone()  # (1280, 320)
        self.bn = {k: v.detach().clone() for k, v in m.bn2.state_dict().items()}

    def _model(self, seed: int):
        torch = self.torch
        nn = torch.nn
        torch.manual_seed(seed)
        lin = nn.Linear(self.conv_w.shape[1], self.conv_w.shape[0], bias=False)
        lin.weight.data.copy_(self.conv_w)
        bn = nn.BatchNorm1d(self.conv_w.shape[0])
        bn.load_state_dict({k: v for k, v in self.bn.items() if k in bn.state_dict()})
        head = nn.Linear(self.conv_w.shape[0], self.data.K)
        T = self.T

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin, self.bn, self.head = lin, bn, head

            def forward(self, x):  # (B, T, C)
                b = x.shape[0]
                z = self.bn(self.lin(x.reshape(b * T, -1)))
                z = torch.nn.functional.relu6(z)  # timm's act of bn2 (BatchNormAct2d)
                return self.head(z.reshape(b, T, -1).mean(1))

        return Net()

    def accuracy(self, kept_pool_rows: np.ndarray, y_pool: np.ndarray, seed: int) -> float:
        torch = self.torch
        torch.set_num_threads(1)
        rows = torch.from_numpy(self.data.pool[kept_pool_rows])
        y = torch.from_numpy(y_pool[kept_pool_rows].astype(np.int64))
        model = self._model(seed)
        opt = torch.optim.SGD(model.parameters(), lr=self.lr, momentum=0.9, weight_decay=1e-5)
        sched = torch.optim.lr_scheduler.MultiStepLR(
            opt, [max(1, self.epochs // 2), max(1, 3 * self.epochs // 4)], 0.1)
        g = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(self.epochs):
            perm = torch.randperm(len(rows), generator=g)
            for s in range(0, len(rows), 128):
                b = perm[s:s + 128]
                if len(b) < 2:
                    continue
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(self.X[rows[b]]), y[b]).backward()
                opt.step()
            sched.step()
        model.eval()
        test = torch.from_numpy(self.data.test)
        with torch.no_grad():
            pred = model(self.X[test]).argmax(1)
        return 100.0 * float((pred.numpy() == self.data.y[self.data.test]).mean())


# --------------------------------------------------------------------------- methods
def ridge_estimator():
    from sklearn.linear_model import RidgeClassifier

    return RidgeClassifier(alpha=1.0)


def paper_flexrand(scores, y_pool, Zp, keep, seed):
    """DLC+FlexRand as in the paper: gamma tuned on a 20% split, then prune all."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = tune_gamma(scores, y_pool, keep_ratio=keep, features=Zp,
                         estimator=ridge_estimator(), random_state=seed)
    kept = FlexRandSampler(keep, res.best_gamma, random_state=seed).fit(
        scores[:, None], y_pool).sample_indices_
    return kept, {"gamma": res.best_gamma}


def cv_default(scores, y_pool, E, keep, seed):
    """The default selection, as skdlc prune runs it: SelectionSampler on the compact float32
    [E | own-class score] (until 2026-12-06: float64 [E | scores per class]; the kept rows of
    every cell whose features are cached here are the same either way)."""
    X = np.column_stack([np.asarray(E, dtype=np.float32), np.asarray(scores, dtype=np.float32)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = SelectionSampler(keep, random_state=seed, score_columns="own_class").fit(X, y_pool)
    choice = sampler.cv_results_["candidate"][sampler.best_index_] if sampler.best_index_ is not None else "random"
    return sampler.sample_indices_, {"choice": choice}


def baseline_scores(data: Cached, y_pool: np.ndarray, seed: int) -> dict:
    """name -> (own scores on the pool, strategy, seconds incl. the embedding pass)."""
    E = np.asarray(data.E[data.pool], dtype=np.float64)
    emb_time = data.pass_time("layer", 0.0, len(data.pool))
    out = {}
    for name, est, strategy in [
        ("Herding", HerdingScorer("precomputed"), "easy"),
        ("kCenterGreedy", KCenterGreedyScorer("precomputed"), "easy"),
        ("Moderate", ModerateScorer("precomputed"), "flexible"),
        ("EL2N", EL2NScorer("precomputed", random_state=seed), "hard"),
        ("Forgetting", ForgettingScorer("precomputed", random_state=seed), "hard"),
    ]:
        Zin = data.Z[data.pool] if name in ("EL2N", "Forgetting") else E
        t0 = time.perf_counter()
        s = est.fit(Zin, y_pool).scores_
        out[name] = (s, strategy, time.perf_counter() - t0 + emb_time)
    return out


# ------------------------------------------------------------------------------ parts
def part_paths(data: Cached, seeds, keeps, log) -> dict:
    res = {"dataset": data.name, "n_pool": int(len(data.pool)), "n_test": int(len(data.test)),
           "rows": [], "auroc": [], "spearman": {}, "calibration": {}}
    y0 = data.y[data.pool]
    paper_clean = own(dlc_losses(data, "layer", resolve_mask_ratios(5, 0), data.pool, y0), y0)
    for noise in (0.0, 0.1, 0.2):
        for seed in seeds:
            yp, flip = noisy_labels(y0, data.K, noise, seed)
            paths = paths_for(data, yp, seed)
            scores = {}
            for name, (masking, ratios, cal) in paths.items():
                scores[name] = own(dlc_losses(data, masking, ratios, data.pool, yp), yp)
                if cal and noise == 0.0 and seed == seeds[0]:
                    res["calibration"][name] = cal.to_dict()
                if noise == 0.0 and seed == seeds[0]:
                    from skdlc.baselines import class_spearman
                    res["spearman"][name] = {
                        "ratios": list(ratios), "masking": masking,
                        "rho_vs_today": class_spearman(scores[name], paper_clean, yp),
                        "passes": len(ratios),
                        "time_s": path_time(data, masking, ratios, cal, len(data.pool))}
            if noise > 0:
                extra = {"EL2N": EL2NScorer("precomputed", random_state=seed).fit(
                            data.Z[data.pool], yp).scores_,
                         "confident learning": confident_learning(data.Z[data.pool], yp, seed)}
                for name, s in {**scores, **extra}.items():
                    res["auroc"].append({"noise": noise, "seed": seed, "score": name,
                                         "auroc": float(roc_auc_score(flip, s))})
            if noise == 0.1:
                continue
            for keep in keeps:
                base = linear_probe(data, FlexRandSampler(keep, strategy="random", random_state=seed)
                                    .fit(y0[:, None] * 0.0, yp).sample_indices_, yp)
                for name, (masking, ratios, cal) in paths.items():
                    if name not in GAP_PATHS:
                        continue  # AUROC and rho only: the gap runs cost the most
                    # FlexRand with the paper's tuning is in the matrix (paper and calibrated
                    # paths); here every path gets the default, cross-validated selection
                    for how, fn in (("cv", cv_default),):
                        kept, info = fn(scores[name], yp, data.Z[data.pool], keep, seed)
                        acc = linear_probe(data, kept, yp)
                        res["rows"].append({"noise": noise, "seed": seed, "keep": keep, "path": name,
                                            "selection": how, "acc": acc, "random": base,
                                            "gap": acc - base, **info})
                log(f"{data.name} paths noise={noise} seed={seed} keep={keep} done")
    return res


def build_methods(data: Cached, yp: np.ndarray, seed: int, default_path: str) -> dict:
    """name -> (fn(keep) -> (kept pool rows, info), scoring seconds)."""
    paths = paths_for(data, yp, seed)
    methods = {}
    t_sc = {}
    for pname in ("paper", default_path):
        masking, ratios, cal = paths[pname]
        t0 = time.perf_counter()
        s = own(dlc_losses(data, masking, ratios, data.pool, yp), yp)
        t_sc[pname] = (s, time.perf_counter() - t0
                       + path_time(data, masking, ratios, cal, len(data.pool)))
    Zp = data.Z[data.pool]
    sp, tp = t_sc["paper"]
    sd, td = t_sc[default_path]
    methods["Random"] = (lambda k: (FlexRandSampler(k, strategy="random", random_state=seed)
                                    .fit(sp[:, None], yp).sample_indices_, {}), 0.0)
    methods["DLC+FlexRand (paper)"] = (lambda k: paper_flexrand(sp, yp, Zp, k, seed), tp)
    methods[f"DLC+FlexRand ({default_path} path)"] = (
        lambda k: paper_flexrand(sd, yp, Zp, k, seed), td)
    # the full-model embedding, as skdlc prune passes it (the sampler projects it per fold)
    Ep = np.asarray(data.E[data.pool], dtype=np.float32)
    methods[DEFAULT_NAME] = (lambda k: cv_default(sd, yp, Ep, k, seed), td)
    for name, (s, strategy, t) in baseline_scores(data, yp, seed).items():
        methods[name] = ((lambda s=s, strategy=strategy: lambda k: (
            FlexRandSampler(k, strategy=strategy, random_state=seed)
            .fit(s[:, None], yp).sample_indices_, {}))(), t)
    return methods


def selections(data: Cached, yp, seed, keeps, names, default_path="calibrated") -> dict:
    """(method, keep) -> kept pool rows, for the methods named (used by selection_gpu.py)."""
    methods = build_methods(data, yp, seed, default_path)
    return {(n, k): methods[n][0](k)[0] for n in names for k in keeps}


def load_images(dataset: str):
    from _selection_features import load

    return load(dataset)


def part_matrix(data: Cached, seeds, keeps, noises, default_path, ft: FineTune | None,
                ft_keeps, ft_methods, log) -> dict:
    res = {"dataset": data.name, "n_pool": int(len(data.pool)), "n_test": int(len(data.test)),
           "default_path": default_path, "rows": [], "times": [], "choices": []}
    y0 = data.y[data.pool]
    for noise in noises:
        for seed in seeds:
            yp, flip = noisy_labels(y0, data.K, noise, seed)
            methods = build_methods(data, yp, seed, default_path)
            for name, (fn, t_score) in methods.items():
                for keep in keeps:
                    t0 = time.perf_counter()
                    kept, info = fn(keep)
                    t_sel = time.perf_counter() - t0
                    row = {"noise": noise, "seed": seed, "keep": keep, "method": name,
                           "probe": linear_probe(data, kept, yp), "time_s": t_score + t_sel,
                           "kept_noisy_share": float(flip[kept].mean()), **info}
                    if ft is not None and keep in ft_keeps and name in ft_methods:
                        row["finetune"] = ft.accuracy(kept, yp, seed)
                    res["rows"].append(row)
                log(f"{data.name} matrix noise={noise} seed={seed} {name} done")
            # partial results survive an interrupted run
            (RAW / f"selection_matrix_{data.name}.partial.json").write_text(json.dumps(res))
    return res


def part_default(data: Cached, seeds, keeps, noises, default_path, ft: FineTune | None,
                 ft_keeps, log) -> dict:
    """Re-run the default's cells only and merge them into the existing matrix JSON."""
    path = RAW / f"selection_matrix_{data.name}.json"
    res = json.loads(path.read_text())
    rows = res["rows"]
    if any(r["method"] == OLD_DEFAULT_NAME for r in rows):  # a re-run: drop our own rows
        rows = [r for r in rows if r["method"] not in (DEFAULT_NAME, ALT_DEFAULT_NAME)]
    else:
        for r in rows:
            if r["method"] == DEFAULT_NAME:
                r["method"] = OLD_DEFAULT_NAME
    y0 = data.y[data.pool]
    E = np.asarray(data.E[data.pool], dtype=np.float32)  # what skdlc prune passes
    new = []
    for noise in noises:
        for seed in seeds:
            yp, flip = noisy_labels(y0, data.K, noise, seed)
            masking, ratios, cal = paths_for(data, yp, seed)[default_path]
            t0 = time.perf_counter()
            s = own(dlc_losses(data, masking, ratios, data.pool, yp), yp)
            t_score = (time.perf_counter() - t0
                       + path_time(data, masking, ratios, cal, len(data.pool)))
            for keep in keeps:
                t0 = time.perf_counter()
                kept, info = cv_default(s, yp, E, keep, seed)
                t_sel = time.perf_counter() - t0
                row = {"noise": noise, "seed": seed, "keep": keep, "method": DEFAULT_NAME,
                       "probe": linear_probe(data, kept, yp), "time_s": t_score + t_sel,
                       "kept_noisy_share": float(flip[kept].mean()), "choice": info["choice"]}
                if ft is not None and keep in ft_keeps:
                    row["finetune"] = ft.accuracy(kept, yp, seed)
                new.append(row)
                log(f"{data.name} default noise={noise} seed={seed} keep={keep}: {info['choice']} "
                    f"probe {row['probe']:.2f}")
    res["rows"] = rows + new
    return res


# ---------------------------------------------------------------------------- report
def sign_test(gaps) -> float:
    gaps = np.asarray(gaps)
    pos, neg = int((gaps > 1e-9).sum()), int((gaps < -1e-9).sum())
    return float(binomtest(pos, pos + neg).pvalue) if pos + neg else 1.0


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=["paths", "matrix", "default", "report"], required=True)
    p.add_argument("--datasets", nargs="+", default=["fashion-mnist", "mnist"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--keep-ratios", nargs="+", type=float, default=list(KEEP))
    p.add_argument("--noise", nargs="+", type=float, default=[0.0, 0.2])
    p.add_argument("--default-path", default="calibrated")
    p.add_argument("--finetune", action="store_true")
    p.add_argument("--finetune-keep", nargs="+", type=float, default=[0.1, 0.3, 0.5])
    p.add_argument("--finetune-epochs", type=int, default=10)
    p.add_argument("--finetune-methods", nargs="+",
                   default=["Random", "DLC+FlexRand (paper)", DEFAULT_NAME, "Herding"])
    a = p.parse_args(argv)
    RAW.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    if a.part == "report":
        from _selection_report import write_report
        write_report(RAW, RESULTS)
        return
    for ds in a.datasets:
        data = Cached(ds)
        if a.part == "paths":
            out = part_paths(data, a.seeds, a.keep_ratios, log)
        elif a.part == "default":
            ft = FineTune(data, a.finetune_epochs) if a.finetune else None
            out = part_default(data, a.seeds, a.keep_ratios, a.noise, a.default_path, ft,
                               a.finetune_keep, log)
        else:
            ft = FineTune(data, a.finetune_epochs) if a.finetune else None
            out = part_matrix(data, a.seeds, a.keep_ratios, a.noise, a.default_path, ft,
                              a.finetune_keep, a.finetune_methods, log)
            out["finetune_epochs"] = a.finetune_epochs if a.finetune else None
        import shlex

        cmd = "python benchmarks/selection.py " + shlex.join(
            [x for x in (argv or sys.argv[1:]) if x not in a.datasets or x == ds])
        if a.part == "default":  # merged into the matrix file; its own command kept beside
            out["commands_default"] = [cmd]
        else:
            out["command"] = cmd
        path = RAW / f"selection_{'matrix' if a.part == 'default' else a.part}_{ds}.json"
        path.write_text(json.dumps(out, indent=1))
        (RAW / f"selection_matrix_{ds}.partial.json").unlink(missing_ok=True)
        log(f"wrote {path}")


if __name__ == "__main__":
    main()
