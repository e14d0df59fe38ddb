"""Labelled texts from a file or folder (what ``skdlc prune`` reads for text), and the
kept rows written back in the input's own format.

:func:`read_labelled_texts` reads a text table (:mod:`skdlc._text_tables`), picks the
text and label columns and checks every record: empty or whitespace-only texts and
missing labels are an error naming the records, or (``on_error="skip"``) are left out
and listed in ``skipped``. :func:`write_kept` writes the kept records: for CSV, TSV
and JSONL the header and the records' exact bytes; for Parquet the kept rows of the
table with its schema; for a folder of ``.txt`` files, the kept files as a manifest.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ._text_tables import TextTable, read_text_table

__all__ = ["LabelledTexts", "read_labelled_texts", "write_kept", "KEPT_NAMES"]

#: The kept file of each input format (a folder of .txt files gets a path,label manifest).
KEPT_NAMES = {"csv": "kept.csv", "tsv": "kept.tsv", "jsonl": "kept.jsonl", "parquet": "kept.parquet",
              "folder": "kept.csv"}


@dataclass
class LabelledTexts:
    """Texts and their labels, with where each came from in the input.

    Attributes
    ----------
    texts : list of str
    labels : ndarray
        Strings, or integers when every label of a typed input (JSONL, Parquet) is one,
        or every label of a CSV or TSV is an integer written plainly (``pandas.read_csv``
        reads such a column as integers).
    rows : ndarray of int
        Each text's record in the input (0-based, counting every record read).
    where : list
        Each text's line number (CSV, TSV, JSONL), row number (Parquet) or file path.
    table : TextTable
        The input as read (the kept file is written from it).
    skipped : list of (where, reason)
    """

    texts: list[str]
    labels: np.ndarray
    rows: np.ndarray
    where: list
    table: TextTable
    notes: list[str] = field(default_factory=list)
    skipped: list[tuple[Any, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def source(self) -> Path:
        return self.table.source

    @property
    def kind(self) -> str:
        return self.table.kind

    @property
    def paths(self) -> list[str] | None:
        """The ``.txt`` files of a folder input (None for a table)."""
        return self.where if self.table.kind == "folder" else None

    def id_columns(self) -> dict[str, list]:
        """The first columns of ``scores.csv``: ``path`` of a file, or ``row`` (and ``line``)."""
        if self.kind == "folder":
            return {"path": list(self.where)}
        cols = {"row": self.rows.tolist()}
        if self.table.where_name == "line":
            cols["line"] = list(self.where)
        return cols


def _column(table: TextTable, name: str, option: str) -> list:
    if name not in table.columns:
        have = ", ".join(repr(c) for c in table.columns) or "none"
        raise ValueError(f"{table.source} has no column {name!r} ({option}); its columns are: {have}")
    return table.get(name)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _check_types(values: list, table: TextTable, option: str, name: str, text: bool) -> None:
    """Texts must be strings; labels strings or numbers (not lists, objects, ...)."""
    ok = (str,) if text else (str, int, float, np.integer, np.floating)
    for v, w in zip(values, table.where):
        if not _missing(v) and not isinstance(v, ok):
            kind = "text" if text else "a class name (text or a number)"
            raise ValueError(f"{table.source}, {table.where_name} {w}: {option} {name!r} holds a "
                             f"{type(v).__name__} ({str(v)[:40]!r}), expected {kind}")


#: An integer as written canonically (no sign but "-", no leading zero, no space).
_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")


def _as_labels(values: list, untyped: bool) -> np.ndarray:
    """Integers when every value is one (JSONL, Parquet) or reads as one in canonical
    form (CSV, TSV: what ``pandas.read_csv`` makes of the column, so the classes, their
    order and so the kept rows are the same as the DataFrame's; ``untyped``), else text
    (``str(v)``; a folder's class names stay text, as an image folder's do)."""
    if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.int64)
    if untyped and values and all(isinstance(v, str) and _INTEGER.fullmatch(v) for v in values):
        return np.asarray([int(v) for v in values], dtype=np.int64)
    return np.asarray([v if isinstance(v, str) else str(v) for v in values], dtype=str)


def _problems(table: TextTable, texts: list, labels: list) -> list[tuple[int, str]]:
    """(record, reason) of every record that cannot be scored, in input order."""
    bad = {w: r for w, r in table.bad}
    out = []
    for i, (t, lab, w) in enumerate(zip(texts, labels, table.where)):
        reasons = [bad[w]] if w in bad else ["empty text"] if _missing(t) else []
        reasons += ["missing label"] if _missing(lab) else []
        if reasons:
            out.append((i, "; ".join(reasons)))
    return out


def _refuse(table: TextTable, problems: list[tuple[int, str]], n: int) -> None:
    shown = ", ".join(f"{table.where[i]} ({r})" for i, r in problems[:5])
    more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
    raise ValueError(f"{table.source}: {len(problems)} of {n} records cannot be scored: "
                     f"{table.where_name} {shown}{more}; fix them, or pass --on-error skip to leave "
                     "them out (listed in skipped.csv)")


def _check_not_all_missing(values: list, table: TextTable, option: str, name: str) -> None:
    if values and all(_missing(v) for v in values):
        raise ValueError(f"{table.source}: {option} {name!r} is empty (or NaN) in every one of its "
                         f"{len(values)} records; is it the right column? (columns: "
                         f"{', '.join(repr(c) for c in table.columns)})")


def read_labelled_texts(data: str | os.PathLike, *, text_column: str | None, label_column: str = "label",
                        on_error: str = "fail",
                        options: tuple[str, str] = ("--text-column", "--label-column")) -> LabelledTexts:
    """Read a labelled text set: a CSV, TSV, JSONL or Parquet file (``text_column`` and
    ``label_column`` name its columns) or a folder of ``.txt`` files per class.

    Parameters
    ----------
    data : path
    text_column, label_column : str
        Columns of a table (a folder's texts are its files, its labels their folders).
    on_error : {"fail", "skip"}
        What an empty text, a missing label or a ``.txt`` file that is not UTF-8 does:
        raise naming the records, or leave them out (in ``skipped``).
    options : (str, str)
        How messages name the two columns (the command line's option names).

    Raises
    ------
    ValueError
        Unreadable file, unknown column (listing the columns), a column empty in every
        record, records that cannot be scored with ``on_error="fail"``.
    """
    table = read_text_table(data)
    if not table.where:
        raise ValueError(f"{table.source} holds no records" + (" (a header only)" if table.head.strip() else ""))
    if table.kind == "folder":
        text_column, label_column = "text", "label"
    texts = _column(table, text_column, options[0])
    labels = _column(table, label_column, options[1])
    _check_types(texts, table, options[0], text_column, text=True)
    _check_types(labels, table, options[1], label_column, text=False)
    _check_not_all_missing(texts, table, options[0], text_column)
    _check_not_all_missing(labels, table, options[1], label_column)
    problems = _problems(table, texts, labels)
    if problems and (on_error != "skip" or len(problems) == len(texts)):
        _refuse(table, problems, len(texts))
    ok = np.ones(len(texts), dtype=bool)
    ok[[i for i, _ in problems]] = False
    rows = np.flatnonzero(ok)
    kept_labels = _as_labels([labels[i] for i in rows], untyped=table.kind in ("csv", "tsv"))
    out = LabelledTexts([texts[i] for i in rows], kept_labels, rows,
                        [table.where[i] for i in rows], table, list(table.notes),
                        [(table.where[i], r) for i, r in problems])
    dropped = {str(labels[i]) for i, _ in problems if not _missing(labels[i])}
    lost = sorted(dropped - {str(v) for v in out.labels.tolist()})
    if lost:
        out.notes.append(f"class(es) left with no usable record left out: {', '.join(lost)}")
    return out


def write_kept(data: LabelledTexts, folder: Path, kept: Sequence[int], scores: Sequence[float]) -> str:
    """Write the kept records (indices into ``data``) into ``folder``; returns the file name.

    CSV, TSV, JSONL: the bytes before the first record (byte-order mark, header), then
    each kept record's exact bytes, in input order. Parquet: the kept rows of the table,
    same schema. A folder of ``.txt`` files: ``kept.csv`` with ``path,label,score``.
    """
    from ._io import atomic_write
    from ._outputs import fmt_score, write_csv

    kept = np.sort(np.asarray(kept, dtype=np.intp))
    name = KEPT_NAMES[data.kind]
    table = data.table
    if data.kind == "folder":
        write_csv(folder / name, ("path", "label", "score"),
                  ((data.where[i], data.labels[i], fmt_score(scores[i])) for i in kept))
    elif data.kind == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table.table.take(data.rows[kept]), folder / name)
    else:
        with atomic_write(folder / name, "wb") as f:
            f.write(table.head)
            for i in data.rows[kept]:
                f.write(table.raw[i])
    return name
