"""Helpers shared by the ``skdlc`` commands: reading labelled images, checking them,
parsing option values and writing outputs atomically."""

from __future__ import annotations

import csv
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import CLIError

__all__ = [
    "IMAGE_EXTENSIONS",
    "LabelledImages",
    "read_labelled_images",
    "read_image_folder",
    "read_manifest",
    "check_images",
    "parse_keep",
    "parse_gamma",
    "parse_mask_ratios",
    "parse_fractions",
    "write_csv",
    "write_json",
    "embed",
]

#: File name endings read as images in an image folder (case-insensitive).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                    ".ppm", ".pgm", ".pbm")  # fmt: skip


@dataclass
class LabelledImages:
    """Image files and their class labels, as read from DATA."""

    paths: list[str]  # absolute
    labels: np.ndarray  # str
    source: Path
    kind: str  # "folder" or "manifest"
    notes: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, keep: np.ndarray) -> "LabelledImages":
        keep = np.asarray(keep, dtype=bool)
        return LabelledImages(
            [p for p, k in zip(self.paths, keep) if k], self.labels[keep], self.source,
            self.kind, list(self.notes), list(self.skipped),
        )


# ------------------------------------------------------------------------ reading
def read_labelled_images(data: str | os.PathLike) -> LabelledImages:
    """An image folder (one subfolder per class) or a CSV manifest (path,label)."""
    path = Path(os.path.expanduser(os.fspath(data)))
    if not path.exists():
        raise CLIError(f"DATA {os.fspath(data)!r} does not exist")
    if path.is_dir():
        return read_image_folder(path)
    return read_manifest(path)


def _visible(name: str) -> bool:
    return not name.startswith(".")


def read_image_folder(root: Path) -> LabelledImages:
    """``root/<class>/**/<image>``: every image file under a class folder, sorted."""
    root = Path(os.path.abspath(root))
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p.name))
    paths, labels, notes, empty = [], [], [], []
    for d in class_dirs:
        files = []
        for dirpath, dirnames, filenames in os.walk(d):
            dirnames[:] = sorted(n for n in dirnames if _visible(n))
            files += [
                os.path.join(dirpath, f)
                for f in filenames
                if _visible(f) and f.lower().endswith(IMAGE_EXTENSIONS)
            ]
        if not files:
            empty.append(d.name)
            continue
        files.sort()
        paths += files
        labels += [d.name] * len(files)
    if not paths:
        loose = [f for f in os.listdir(root) if f.lower().endswith(IMAGE_EXTENSIONS)]
        if loose:
            raise CLIError(
                f"{root} holds images but no class subfolders; put the images of each "
                f"class in a subfolder named after it ({root}/<class>/...)"
            )
        what = "no class subfolders" if not class_dirs else "class subfolders without images"
        raise CLIError(
            f"no images found in {root} ({what}); expected one subfolder per class "
            f"holding image files ({', '.join(IMAGE_EXTENSIONS[:4])}, ...)"
        )
    if empty:
        notes.append(f"class folder(s) without images left out: {', '.join(empty)}")
    return LabelledImages(paths, np.asarray(labels, dtype=str), root, "folder", notes)


def read_manifest(csv_path: Path) -> LabelledImages:
    """A CSV with a header holding ``path`` and ``label`` columns (others ignored).

    Relative paths are resolved against the CSV's folder. Empty cells and the usual
    missing-value markers (NaN, NA, null, ...) are errors, reported by line number.
    """
    import pandas as pd

    csv_path = Path(os.path.abspath(csv_path))
    try:
        df = pd.read_csv(csv_path, dtype=str, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise CLIError(f"manifest {csv_path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CLIError(
            f"cannot read {csv_path} as a CSV manifest ({first}); DATA must be an image "
            "folder or a CSV file with 'path' and 'label' columns"
        ) from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in ("path", "label") if c not in df.columns]
    if missing:
        found = ", ".join(repr(c) for c in df.columns) or "none"
        raise CLIError(
            f"manifest {csv_path} needs a header with columns 'path' and 'label'; "
            f"missing {', '.join(repr(c) for c in missing)} (found: {found})"
        )
    if df.columns.duplicated().any():
        raise CLIError(f"manifest {csv_path} has duplicate column names")
    if len(df) == 0:
        raise CLIError(f"manifest {csv_path} has a header but no rows")
    df["path"] = df["path"].str.strip()
    df["label"] = df["label"].str.strip()
    problems = []
    for col in ("path", "label"):
        bad = df[col].isna() | (df[col] == "")
        if bad.any():
            lines = (np.flatnonzero(bad.to_numpy()) + 2).tolist()  # + header, 1-based
            shown = ", ".join(map(str, lines[:10])) + (f" (and {len(lines) - 10} more)" if len(lines) > 10 else "")
            problems.append(f"missing {col} (empty or NaN) on line(s) {shown}")
    if problems:
        raise CLIError(f"manifest {csv_path}: {'; '.join(problems)}")
    base = csv_path.parent
    paths = [os.path.abspath(os.path.join(base, os.path.expanduser(p))) for p in df["path"]]
    notes = []
    n_dup = len(paths) - len(set(paths))
    if n_dup:
        notes.append(f"{n_dup} manifest row(s) repeat an earlier path; each row is scored")
    return LabelledImages(paths, df["label"].to_numpy(dtype=str), csv_path, "manifest", notes)


