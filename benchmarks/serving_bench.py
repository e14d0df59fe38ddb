"""Serving benchmark: requests/s and p50/p99 latency of DLC scoring behind TorchServe.

One command (about 3 minutes on 2 CPU cores)::

    nice -n 10 python benchmarks/serving_bench.py --out benchmarks/results/serving.md

What it does:

1. fits the default ``DLCScorer("efficientnet_lite0", image_size=...)`` (5 mask ratios,
   ImageNet weights shipped in a pip package) on ``--n-per-class`` real Fashion-MNIST images
   per class (``skdlc.datasets.load_fashion_mnist``, cached locally) and saves it with joblib;
2. builds one archive per (engine, server batching): ``torch`` / ``onnx`` (when
   ``skdlc._onnx`` and onnxruntime are installed) x batch 1 / ``batchSize=--batch``
   with ``maxBatchDelay=--delay`` ms, each with one worker;
3. starts one real TorchServe on 127.0.0.1 (free ports, token authorisation on) with
   all archives, checks that the served scores equal ``DLCScorer.score_samples``, then
   for each archive and client concurrency (1 and ``--concurrency``) sends
   ``--requests`` requests (one 32x32 PNG each, with its label) after a warm-up, and
   records throughput and latency percentiles;
4. stops the server and writes a markdown table (``--out``) and raw JSON beside it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import joblib
import numpy as np
import requests
import torch
from PIL import Image

from skdlc import DLCScorer, __version__
from skdlc import _serve
from skdlc.datasets import load_fashion_mnist


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _onnx_available() -> str | None:
    """None when the ONNX engine can be benchmarked, else why not."""
    try:
        import onnxruntime  # noqa: F401

        from skdlc import _onnx  # noqa: F401
    except ImportError as exc:
        return f"not benchmarked: {exc}"
    return None


def run_load(url: str, headers: dict, bodies: list[tuple[bytes, str]], n: int, concurrency: int) -> dict:
    """Send ``n`` requests from ``concurrency`` threads; latency stats in ms."""
    local = threading.local()
    lat = np.zeros(n)
    codes = np.zeros(n, dtype=int)
    batch = np.zeros(n, dtype=int)

    def one(i: int) -> None:
        s = getattr(local, "s", None)
        if s is None:
            s = local.s = requests.Session()
        body, label = bodies[i % len(bodies)]
        t = time.perf_counter()
        r = s.post(url, data=body, headers={**headers, "X-Label": label}, timeout=120)
        lat[i] = (time.perf_counter() - t) * 1000
        codes[i] = r.status_code
        batch[i] = int(r.headers.get("X-Skdlc-Batch-Size", 0))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n)))
    wall = time.perf_counter() - t0
    return {
        "requests": n,
        "concurrency": concurrency,
        "ok": int((codes == 200).sum()),
        "req_per_s": n / wall,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "mean_server_batch": float(batch.mean()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-per-class", type=int, default=10, help="Fashion-MNIST images per class to fit on")
    ap.add_argument("--image-size", type=int, default=128, help="DLCScorer image_size")
    ap.add_argument("--requests", type=int, default=200, help="requests per measurement")
    ap.add_argument("--concurrency", type=int, default=8, help="client threads for the loaded runs")
    ap.add_argument("--batch", type=int, default=8, help="TorchServe batchSize of the batched archives")
    ap.add_argument("--delay", type=int, default=10, help="TorchServe maxBatchDelay (ms) of the batched archives")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch / ONNX Runtime threads per worker (and for fitting here)")
    ap.add_argument("--engines", default="torch,onnx", help="comma-separated: torch, onnx")
    ap.add_argument("--out", default="benchmarks/results/serving.md")
    args = ap.parse_args(argv)
    command = "nice -n 10 python benchmarks/serving_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])

    torch.set_num_threads(args.threads)  # on a shared 2-core machine more threads only spin
    data = load_fashion_mnist(n_per_class=args.n_per_class, random_state=0)
    X, y = data.images, np.asarray(data.target_names)[data.target]
    root = Path(tempfile.mkdtemp(prefix="skdlc-serving-bench-"))
    t = time.perf_counter()
    scorer = DLCScorer("efficientnet_lite0", image_size=args.image_size, device="cpu", random_state=0,
                       verbose=False).fit(X, y)
    fit_s = time.perf_counter() - t
    joblib.dump(scorer, root / "scorer.joblib")
    ref = scorer.score_samples(X, y)
    print(f"fitted on {len(X)} images in {fit_s:.1f} s; mask ratios {scorer.mask_ratios_}", flush=True)

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    notes = {}
    if "onnx" in engines and (why := _onnx_available()):
        notes["onnx"] = why
        engines.remove("onnx")
    store = root / "store"
    configs = []
    sources = {"torch": root / "scorer.joblib"}
    if "onnx" in engines:
        from skdlc._onnx import export_scorer

        sources["onnx"] = export_scorer(scorer, root / "onnx")  # once, for both onnx archives
    for engine in engines:
        for bs, delay in ((1, 0), (args.batch, args.delay)):
            name = f"{engine}-b{bs}"
            _serve.build_archive(sources[engine], store, model_name=name, engine=engine,
                                 batch_size=bs, max_batch_delay=delay,
                                 handler_settings={"num_threads": args.threads})
            configs.append((name, engine, bs, delay))
    ports = dict(zip(_serve.DEFAULT_PORTS, _serve.free_ports(5)))
    t = time.perf_counter()
    server = _serve.start_server(store, state_dir=root / "state", ports=ports, timeout=300)
    start_s = time.perf_counter() - t
    rows = []
    load_before = os.getloadavg()[0]
    try:
        headers = server.headers()
        bodies = [(_png(x), str(lbl)) for x, lbl in zip(X, y)]
        for name, engine, bs, delay in configs:
            url = f"{server.url()}/predictions/{name}"
            got = [requests.post(url, data=b, headers={**headers, "X-Label": lb}, timeout=120).json()["score"]
                   for b, lb in bodies[:20]]
            diff = float(np.max(np.abs(np.asarray(got) - ref[:20])))
            run_load(url, headers, bodies, 16, args.concurrency)  # warm-up
            for conc in (1, args.concurrency):
                res = run_load(url, headers, bodies, args.requests, conc)
                res.update(model=name, engine=engine, server_batch=bs, max_batch_delay_ms=delay,
                           max_abs_diff_vs_scorer=diff)
                rows.append(res)
                print(json.dumps(res), flush=True)
    finally:
        server.stop()
    load_after = os.getloadavg()[0]

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {
        "skdlc": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "machine": platform.machine(), "torchserve": _version("torchserve"),
        "onnxruntime": _version("onnxruntime"),
        "load_avg_1min_before_after": [round(load_before, 1), round(load_after, 1)],
    }
    out.with_suffix(".json").write_text(json.dumps({"command": command, "env": env, "fit_s": fit_s,
                                                    "server_start_s": start_s, "notes": notes, "rows": rows},
                                                   indent=2) + "\n")
    lines = [
        "# Serving benchmark: DLC scoring behind TorchServe",
        "",
        f"Command: `{command}`",
        "",
        f"Scorer: `DLCScorer(\"efficientnet_lite0\", image_size={args.image_size})`, mask ratios "
        f"{list(scorer.mask_ratios_)}, fitted on {len(X)} Fashion-MNIST test images ({args.n_per_class} per class) "
        f"in {fit_s:.1f} s. One request = one 32x32 PNG with its label; the server resizes to "
        f"{args.image_size} and runs {len(scorer.mask_ratios_)} masked variants. One worker per model, "
        f"{args.threads} threads; server start (JVM + {len(configs)} workers) {start_s:.1f} s.",
        "",
        f"Environment: {env}. Shared machine: other jobs ran at the same time, so read the numbers "
        "as rough and compare rows with each other.",
        "",
        "| engine | server batchSize (maxBatchDelay) | client threads | requests/s | p50 ms | p99 ms "
        "| mean server batch | ok | max abs diff vs DLCScorer |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['engine']} | {r['server_batch']} ({r['max_batch_delay_ms']} ms) | {r['concurrency']} "
            f"| {r['req_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['mean_server_batch']:.2f} "
            f"| {r['ok']}/{r['requests']} | {r['max_abs_diff_vs_scorer']:.1e} |"
        )
    for engine, why in notes.items():
        lines += ["", f"{engine}: {why}"]
    lines += ["", "Mean server batch: the mean of the X-Skdlc-Batch-Size response header (requests "
              "TorchServe scored together). Max abs diff: served score vs DLCScorer.score_samples, 20 images."]
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
