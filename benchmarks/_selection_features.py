"""Compute and cache, once, every feature matrix the selection benchmark needs.

One (data set, masking, ratio) feature matrix is one forward pass over the images; it is
saved as ``<cache>/<dataset>/<masking>_<ratio>.npy`` (float32, rows in data order) and
never recomputed. Label noise changes labels only, so every noise level reuses them.
Also cached: the activations of the frozen early stages (input of the fine-tuned last
stages, ``ft_in.npy``) for the CPU fine-tuning downstream.

    nice -n 10 python benchmarks/_selection_features.py --dataset fashion-mnist
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("SKDLC_SELECTION_CACHE", Path.home() / ".cache/skdlc/benchmarks/selection"))
LAYER = [0.0, 0.1, 0.05, 0.2, 0.15, 0.3, 0.4, 0.5, 0.6, 0.8, 0.54, 0.62]
GLOBAL = [round(1 - 0.98**k, 4) for k in (10, 20, 30, 40, 50)] + [0.8, 0.9]
IMAGE_SIZE = 64


TEXT_SETS = {"20newsgroups": 100, "reuters8": 250}  # texts per class (2,000 and 1,695)


def load(dataset: str):
    from skdlc import datasets

    if dataset in TEXT_SETS:
        return datasets.load_text_classification(dataset, n_per_class=TEXT_SETS[dataset], random_state=0)

    if dataset == "fashion-mnist":
        return datasets.load_fashion_mnist(return_X_y=True)  # the 10,000 test images
    if dataset == "mnist":
        return datasets.load_mnist(return_X_y=True)
    if dataset == "digits":  # sklearn's 1,797 8x8 digits (0-16) as uint8 RGB images
        from sklearn.datasets import load_digits

        d = load_digits()
        img = np.round(d.images * (255 / 16)).astype(np.uint8)
        return np.repeat(img[..., None], 3, axis=3), d.target
    raise ValueError(dataset)


def feature_path(dataset: str, masking: str, ratio: float) -> Path:
    return CACHE / dataset / f"{masking}_{ratio:.4f}.npy"


def backbone():
    from skdlc._backbones import create_backbone

    bb = create_backbone("efficientnet_lite0")
    pp = dataclasses.replace(bb.preprocessing, input_size=(IMAGE_SIZE, IMAGE_SIZE))
    return dataclasses.replace(bb, preprocessing=pp)


def extract(dataset: str, masking: str, ratios) -> None:
    from skdlc._data import make_batches
    from skdlc._onnx import OnnxEngine

    X, y = load(dataset)
    out = CACHE / dataset
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "y.npy", np.asarray(y))
    text = dataset in TEXT_SETS
    if text:  # MiniLM, torch engine (ONNX Runtime runs image backbones only)
        from skdlc._backbones import create_backbone
        import torch

        from skdlc._engine import TorchEngine

        bb = create_backbone("all-MiniLM-L6-v2")
    else:
        bb = backbone()
    batches = make_batches(X, bb, 64 if text else 256)
    for r in ratios:
        # ratio 0 is the same unmasked model for both maskings: stored once, as "layer"
        path = feature_path(dataset, "layer" if r == 0 else masking, r)
        if path.exists():
            continue
        engine = (TorchEngine(bb, masking=masking, device=torch.device("cpu"), keep_variants=False, num_workers=0)
                  if text else
                  OnnxEngine.from_backbone(bb, masking=masking, keep_variants=False, num_workers=0))
        t0 = time.perf_counter()
        for _, f in engine.features(batches, [r], desc=f"{dataset} {masking} {r}", decodes=text):
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, f.astype(np.float32))
            tmp.rename(path)
        dt = time.perf_counter() - t0
        with open(out / "times.tsv", "a") as fh:
            fh.write(f"{masking}\t{r}\t{len(y)}\t{dt:.2f}\n")
        print(f"{dataset} {masking} {r}: {dt:.1f} s ({len(y) / dt:.1f} img/s)", flush=True)


def finetune_inputs(dataset: str) -> None:
    """Activations entering the last stage (timm blocks[-1]) of the unmasked model."""
    import torch

    from skdlc._data import make_batches

    path = CACHE / dataset / "ft_in.npy"
    if path.exists():
        return
    X, _ = load(dataset)
    bb = backbone()
    m = bb.module.eval()
    batches = make_batches(X, bb, 256)
    outs = []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for j in range(len(batches)):
            x = batches[j]
            h = m.bn1(m.conv_stem(x))
            for blk in m.blocks[:-1]:
                h = blk(h)
            outs.append(h.numpy().astype(np.float16))
    np.save(path, np.concatenate(outs))
    print(f"{dataset} ft_in {np.concatenate(outs).shape}: {time.perf_counter() - t0:.1f} s", flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", required=True)
    p.add_argument("--what", default="layer,global,ft")
    p.add_argument("--ratios", nargs="+", type=float, default=None,
                   help="layer ratios to extract (default: all of LAYER); text sets: the paper draw")
    a = p.parse_args(argv)
    what = a.what.split(",")
    if "layer" in what:
        extract(a.dataset, "layer", a.ratios or LAYER)
    if "global" in what:
        extract(a.dataset, "global", GLOBAL)
    if "ft" in what:
        finetune_inputs(a.dataset)


if __name__ == "__main__":
    main()