# ----------------------------------------------------------------------- checking
def _check_one(path: str) -> str | None:
    """None if the file decodes as an image, else the reason it does not."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        return "no such file"
    try:
        with Image.open(path) as im:
            im.load()  # full decode: truncated files fail here, not hours later
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError,
            ValueError, EOFError) as exc:
        return f"not a readable image ({type(exc).__name__}: {exc})"
    return None


def check_images(
    data: LabelledImages, on_error: str = "fail", *, verbose: bool = False, workers: int = 2
) -> LabelledImages:
    """Decode every image once before scoring; fail on, or drop, unreadable ones.

    ``on_error="fail"`` raises :class:`CLIError` naming the first bad file (and how
    many there are); ``"skip"`` returns the readable ones with ``skipped`` filled in.
    """
    from tqdm.auto import tqdm

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        reasons = list(
            tqdm(pool.map(_check_one, data.paths, chunksize=16), total=len(data),
                 desc="checking images", unit="img", disable=not verbose, leave=False)
        )
    bad = [(p, r) for p, r in zip(data.paths, reasons) if r is not None]
    if not bad:
        return data
    if on_error == "fail":
        path, reason = bad[0]
        more = f" ({len(bad) - 1} more unreadable file(s))" if len(bad) > 1 else ""
        raise CLIError(
            f"cannot read image {path!r}: {reason}{more}; fix or remove it, or pass "
            "--on-error skip to leave unreadable images out"
        )
    ok = np.array([r is None for r in reasons])
    if not ok.any():
        raise CLIError(f"none of the {len(data)} images in {data.source} could be read "
                       f"(e.g. {bad[0][0]!r}: {bad[0][1]})")
    out = data.subset(ok)
    out.skipped = list(data.skipped) + bad
    lost = sorted(set(data.labels.tolist()) - set(out.labels.tolist()))
    if lost:
        out.notes.append(f"class(es) with no readable image left out: {', '.join(lost)}")
    return out


# ------------------------------------------------------------------------ parsing
def _float(text: str, what: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise CLIError(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise CLIError(f"{what} must be finite, got {text!r}")
    return value


def parse_keep(text: str, what: str = "--keep") -> float:
    """A keep ratio in (0, 1]."""
    value = _float(text, what)
    if not 0 < value <= 1:
        hint = f" (did you mean {value / 100:g}?)" if 1 < value <= 100 else ""
        raise CLIError(f"{what} must be a fraction in (0, 1], got {text}{hint}")
    return value


def parse_gamma(text: str) -> float | str:
    """``"auto"`` or a quantile in (0, 1)."""
    if str(text).strip().lower() == "auto":
        return "auto"
    value = _float(text, "--gamma")
    if not 0 < value < 1:
        raise CLIError(f"--gamma must be 'auto' or a number in (0, 1), got {text}")
    return value


def parse_mask_ratios(text: str) -> int | str | list[float]:
    """``5`` (that many ratios from the paper's grid), ``auto``, or ``0,0.3,0.6``."""
    text = str(text).strip().lower()
    if text == "auto":
        return "auto"
    if "," not in text and "." not in text:
        try:
            n = int(text)
        except ValueError:
            raise CLIError(f"--mask-ratios must be a count, 'auto' or a comma list of ratios, got {text!r}") from None
        if not 1 <= n <= 50:
            raise CLIError(f"--mask-ratios count must be between 1 and 50, got {n}")
        return n
    ratios = [_float(t, "--mask-ratios") for t in text.split(",") if t.strip()]
    if not ratios or not all(0 <= r < 1 for r in ratios):
        raise CLIError(f"--mask-ratios values must be in [0, 1), got {text!r}")
    return ratios


def parse_fractions(text: str, what: str) -> list[float]:
    """A comma list of keep ratios, each in (0, 1]."""
    values = [parse_keep(t.strip(), what) for t in str(text).split(",") if t.strip()]
    if not values:
        raise CLIError(f"{what} needs at least one value")
    return sorted(set(values))


def parse_positive_int(text: str, what: str) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise CLIError(f"{what} must be a whole number, got {text!r}") from None
    if value < 1:
        raise CLIError(f"{what} must be at least 1, got {value}")
    return value


# ------------------------------------------------------------------------ writing
def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Write a CSV atomically: readers see the old file or the whole new one."""
    from .._io import atomic_write

    with atomic_write(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def write_json(path: Path, obj) -> None:
    from .._io import atomic_write

    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=_json_default)
        f.write("\n")


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def fmt_score(x: float) -> str:
    return f"{float(x):.8g}"


# ------------------------------------------------------------------- embeddings
def embed(scorer, X, *, batch_size: int | None = None) -> np.ndarray:
    """Features of the full (unmasked) model for new samples, after ``scorer.fit``.

    Runs only the unmasked backbone (``transform`` would run every masked variant):
    this is what a linear probe sees at test time.
    """
    from .._data import decodes_files, make_batches
    from .._engine import TorchEngine, default_num_workers, resolve_device

    engine = TorchEngine(
        scorer.backbone_,
        masking=scorer.masking,
        device=resolve_device(scorer.device),
        keep_variants=False,
        num_workers=default_num_workers(decodes_files(X)) if scorer.num_workers is None else scorer.num_workers,
        verbose=scorer.verbose,
    )
    batches = make_batches(X, scorer.backbone_, batch_size or scorer.batch_size)
    for _, feats in engine.features(batches, [0.0], desc="embedding", decodes=decodes_files(X)):
        return feats
    raise RuntimeError("no features computed")  # pragma: no cover


def counts_by_class(labels: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(labels, return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts)}
