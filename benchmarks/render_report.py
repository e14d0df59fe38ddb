"""Render a report.html to PNG with headless Chromium; make the demo report; time a large one.

    # a report.html -> PNG (needs Chromium: apt-get install chromium)
    python benchmarks/render_report.py render OUT/report.html --png report.png

    # the README screenshot: a few hundred MNIST digits (skdlc.datasets, offline) written to
    # a temporary folder, `skdlc prune ... --image-size 64`, its report rendered
    python benchmarks/render_report.py demo --png docs/img/report.png

    # report time and size for N synthetic rows with real small image files
    python benchmarks/render_report.py bench --n 10000

    # plant flipped labels in the MNIST demo data: are they on the likely-mislabelled list?
    python benchmarks/render_report.py flipped --n-flip 5

Without Chromium, ``render`` and ``demo`` say so and exit with status 0 after writing
what they can (the demo still writes the report). ``bench`` writes
``benchmarks/results/report_size.json``, ``flipped`` ``report_mislabelled.json``, each with
the command that made it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--mute-audio"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def render(html: Path, png: Path, *, width: int = 1280, height: int = 2400, max_kb: int | None = None) -> bool:
    """Screenshot ``html`` (the top ``width`` x ``height`` CSS pixels) into ``png``; False without Chromium."""
    exe = find_chromium()
    if exe is None:
        print("render_report: Chromium is not installed (apt-get install chromium); nothing rendered")
        return False
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="skdlc-chromium-") as profile:
        shot = Path(profile) / "shot.png"
        cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}/user", f"--window-size={width},{height}",
               f"--screenshot={shot}", Path(html).resolve().as_uri()]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if not shot.is_file():
            print(f"render_report: Chromium failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
            return False
        _shrink(shot, png, max_kb)
    print(f"render_report: rendered {html} -> {png} ({png.stat().st_size / 1024:.0f} KB, "
          f"{time.perf_counter() - t:.1f} s)")
    return True


def _shrink(src: Path, dst: Path, max_kb: int | None) -> None:
    """Save as an optimised PNG; with ``max_kb``, with a 256-colour palette when needed."""
    from PIL import Image

    im = Image.open(src).convert("RGB")
    im.save(dst, optimize=True)
    if max_kb and dst.stat().st_size > max_kb * 1024:
        im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(dst, optimize=True)


def _skdlc(*args: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "skdlc", *args]
    print("$ skdlc " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True, env=env)


def demo(args) -> int:
    from skdlc.datasets import load_mnist, make_image_folder

    images, target = load_mnist(n_per_class=args.n_per_class, random_state=0, return_X_y=True)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="skdlc-report-demo-"))
    data = make_image_folder(work / "mnist", images, target, class_names=[str(d) for d in range(10)])
    out = work / "pruned"
    # default flags (cross-validated selection) but a calibrated path, so that every
    # section of the report has something to show
    _skdlc("prune", str(data), "--keep", "0.3", "--image-size", str(args.image_size),
           "--mask-ratios", args.mask_ratios, "--device", "cpu", "--out", str(out), "--quiet",
           "--cache", str(work / "cache"))  # a rerun (e.g. after a report change) skips scoring
    report = out / "report.html"
    print(f"report: {report} ({report.stat().st_size / 1024:.0f} KB)")
    if args.png:
        render(report, Path(args.png), width=args.width, height=args.height, max_kb=480)
    return 0


def _mislabelled_rows(report: Path) -> list[tuple[str, str, str]]:
    """(path, label, closer-to) rows of the report's likely-mislabelled table, in rank order."""
    from html.parser import HTMLParser

    class P(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.inside, self.rows, self.row, self.cell = False, [], None, None

        def handle_starttag(self, tag, attrs):
            if tag == "section":
                self.inside = dict(attrs).get("id") == "mislabelled"
            elif self.inside and tag == "tr":
                self.row = []
            elif self.inside and tag == "td":
                self.cell = []

        def handle_endtag(self, tag):
            if tag == "td" and self.cell is not None:
                self.row.append("".join(self.cell))
                self.cell = None
            elif tag == "tr" and self.row:
                self.rows.append(tuple(self.row[:3]))
                self.row = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell.append(data)

    p = P()
    p.feed(report.read_text(encoding="utf-8"))
    return p.rows


def flipped(args) -> int:
    """Move ``--n-flip`` MNIST images into another digit's folder; where do they rank?"""
    from skdlc.datasets import load_mnist, make_image_folder

    images, target = load_mnist(n_per_class=args.n_per_class, random_state=0, return_X_y=True)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="skdlc-report-flip-"))
    if (work / "mnist").exists():
        shutil.rmtree(work / "mnist")
    data = make_image_folder(work / "mnist", images, target, class_names=[str(d) for d in range(10)])
    rng = np.random.default_rng(args.seed)
    truth = {}
    for j in range(args.n_flip):  # digit j % 10 filed under digit (j + 5) % 10
        k = j % 10
        src = sorted(p for p in (Path(data) / str(k)).iterdir() if not p.name.startswith("flipped"))
        src = src[rng.integers(0, len(src))]
        dst = Path(data) / str((k + 5) % 10) / f"flipped_{src.name}"
        shutil.move(src, dst)
        truth[str(dst)] = str(k)
    out = work / "pruned"
    _skdlc("prune", str(data), "--keep", "0.3", "--image-size", str(args.image_size), "--mask-ratios",
           args.mask_ratios, "--device", "cpu", "--out", str(out), "--quiet")
    rows = _mislabelled_rows(out / "report.html")
    ranks = {p: next((i + 1 for i, r in enumerate(rows) if r[0] == p), None) for p in truth}
    right = {p: next((r[2] == truth[p] for r in rows if r[0] == p), False) for p in truth}
    for p in truth:
        print(f"{Path(p).parent.name}/{Path(p).name}: true digit {truth[p]}, rank "
              f"{ranks[p] or 'not listed'}, suggested class {'right' if right[p] else 'wrong'}")
    n_img = len(images)
    result = {"command": "python benchmarks/render_report.py " + " ".join(sys.argv[1:]),
              "n_images": n_img, "n_flipped": args.n_flip, "listed_rows": len(rows),
              "ranks": sorted(r for r in ranks.values() if r), "not_listed": sum(r is None for r in ranks.values()),
              "suggested_right": sum(right.values())}
    dst = HERE / "results" / "report_mislabelled.json"
    dst.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['n_flipped'] - result['not_listed']} of {args.n_flip} flipped images listed "
          f"(ranks {result['ranks']} of {len(rows)} shown); true class suggested for "
          f"{result['suggested_right']}; wrote {dst}")
    return 0


