"""``skdlc export-onnx``: write DLC's masked variants as ONNX files plus a manifest.

Either fit a scorer on an image folder / CSV manifest here, or export a fitted scorer
saved with ``joblib.dump``. The folder then scores with ONNX Runtime alone:
``skdlc.OnnxDLCModel.load(folder).score_samples(X, y)``. See docs/onnx.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from . import CLIError

__all__ = ["add_parser", "run"]

_DESCRIPTION = """\
Export the masked variants of a DLC scorer to ONNX: one file per mask ratio (dynamic
batch axis), prototypes.npy and manifest.json (ratios, preprocessing, prototypes,
class names, checksums, backbone fingerprint). skdlc.OnnxDLCModel.load(OUT) then
scores with ONNX Runtime, no torch model needed.

The scorer is fitted here on DATA (an image folder with one subfolder per class, or a
CSV manifest with 'path' and 'label' columns), or loaded with --scorer from a file
written by joblib.dump(fitted_scorer, FILE) (unpickling runs code: only load files
you trust).
"""

_EPILOG = """\
examples:
  skdlc export-onnx photos/ --out dlc_onnx/
  skdlc export-onnx train.csv --out dlc_onnx/ --mask-ratios 0,0.2,0.4,0.6,0.8 --engine onnxruntime
  skdlc export-onnx --scorer scorer.joblib --out dlc_onnx/
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export-onnx",
        help="write a DLC scorer's masked variants as ONNX files plus a manifest",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", metavar="DATA", nargs="?", default=None,
                   help="image folder (one subfolder per class) or CSV manifest (path,label) to fit on")
    p.add_argument("--scorer", metavar="FILE", default=None,
                   help="a fitted DLCScorer saved with joblib.dump, instead of DATA")
    p.add_argument("--sample", metavar="NPY", default=None,
                   help="with --scorer: a .npy of a few inputs, needed only for a backbone without "
                        "image preprocessing (a user module), to trace the graph")
    p.add_argument("--out", metavar="DIR", required=True,
                   help="export folder: new, empty, or an earlier export (replaced)")
    p.add_argument("--backbone", default="efficientnet_lite0",
                   help="registered backbone name, or a timm / torchvision model name (default: efficientnet_lite0)")
    p.add_argument("--mask-ratios", default="5", metavar="T|auto|R1,R2,...",
                   help="a count drawn from the paper's grid (with the unmasked model), 'auto', or "
                        "explicit ratios in [0, 1) (default: 5)")
    p.add_argument("--masking", choices=("layer", "global"), default="layer",
                   help="one magnitude threshold per weight tensor (default) or one over all")
    p.add_argument("--image-size", type=int, default=None, metavar="PX",
                   help="score at this square input size instead of the backbone's")
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="images per forward pass (default: 64)")
    p.add_argument("--num-workers", type=int, default=None, metavar="N",
                   help="processes decoding images while the model runs (default: automatic)")
    p.add_argument("--engine", choices=("torch", "onnxruntime"), default="onnxruntime",
                   help="what computes the prototypes while fitting (default: onnxruntime)")
    p.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    p.add_argument("--seed", type=int, default=0, help="seeds the mask-ratio draw (default: 0)")
    p.add_argument("--on-error", choices=("fail", "skip"), default="fail",
                   help="unreadable image: stop naming it (default), or leave it out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def _load_scorer(path: str):
    import joblib

    from .. import DLCScorer

    if not os.path.isfile(path):
        raise CLIError(f"--scorer {path!r}: no such file")
    try:
        scorer = joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the user's file
        raise CLIError(f"cannot load a scorer from {path!r}: {type(exc).__name__}: {exc}") from None
    if not isinstance(scorer, DLCScorer) or not hasattr(scorer, "prototypes_"):
        raise CLIError(f"{path!r} does not hold a fitted DLCScorer (got {type(scorer).__name__})")
    return scorer


def _fit_scorer(args):
    from .. import DLCScorer, create_backbone
    from ._common import check_images, parse_mask_ratios, read_labelled_images

    data = read_labelled_images(args.data)
    mask_ratios = parse_mask_ratios(args.mask_ratios)
    try:
        create_backbone(args.backbone)  # a bad name fails before any image is decoded
    except (ValueError, RuntimeError) as exc:
        raise CLIError(str(exc)) from None
    data = check_images(data, args.on_error, verbose=not args.quiet)
    scorer = DLCScorer(
        args.backbone,
        mask_ratios=mask_ratios,
        masking=args.masking,
        image_size=args.image_size,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device,
        engine=args.engine,
        on_error="skip" if args.on_error == "skip" else "raise",
        random_state=args.seed,
        verbose=not args.quiet,
    )
    scorer.fit(data.paths, data.labels)
    for note in data.notes:
        print(f"note: {note}")
    return scorer, len(data)


def run(args) -> int:
    t0 = time.perf_counter()
    if (args.data is None) == (args.scorer is None):
        raise CLIError("give either DATA (to fit a scorer here) or --scorer FILE, not both or neither")
    out = Path(os.path.expanduser(args.out))
    sample = None
    if args.scorer is not None:
        scorer, n = _load_scorer(args.scorer), None
        if args.sample is not None:
            import numpy as np

            try:
                sample = np.load(args.sample, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise CLIError(f"cannot read --sample {args.sample!r}: {exc}") from None
    else:
        scorer, n = _fit_scorer(args)
    try:
        folder = scorer.export_onnx(out, X=sample)
    except FileExistsError as exc:
        raise CLIError(str(exc)) from None
    except (NotImplementedError, ImportError) as exc:
        raise CLIError(str(exc)) from None
    size = sum(f.stat().st_size for f in folder.iterdir()) / 1e6
    variants = len(list(folder.glob("*.onnx")))
    fitted = f" fitted on {n} images," if n is not None else ""
    ratios = ", ".join(f"{r:g}" for r in scorer.mask_ratios_)
    print(
        f"wrote {variants} variants (mask ratios {ratios}) of {scorer.backbone_.name},{fitted} "
        f"to {folder} ({size:.1f} MB) in {time.perf_counter() - t0:.1f} s\n"
        f"score with: skdlc.OnnxDLCModel.load({os.fspath(folder)!r}).score_samples(X, y)"
    )
    return 0
