"""Planted exact and near-duplicates: are they found, and what else is grouped with them?

Part ``planted``: a real image set (MNIST, 5,000 digits; or sklearn's 1,797 digits) plus
copies of ``--n-sources`` of its images, an equal share of each kind:

- ``exact``: the same pixels;
- ``resize_up`` / ``resize_down``: bilinear resize to 1.5x / 0.7x the side;
- ``jpeg``: re-encoded as JPEG at quality 70;
- ``crop``: 2 pixels cut from every border (kept at the smaller size);
- ``crop_jpeg``: both.

A quarter of the copies get another label than their source (planted label conflicts).
Every image is embedded once by the unmasked EfficientNet-Lite0 at 64 px
(``DLCScorer.embed``, cached), exact hashes are ``content_hashes`` of the decoded pixels,
and ``find_duplicates`` runs at each threshold of a sweep. Per threshold: recall per kind
(the copy lands in its source's group), pair precision (planted pairs among all pairs of
rows sharing a found group), group precision (found groups that are exactly a planted
pair), rows grouped that were not planted, and recall of planted conflicts among
``cross_class`` groups.

Part ``scale``: time and memory of ``find_duplicates`` on synthetic embeddings
(1,280-d, the EfficientNet-Lite0 width; clustered, 1% planted near-duplicates) at 10k
and 100k rows, faiss and numpy backends, with the planted pairs' recall.

    nice -n 10 python benchmarks/duplicates.py --part planted --datasets mnist digits
    nice -n 10 python benchmarks/duplicates.py --part scale --rows 10000 100000
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _selection_features as feats  # noqa: E402

from skdlc import content_hashes, find_duplicates, image_thumbnails  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
RAW = RESULTS / "raw"
KINDS = ("exact", "resize_up", "resize_down", "jpeg", "crop", "crop_jpeg")
THRESHOLDS = ("auto", 0.9, 0.94, 0.96, 0.97, 0.98, 0.99, 0.993, 0.996, 0.998)


# ----------------------------------------------------------------------------- planted
def _copy(img: np.ndarray, kind: str) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(img)
    w, h = im.size
    if kind in ("resize_up", "resize_down"):
        f = 1.5 if kind == "resize_up" else 0.7
        im = im.resize((max(4, round(w * f)), max(4, round(h * f))), Image.BILINEAR)
    if kind in ("crop", "crop_jpeg"):
        c = max(1, round(2 * w / 28))
        im = im.crop((c, c, w - c, h - c))
    if kind in ("jpeg", "crop_jpeg"):
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=70)
        im = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return np.asarray(im)


def planted_set(dataset: str, n_sources: int, seed: int = 0):
    """(images as a list, labels, source row of each copy, kind of each copy, conflict mask)."""
    X, y = feats.load(dataset)
    X, y = list(np.asarray(X)), np.asarray(y)
    rng = np.random.RandomState(seed)
    sources = rng.choice(len(X), n_sources, replace=False)
    kinds = np.array([KINDS[i % len(KINDS)] for i in range(n_sources)])
    conflict = rng.rand(n_sources) < 0.25
    classes = np.unique(y)
    copies, labels = [], []
    for s, kind, c in zip(sources, kinds, conflict):
        copies.append(_copy(X[s], kind))
        labels.append(rng.choice(classes[classes != y[s]]) if c else y[s])
    return X + copies, np.concatenate([y, labels]), sources, kinds, conflict


def embed(dataset: str, images, n_sources: int) -> np.ndarray:
    path = feats.CACHE / "duplicates" / f"{dataset}_{n_sources}.npy"
    if path.exists():
        return np.load(path)
    from skdlc import DLCScorer

    t0 = time.perf_counter()
    E = DLCScorer("efficientnet_lite0", image_size=feats.IMAGE_SIZE, verbose=False).embed(images)
    print(f"{dataset}: embedded {len(images)} images in {time.perf_counter() - t0:.1f} s", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, E.astype(np.float32))
    return np.load(path)


def planted_metrics(dup, n_orig, sources, kinds, conflict) -> dict:
    group = np.full(n_orig + len(sources), -1)
    group[dup["row"].to_numpy()] = dup["group"].to_numpy()
    copies = n_orig + np.arange(len(sources))
    found = (group[copies] >= 0) & (group[copies] == group[sources])
    sizes = dup.groupby("group")["row"].agg(list)
    planted_pairs = {frozenset((int(s), int(c))) for s, c in zip(sources, copies)}
    n_pairs = sum(len(r) * (len(r) - 1) // 2 for r in sizes)
    good_pairs = sum(1 for s, c in zip(sources, copies) if group[s] >= 0 and group[s] == group[c])
    exact_groups = sum(1 for r in sizes if len(r) == 2 and frozenset(r) in planted_pairs)
    planted_rows = set(sources.tolist()) | set(copies.tolist())
    cross = dup.groupby("group")["cross_class"].first()
    flagged = np.array([group[c] >= 0 and group[c] == group[s] and bool(cross[group[c]])
                        for s, c in zip(sources, copies)])
    out = {"recall": float(found.mean()),
           "pair_precision": good_pairs / n_pairs if n_pairs else float("nan"),
           "group_precision": exact_groups / len(sizes) if len(sizes) else float("nan"),
           "groups": int(len(sizes)),
           "unplanted_rows": int(sum(1 for r in dup["row"] if int(r) not in planted_rows)),
           "conflict_recall": float(flagged[conflict].mean()) if conflict.any() else float("nan")}
    for k in KINDS:
        out[f"recall_{k}"] = float(found[kinds == k].mean())
    return out


def run_planted(datasets, n_sources: int) -> list[dict]:
    rows = []
    for d in datasets:
        images, y, sources, kinds, conflict = planted_set(d, n_sources)
        n_orig = len(images) - n_sources
        E = embed(d, images, n_sources)
        t0 = time.perf_counter()
        hashes = content_hashes(images)
        t_hash = time.perf_counter() - t0
        t0 = time.perf_counter()
        thumbs = image_thumbnails(images, 16)
        t_thumb = time.perf_counter() - t0
        for name, desc, t_desc in (("embedding", E, 0.0), ("thumbnail 16 px", thumbs, t_thumb)):
            for th in THRESHOLDS:
                t0 = time.perf_counter()
                dup = find_duplicates(desc, y=y, hashes=hashes, threshold=th)
                dt = time.perf_counter() - t0
                m = planted_metrics(dup, n_orig, sources, kinds, conflict)
                rows.append(dict(dataset=d, n=len(images), descriptor=name, threshold=th,
                                 threshold_used=dup.attrs["threshold"],
                                 seconds=dt + t_hash + t_desc, **m))
                print(f"{d} {name} t={th}: recall {m['recall']:.3f} pair precision {m['pair_precision']:.3f} "
                      f"groups {m['groups']} unplanted rows {m['unplanted_rows']}", flush=True)
    return rows


# ------------------------------------------------------------------------------- scale
def synthetic(n: int, d: int = 1280, seed: int = 0):
    """Clustered unit vectors (n/50 clusters) + 1% near-duplicate copies (cosine ~0.98)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(2, n // 50), d)).astype(np.float32)
    X = np.empty((n, d), np.float32)
    for s in range(0, n, 10_000):  # in blocks: the generator's peak memory stays small
        m = min(10_000, n - s)
        X[s:s + m] = centres[rng.integers(0, len(centres), m)] + 0.9 * rng.standard_normal((m, d), np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    m = n // 100
    src = rng.choice(n - m, m, replace=False)
    noise = rng.normal(size=(m, d)).astype(np.float32)
    X[n - m:] = X[src] + 0.2 * noise / np.linalg.norm(noise, axis=1, keepdims=True)
    return X, src, np.arange(n - m, n)


def run_scale(sizes, backends) -> list[dict]:
    import subprocess

    rows = []
    for n in sizes:
        for b in backends:
            cmd = [sys.executable, __file__, "--part", "scale-one", "--rows", str(n), "--backend", b]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            rows.append(json.loads(out))
            print(rows[-1], flush=True)
    return rows


def scale_one(n: int, backend: str) -> dict:
    X, src, cp = synthetic(n)
    t0 = time.perf_counter()
    dup = find_duplicates(X, threshold=0.95, backend=backend)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    group = np.full(n, -1)
    group[dup["row"].to_numpy()] = dup["group"].to_numpy()
    recall = float(((group[cp] >= 0) & (group[cp] == group[src])).mean())
    return dict(rows=n, dim=X.shape[1], backend=backend, seconds=dt, recall=recall,
                peak_rss_mib=peak / 1024, data_mib=X.nbytes / 2**20)


# ------------------------------------------------------------------------------ report
def report(planted, scale, commands) -> str:
    out = ["# Duplicates: planted exact and near-duplicates, and time at scale", "",
           "Made by " + " and ".join(f"`{c}`" for c in commands) + " (benchmarks/duplicates.py).", ""]
    if planted:
        out += ["## Planted copies in a real set", "",
                "Recall: copies found in their source's group (per kind of copy); pair precision: "
                "planted pairs among all pairs of rows sharing a found group; group precision: found "
                "groups that are exactly one planted pair; unplanted rows: original rows grouped with "
                "something though no copy of them was planted; conflicts: planted copies with another "
                "label whose group is flagged `cross_class`. Exact duplicates come from decoded-pixel hashes "
                "(`content_hashes`); near ones from the cosine of the descriptor: the DLC embedding (unmasked "
                "EfficientNet-Lite0, 64 px) or `image_thumbnails(size=16)`.", ""]
        for d in dict.fromkeys(r["dataset"] for r in planted):
            sub = [r for r in planted if r["dataset"] == d]
            out += [f"### {d} ({sub[0]['n']} images, {len(KINDS)} kinds of copy)", "",
                    "| descriptor | threshold | recall | " + " | ".join(KINDS) + " | pair precision | group precision "
                    "| groups | unplanted rows | conflicts flagged | time (s) |",
                    "|---" * (9 + len(KINDS)) + "|"]
            for r in sub:
                th = (f"auto ({r['threshold_used']:.4f})" if r["threshold"] == "auto" else f"{r['threshold']:.3f}")
                cells = [r["descriptor"], th, f"{r['recall']:.3f}"]
                cells += [f"{r['recall_' + k]:.2f}" for k in KINDS]
                cells += [f"{r['pair_precision']:.3f}", f"{r['group_precision']:.3f}", str(r["groups"]),
                          str(r["unplanted_rows"]), f"{r['conflict_recall']:.3f}", f"{r['seconds']:.2f}"]
                out.append("| " + " | ".join(cells) + " |")
            out.append("")
    if scale:
        out += ["## Time at scale (synthetic 1,280-d embeddings, threshold 0.95)", "",
                "| rows | backend | seconds | planted-pair recall | peak memory of the process (MiB) | embeddings (MiB) |",
                "|---|---|---|---|---|---|"]
        for r in scale:
            out.append(f"| {r['rows']:,} | {r['backend']} | {r['seconds']:.1f} | {r['recall']:.3f} | "
                       f"{r.get('peak_rss_mib', float('nan')):.0f} | {r['data_mib']:.0f} |")
        out.append("")
    return "\n".join(out) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("planted", "scale", "scale-one", "report"), default="planted")
    p.add_argument("--datasets", nargs="+", default=["mnist", "digits"])
    p.add_argument("--n-sources", type=int, default=300)
    p.add_argument("--rows", nargs="+", type=int, default=[10_000, 100_000])
    p.add_argument("--backend", nargs="+", default=["faiss", "numpy"])
    a = p.parse_args(argv)
    if a.part == "scale-one":
        print(json.dumps(scale_one(a.rows[0], a.backend[0])))
        return
    RAW.mkdir(parents=True, exist_ok=True)
    raw = RAW / "duplicates.json"
    state = json.loads(raw.read_text()) if raw.exists() else {"planted": [], "scale": [], "commands": {}}
    if a.part == "planted":
        state["planted"] = run_planted(a.datasets, a.n_sources)
        state["commands"]["planted"] = ("nice -n 10 python benchmarks/duplicates.py --part planted --datasets "
                                        + " ".join(a.datasets))
    elif a.part == "scale":
        new = run_scale(a.rows, a.backend)
        done = {(r["rows"], r["backend"]) for r in new}
        state["scale"] = sorted([r for r in state["scale"] if (r["rows"], r["backend"]) not in done] + new,
                                key=lambda r: (r["rows"], r["backend"]))
        cmd = ("OMP_NUM_THREADS=1 nice -n 10 python benchmarks/duplicates.py --part scale --rows "
               + " ".join(map(str, a.rows)) + " --backend " + " ".join(a.backend))
        state["commands"][f"scale {' '.join(a.backend)}"] = cmd
    latest = json.loads(raw.read_text()) if raw.exists() else state  # another part may have finished meanwhile
    for part in ("planted", "scale"):
        if part != a.part:
            state[part] = latest.get(part, state[part])
    state["commands"] = {**latest.get("commands", {}), **state["commands"]}
    raw.write_text(json.dumps(state, indent=1))
    text = report(state["planted"], state["scale"], list(state["commands"].values()))
    (RESULTS / "duplicates.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
