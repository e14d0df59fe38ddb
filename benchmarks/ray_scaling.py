"""Ray backend: throughput with 1 vs 2 local workers, and its overhead vs the local path.

Every configuration scores the same N synthetic PNG images (a list of paths, decoded by
the scorer: DataLoader workers locally, the actors on Ray) with the same backbone and
ratios, each in a fresh process, so that each Ray run starts its own local Ray:

- ``local``: ``backend="local"`` as it comes: torch on all the process's cores (2
  threads here), one decoding worker;
- ``local1``: the same with ``torch.set_num_threads(1)``;
- ``ray1`` / ``ray2``: ``backend="ray"`` on ``ray.init(num_cpus=1 | 2)``, i.e. 1 or 2
  CPU actors of one torch thread each.

Scoring time is ``fit_transform`` alone; starting Ray (``ray.init``) is reported apart,
as a cluster is started once for many runs. Overhead = ray2 / best local - 1, at
equal resources (the machine's 2 cores), best local being the faster of local and
local1. The scores of every run are checked against the
local run's (max |difference|).

    nice -n 10 python benchmarks/ray_scaling.py --n 10000 --out benchmarks/results/ray_scaling.md
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
import json, sys, time, os
import numpy as np
cfg = json.loads(sys.argv[1])
t0 = time.perf_counter()
if cfg["backend"] == "ray":
    import ray
    ray.init(num_cpus=cfg["workers"], include_dashboard=False, log_to_driver=False,
             configure_logging=False)
t_init = time.perf_counter() - t0
if cfg["threads"]:
    import torch
    torch.set_num_threads(cfg["threads"])
from skdlc import DLCScorer
paths = [l.rstrip("\n") for l in open(cfg["list"])]
y = np.arange(len(paths)) % 10
s = DLCScorer(cfg["backbone"], image_size=cfg["image_size"], mask_ratios=cfg["ratios"],
              batch_size=cfg["batch_size"], device="cpu", verbose=False, backend=cfg["backend"])
t1 = time.perf_counter()
out = s.fit_transform(paths, y)
t_score = time.perf_counter() - t1
np.save(cfg["scores"], out)
print(json.dumps({"t_init": t_init, "t_score": t_score}))
"""


def _write_images(folder: Path, n: int, size: int, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = rng.integers(30, 225, (10, 3))
    lst = folder / "paths.txt"
    with open(lst, "w") as f:
        for i in range(n):
            img = np.clip(colours[i % 10] + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
            p = folder / f"{i:06d}.png"
            Image.fromarray(img).save(p)
            f.write(f"{p}\n")
    return lst


def _run(cfg: dict, timeout: float) -> dict:
    r = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(cfg)], capture_output=True, text=True,
                       timeout=timeout, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"{cfg['name']} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--pixels", type=int, default=32, help="side of the synthetic PNGs")
    ap.add_argument("--backbone", default="squeezenet1_1")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--ratios", default="0,0.3,0.6")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--configs", default="local,local1,ray2,ray1")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    ratios = [float(r) for r in args.ratios.split(",")]
    load0 = os.getloadavg()
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        lst = _write_images(tmp, args.n, args.pixels)
        print(f"wrote {args.n} PNGs in {time.perf_counter() - t:.1f} s", flush=True)
        for rep in range(args.repeats):
            for name in args.configs.split(","):
                cfg = {
                    "name": name, "list": str(lst), "backbone": args.backbone, "image_size": args.image_size,
                    "ratios": ratios, "batch_size": args.batch_size,
                    "backend": "ray" if name.startswith("ray") else "local",
                    "workers": int(name[3:]) if name.startswith("ray") else 0,
                    "threads": int(name[5:]) if name.startswith("local") and name[5:] else 0,
                    "scores": str(tmp / f"{name}_{rep}.npy"),
                }
                r = _run(cfg, args.timeout)
                r["scores"] = np.load(cfg["scores"])
                results.setdefault(name, []).append(r)
                print(f"{name} rep {rep}: score {r['t_score']:.1f} s, init {r['t_init']:.1f} s, "
                      f"{args.n / r['t_score']:.1f} img/s", flush=True)
    load1 = os.getloadavg()
    local_names = [k for k in results if k.startswith("local")]
    ref = results[local_names[0]][0]["scores"] if local_names else None
    rows = []
    for name, runs in results.items():
        ts = [r["t_score"] for r in runs]
        diff = max(float(np.abs(r["scores"] - ref).max()) for r in runs) if ref is not None else float("nan")
        rows.append((name, min(ts), float(np.median(ts)), float(np.median([r["t_init"] for r in runs])), diff))
    best = {name: t for name, t, *_ in rows}
    lines = [
        "# Ray backend: 1 vs 2 workers, overhead vs the local path",
        "",
        "Command:",
        "",
        "```",
        "nice -n 10 python benchmarks/ray_scaling.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "```",
        "",
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}; "
        f"shared with other jobs: load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end "
        "(so absolute times are noisy; configurations alternate within each repeat).",
        f"Data: {args.n} synthetic {args.pixels}x{args.pixels} PNG files (paths), 10 classes. Backbone "
        f"{args.backbone} at {args.image_size} px, mask ratios {ratios} (T={len(ratios)}), batch {args.batch_size}.",
        f"Repeats: {args.repeats} (best and median shown).",
        "",
        "| config | scoring s (best) | scoring s (median) | images/s (best) | ray.init s | max abs diff vs first local |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, tmin, tmed, tinit, diff in rows:
        lines.append(f"| {name} | {tmin:.1f} | {tmed:.1f} | {args.n / tmin:.1f} | "
                     f"{tinit:.1f} | {diff:.2e} |")
    lines.append("")
    if "ray1" in best and "ray2" in best:
        lines.append(f"- Speed-up 2 vs 1 Ray workers: {best['ray1'] / best['ray2']:.2f}x.")
    locals_ = {k: v for k, v in best.items() if k.startswith("local")}
    if locals_ and "ray2" in best:
        name, t_local = min(locals_.items(), key=lambda kv: kv[1])
        lines.append(f"- Overhead of the Ray path (2 workers) vs the fastest local configuration ({name}) "
                     f"at equal resources: {100 * (best['ray2'] / t_local - 1):+.1f}% (scoring time, best of "
                     "repeats; ray.init not included); "
                     f"{100 * ((best['ray2'] + dict((r[0], r[3]) for r in rows)['ray2']) / t_local - 1):+.1f}% "
                     "with ray.init.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