def _synthetic_images(folder: Path, n: int, n_classes: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """``n`` small JPEGs (48 x 48, a blurred colour blob per class) and their labels."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    colours = rng.integers(30, 225, (n_classes, 3))
    yy, xx = np.mgrid[:48, :48]
    paths = []
    for i, k in enumerate(labels):
        d = folder / f"class{k:03d}"
        d.mkdir(parents=True, exist_ok=True)
        cy, cx = rng.integers(12, 36, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 8.0 ** 2))[..., None]
        img = 240 - blob * (240 - colours[k]) + rng.normal(0, 12, (48, 48, 3))
        p = d / f"img{i:05d}.jpg"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(p, quality=85)
        paths.append(str(p))
    return paths, np.array([f"class{k:03d}" for k in labels])


def bench(args) -> int:
    from skdlc.report import write_report

    rows = []
    with tempfile.TemporaryDirectory(prefix="skdlc-report-bench-") as tmp:
        for n_classes in args.classes:
            paths, labels = _synthetic_images(Path(tmp) / f"img{n_classes}", args.n, n_classes)
            rng = np.random.default_rng(1)
            losses = rng.gamma(2.0, 0.5, (args.n, n_classes))
            y = np.searchsorted(np.unique(labels), labels)
            losses[np.arange(args.n), y] *= 0.3
            scores = losses[np.arange(args.n), y]
            kept = rng.random(args.n) < 0.3
            cal = {"probe_ratios": [0.0, 0.1, 0.2, 0.4, 0.6, 0.8], "accuracies": [0.9, 0.88, 0.84, 0.7, 0.3, 0.1],
                   "chance": 1 / n_classes, "ratios": [0.0, 0.1, 0.2, 0.4]}
            out = Path(tmp) / f"report{n_classes}"
            t = time.perf_counter()
            report = write_report(out, scores=scores, labels=labels, kept=kept, paths=paths, losses=losses,
                                  calibration=cal, timings={"scoring": 0.0}, command=sys.argv)
            seconds = time.perf_counter() - t
            size = report.stat().st_size
            figs = sum(p.stat().st_size for p in (out / "figures").iterdir())
            rows.append({"n": args.n, "n_classes": n_classes, "seconds": round(seconds, 2),
                         "report_mb": round(size / 2 ** 20, 2), "figures_mb": round(figs / 2 ** 20, 2)})
            print(f"{args.n} rows, {n_classes} classes: report in {seconds:.2f} s, report.html "
                  f"{size / 2 ** 20:.2f} MB, figures/ {figs / 2 ** 20:.2f} MB", flush=True)
    result = {"command": "python benchmarks/render_report.py " + " ".join(sys.argv[1:]),
              "cpu": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2),  # a shared machine
              "results": rows}
    dst = HERE / "results" / "report_size.json"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {dst}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render", help="report.html -> PNG")
    r.add_argument("html", type=Path)
    r.add_argument("--png", type=Path, required=True)
    r.add_argument("--width", type=int, default=1280)
    r.add_argument("--height", type=int, default=2400)
    d = sub.add_parser("demo", help="prune MNIST digits with skdlc prune and render the report")
    d.add_argument("--png", default=None, help="where to write the screenshot (e.g. docs/img/report.png)")
    d.add_argument("--n-per-class", type=int, default=40)
    d.add_argument("--image-size", type=int, default=64)
    d.add_argument("--mask-ratios", default="calibrated")
    d.add_argument("--workdir", default=None, help="keep the data and outputs here (default: a temp folder)")
    d.add_argument("--width", type=int, default=1100)
    d.add_argument("--height", type=int, default=2000)
    f = sub.add_parser("flipped", help="plant flipped MNIST labels; rank of each in the mislabelled list")
    f.add_argument("--n-flip", type=int, default=5)
    f.add_argument("--n-per-class", type=int, default=40)
    f.add_argument("--image-size", type=int, default=64)
    f.add_argument("--mask-ratios", default="0,0.1,0.2,0.3")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--workdir", default=None)
    b = sub.add_parser("bench", help="time and size of a report of N synthetic image rows")
    b.add_argument("--n", type=int, default=10000)
    b.add_argument("--classes", type=int, nargs="+", default=[10, 100])
    args = p.parse_args(argv)
    if args.cmd == "render":
        render(args.html, args.png, width=args.width, height=args.height)
        return 0
    return {"demo": demo, "flipped": flipped, "bench": bench}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
