"""``skdlc prune`` on a real labelled text set, end to end, timed (issue 20, item 3).

Writes Reuters-21578 R8 stories (``skdlc.datasets.load_text_classification``) to a
CSV, runs exactly ``skdlc prune reviews.csv --text-column text --label-column label
--keep 0.3 --out ...`` with the ``skdlc`` executable given (e.g. one from a fresh
virtual environment where the built wheel was installed), checks that the kept file is
the CSV's header followed by the kept records byte for byte, and writes
``benchmarks/results/text_cli.md``.

    python benchmarks/text_cli.py --skdlc /tmp/fresh/bin/skdlc --per-class 30
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND = ["prune", "reviews.csv", "--text-column", "text", "--label-column", "label", "--keep", "0.3"]


def write_csv(folder: Path, per_class: int, seed: int) -> Path:
    """The CSV: id, text, label; texts quoted (QUOTE_NONNUMERIC), as pandas exports often are."""
    import pandas as pd

    from skdlc.datasets import load_text_classification

    texts, y = load_text_classification("reuters8", subset="train", n_per_class=per_class, random_state=seed)
    path = folder / "reviews.csv"
    pd.DataFrame({"id": range(len(texts)), "text": texts, "label": y}).to_csv(
        path, index=False, quoting=csv.QUOTE_NONNUMERIC)
    return path


def records(path: Path) -> tuple[bytes, list[bytes]]:
    """Header bytes and one bytes string per record, split independently of skdlc (every
    record of this CSV is one line: the texts hold no line break)."""
    lines = path.read_bytes().splitlines(keepends=True)
    return lines[0], lines[1:]


def python_check(data: Path, cli_rows: list[int]) -> list[str]:
    """One table row: whether skdlc.prune on the DataFrame keeps the command line's rows."""
    import pandas as pd

    import skdlc

    df = pd.read_csv(data, dtype={"label": str})  # the command line reads labels as text
    t0 = time.perf_counter()
    res = skdlc.prune(df, text_column="text", label_column="label", keep_ratio=0.3, random_state=0,
                      verbose=False)
    same = res.kept_indices.tolist() == cli_rows
    return [f"| `skdlc.prune(df, text_column='text', label_column='label', keep_ratio=0.3, random_state=0)` "
            f"keeps the same rows | {'yes' if same else 'NO'} ({time.perf_counter() - t0:.1f} s) |"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skdlc", default=shutil.which("skdlc") or "skdlc", help="the skdlc executable to run")
    ap.add_argument("--per-class", type=int, default=30, help="stories per topic (8 topics)")
    ap.add_argument("--seed", type=int, default=0, help="which stories are drawn")
    ap.add_argument("--workdir", default="/tmp/skdlc_text_cli")
    ap.add_argument("--results", default=str(ROOT / "benchmarks/results/text_cli.md"))
    ap.add_argument("--python-check", action="store_true",
                    help="also run skdlc.prune on the CSV read with pandas (this interpreter's skdlc) and "
                         "compare the kept rows with the command line's")
    args = ap.parse_args()

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    data = write_csv(work, args.per_class, args.seed)
    out = work / "reviews_pruned"
    argv = [args.skdlc, *COMMAND, "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    print(proc.stdout)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return proc.returncode

    head, recs = records(data)
    with open(out / "scores.csv", newline="", encoding="utf-8") as f:
        kept_rows = [int(r["row"]) for r in csv.DictReader(f) if r["kept"] == "1"]
    expected = head + b"".join(recs[r] for r in kept_rows)
    same = (out / "kept.csv").read_bytes() == expected
    summary = json.loads((out / "summary.json").read_text())
    python_row = python_check(data, kept_rows) if args.python_check else []
    lines = [
        "# `skdlc prune` on labelled text (Reuters-21578 R8)",
        "",
        f"Command (in `{work}`), with `{args.skdlc}`:",
        "",
        "```bash",
        " ".join(["skdlc", *COMMAND, "--out", str(out)]),
        "```",
        "",
        f"Made by: `python benchmarks/text_cli.py --skdlc {args.skdlc} --per-class {args.per_class} "
        f"--seed {args.seed}{' --python-check' if args.python_check else ''}`",
        "",
        "| what | value |",
        "| --- | --- |",
        f"| rows (stories) | {summary['n_texts']} ({len(summary['classes'])} topics, {args.per_class} each) |",
        f"| CSV size | {data.stat().st_size / 1e6:.2f} MB |",
        f"| kept | {summary['n_kept']} |",
        f"| kept.csv = header + kept records, byte for byte | {'yes' if same else 'NO'} |",
        f"| wall time of the command | {wall:.1f} s |",
        f"| of which scoring | {summary['time_s'].get('scoring', float('nan')):.1f} s |",
        f"| backbone, mask ratios | {summary['backbone']}, "
        f"{', '.join(f'{r:.2f}' for r in summary['mask_ratios'])} |",
        f"| selection | {summary['strategy']} |",
        f"| label issues flagged | {summary.get('label_issues', {}).get('n_issues', 'n/a')} |",
        f"| duplicate groups | {summary.get('duplicates', {}).get('n_groups', 'n/a')} |",
        *python_row,
        f"| machine | {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()} |",
        "",
        "The printed summary:",
        "",
        "```",
        proc.stdout.strip(),
        "```",
    ]
    Path(args.results).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines[:24]))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
