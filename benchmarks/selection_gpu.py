"""Downstream (iii): the paper's full fine-tuning of the subsets, for a GPU machine.

NOT RUN in the benchmark recorded in benchmarks/results/selection.md: no GPU was lent
to that task. Sized for under 8 minutes on one H200 with the defaults (Fashion-MNIST,
pool 8,000 images at 64 px, 3 methods x 3 keep ratios x 1 seed, 15 epochs).

It rebuilds the same selections as ``benchmarks/selection.py`` from the cached features
(``benchmarks/_selection_features.py`` must have run; the selection is numpy and cheap),
then fine-tunes the whole EfficientNet-Lite0 (ImageNet weights) + a new head on each
subset: SGD momentum 0.9, weight decay 1e-5, batch 128, lr 1e-3 (head 1e-2) divided by
10 at 50% and 75% of the epochs, flip augmentation, and reports clean-test accuracy.

    python benchmarks/selection_gpu.py --dataset fashion-mnist --noise 0 0.2 --keep 0.1 0.3 0.5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import selection as S  # noqa: E402


def finetune(X, y, rows, test, y_test, K, epochs, seed, device):
    import torch

    from _selection_features import backbone

    torch.manual_seed(seed)
    bb = backbone()
    body = bb.module.to(device).train()
    head = torch.nn.Linear(bb.num_features or 1280, K).to(device)
    opt = torch.optim.SGD([{"params": body.parameters(), "lr": 1e-3},
                           {"params": head.parameters(), "lr": 1e-2}],
                          momentum=0.9, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [epochs // 2, 3 * epochs // 4], 0.1)
    from skdlc._data import preprocess_uint8

    pp = bb.preprocessing
    Xt = preprocess_uint8(X, pp).to(device)  # whole set on the GPU: 10,000 x 3 x 64 x 64
    yt = torch.as_tensor(y, device=device)
    rows_t = torch.as_tensor(rows, device=device)
    for _ in range(epochs):
        perm = rows_t[torch.randperm(len(rows_t), device=device)]
        for s in range(0, len(perm), 128):
            b = perm[s:s + 128]
            xb = Xt[b]
            flip = torch.rand(len(b), device=device) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
                loss = torch.nn.functional.cross_entropy(head(body(xb)), yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    body.eval()
    with torch.no_grad():
        pred = torch.cat([head(body(Xt[torch.as_tensor(test[s:s + 1024], device=device)])).argmax(1)
                          for s in range(0, len(test), 1024)]).cpu().numpy()
    return 100.0 * float((pred == y_test).mean())


def main(argv=None):
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--noise", nargs="+", type=float, default=[0.0, 0.2])
    p.add_argument("--keep", nargs="+", type=float, default=[0.1, 0.3, 0.5])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--methods", nargs="+", default=["Random", "DLC+FlexRand (paper)", S.DEFAULT_NAME])
    a = p.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = S.Cached(a.dataset)
    X, _ = S.load_images(a.dataset)
    rows_out = []
    t0 = time.perf_counter()
    for noise in a.noise:
        for seed in a.seeds:
            yp, flip = S.noisy_labels(data.y[data.pool], data.K, noise, seed)
            sel = S.selections(data, yp, seed, a.keep, a.methods)
            y_all = data.y.copy()
            y_all[data.pool] = yp
            for (method, keep), kept in sel.items():
                acc = finetune(X, y_all, data.pool[kept], data.test, data.y[data.test], data.K,
                               a.epochs, seed, device)
                rows_out.append({"noise": noise, "seed": seed, "keep": keep, "method": method,
                                 "full_finetune": acc})
                print(f"[{time.perf_counter() - t0:6.0f}s] {noise} {seed} {keep} {method}: {acc:.2f}",
                      flush=True)
    out = S.RAW / f"selection_gpu_{a.dataset}.json"
    out.write_text(json.dumps({"rows": rows_out, "device": device, "epochs": a.epochs,
                               "command": "python benchmarks/selection_gpu.py " + " ".join(sys.argv[1:])},
                              indent=1))
    print("wrote", out)


if __name__ == "__main__":
    main()
