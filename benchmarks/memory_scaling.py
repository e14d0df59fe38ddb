"""Peak memory vs N: chunked scoring (``memory=`` + a streamed manifest) stays flat.

N synthetic small PNG images are scored, each N in a fresh process, two ways:

- ``chunked``: a :class:`skdlc._chunks.PathManifest` (a text file of paths, streamed:
  only an index of line offsets is in memory) and ``memory=<folder>``: each chunk's
  features go to ``.npy`` files and are read back memory-mapped, a chunk at a time;
- ``in-memory``: a Python list of the same paths, no cache: every variant's
  (N, D) features are held in memory (the local path without ``memory``).

The backbone is a small CNN with D=256 features (so that features, not the model,
dominate), 8x8 inputs, T=3 ratios, 10 classes. Reported: the process's peak resident
memory (VmHWM) and its growth over the baseline after imports and model creation.
What must still grow with N in the chunked path is the output itself (N x 10 float64
scores), the labels and the manifest's offsets: about 0.2 kB a sample.

    nice -n 10 python benchmarks/memory_scaling.py --n 1000,10000,100000 --out benchmarks/results/memory_scaling.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

_CHILD = r"""
import json, sys, time
import numpy as np, torch
cfg = json.loads(sys.argv[1])
torch.manual_seed(0)
from skdlc import DLCScorer, Backbone, Preprocessing
from skdlc._chunks import PathManifest

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
net = torch.nn.Sequential(
    torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(),
    torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(),
    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 256),
)
bb = Backbone("small_cnn_d256", net, Preprocessing(input_size=(8, 8)), 256)
n = cfg["n"]
y = np.arange(n) % 10
if cfg["mode"] == "chunked":
    # The manifest lists the largest N: its first n lines become this run's manifest.
    import itertools
    sub = cfg["cache"] + f"/manifest_{n}.txt"
    with open(cfg["manifest"]) as f, open(sub, "w") as g:
        g.writelines(itertools.islice(f, n))
    X, mem = PathManifest(sub), cfg["cache"]
else:
    X = [l.rstrip("\n") for _, l in zip(range(n), open(cfg["manifest"]))]
    mem = None
base = rss("VmRSS:")
s = DLCScorer(bb, mask_ratios=[0, 0.3, 0.6], batch_size=256, device="cpu", verbose=False,
              memory=mem, chunk_size=8192, num_workers=0)
t = time.perf_counter()
out = s.fit_transform(X, y)
dt = time.perf_counter() - t
print(json.dumps({"base": base, "peak": rss("VmHWM:"), "t": dt, "checksum": float(out[:1000].sum())}))
"""


def _write_images(folder: Path, n: int, size: int = 8) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = rng.integers(30, 225, (10, 3))
    manifest = folder / "manifest.txt"
    with open(manifest, "w") as f:
        for i in range(n):
            img = np.clip(colours[i % 10] + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
            p = folder / f"{i // 10000:03d}" / f"{i:07d}.png"
            p.parent.mkdir(exist_ok=True)
            Image.fromarray(img).save(p)
            f.write(f"{p}\n")
    return manifest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="1000,10000,100000")
    ap.add_argument("--modes", default="chunked,in-memory")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    ns = [int(float(v)) for v in args.n.split(",")]
    rows = []
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        manifest = _write_images(tmp, max(ns))
        print(f"wrote {max(ns)} PNGs in {time.perf_counter() - t:.1f} s", flush=True)
        for n in ns:
            for mode in args.modes.split(","):
                cache = tmp / f"cache_{mode}_{n}"
                cache.mkdir()
                cfg = {"n": n, "mode": mode, "manifest": str(manifest), "cache": str(cache)}
                r = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(cfg)], capture_output=True,
                                   text=True, timeout=args.timeout, cwd=ROOT)
                if r.returncode != 0:
                    raise RuntimeError(r.stderr[-3000:])
                res = json.loads(r.stdout.strip().splitlines()[-1])
                rows.append((n, mode, res))
                print(n, mode, f"peak {res['peak'] / 2**20:.0f} MiB, +{(res['peak'] - res['base']) / 2**20:.0f} MiB "
                      f"over baseline, {res['t']:.1f} s", flush=True)
    load1 = os.getloadavg()
    lines = [
        "# Peak memory vs N: chunked (memory=, streamed manifest) vs in-memory scoring",
        "",
        "Command:",
        "",
        "```",
        "nice -n 10 python benchmarks/memory_scaling.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "```",
        "",
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}; "
        f"load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end (shared machine).",
        "Data: synthetic 8x8 PNG files, 10 classes. Backbone: a small CNN with 256 features "
        "(8x8 input), mask ratios [0, 0.3, 0.6], batch 256, chunk_size 8192.",
        "Peak = the scoring process's VmHWM; growth = peak minus its resident memory after "
        "imports, model and data set-up (just before fit_transform).",
        "",
        "| N | mode | peak MiB | growth MiB | scoring s |",
        "| ---: | --- | ---: | ---: | ---: |",
    ]
    for n, mode, res in rows:
        lines.append(f"| {n} | {mode} | {res['peak'] / 2**20:.0f} | {(res['peak'] - res['base']) / 2**20:.0f} | "
                     f"{res['t']:.1f} |")
    checks: dict[int, list[float]] = {}
    for n, mode, res in rows:
        checks.setdefault(n, []).append(res["checksum"])
    same = all(np.allclose(v, v[0], rtol=1e-9) for v in checks.values())
    lines += ["", f"- Chunked and in-memory scores agree (checksum of the first 1000 rows): {same}."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
