"""The files a labelled text set comes in, each read as named columns of raw values.

- CSV / TSV (:mod:`skdlc._csv_records`): every field as text, with each record's bytes;
- JSON Lines (:mod:`skdlc._jsonl`): one object per line, with each line's bytes;
- Parquet (pyarrow): typed columns, with the table itself (kept rows are taken from it);
- a folder of ``.txt`` files, one subfolder per class (``folder/<class>/*.txt``).

:func:`read_text_table` returns a :class:`TextTable`; turning its columns into texts and
labels (and refusing empty ones) is :mod:`skdlc._labelled_texts`'s job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

__all__ = ["TEXT_FORMATS", "TextTable", "text_format", "folder_holds_texts", "read_text_table"]

#: File name endings read as text tables, and the format of each.
TEXT_FORMATS: dict[str, str] = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".parquet": "parquet", ".pq": "parquet",
}
_TEXT_FILE = ".txt"


@dataclass
class TextTable:
    """A text set's columns, before any row is checked.

    ``get(name)`` gives one raw value per record (None where a record has none);
    ``where`` names each record in messages and in ``skipped.csv`` (its line number,
    row number or file path, under the heading ``where_name``). ``raw``/``head``: the
    records' exact bytes (CSV, TSV, JSONL); ``table``: the pyarrow table (Parquet).
    """

    kind: str
    source: Path
    columns: list[str]
    get: Callable[[str], list]
    where: list
    where_name: str
    raw: list[bytes] | None = None
    head: bytes = b""
    table: Any = None
    paths: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    bad: list[tuple[Any, str]] = field(default_factory=list)  # records that could not be read


def text_format(path: str | os.PathLike) -> str | None:
    """``"csv"``, ``"tsv"``, ``"jsonl"`` or ``"parquet"`` from the file name, else None."""
    return TEXT_FORMATS.get(Path(os.fspath(path)).suffix.lower())


def folder_holds_texts(root: str | os.PathLike) -> bool:
    """Whether an input folder holds ``.txt`` files in class subfolders and no image:
    stops at the first image file, so an image folder costs one file name."""
    from ._labelled_images import IMAGE_EXTENSIONS, _visible

    seen_text = False
    for d in sorted(Path(root).iterdir()):
        if not (d.is_dir() and _visible(d.name)):
            continue
        for dirpath, dirnames, filenames in os.walk(d):
            dirnames[:] = [n for n in dirnames if _visible(n)]
            for f in filenames:
                low = f.lower()
                if low.endswith(IMAGE_EXTENSIONS):
                    return False
                seen_text = seen_text or low.endswith(_TEXT_FILE)
    return seen_text


def read_text_table(path: str | os.PathLike) -> TextTable:
    """Read a CSV, TSV, JSONL or Parquet file, or a folder of ``.txt`` files per class.

    Raises
    ------
    ValueError
        The file cannot be read as its format (the message names the line or byte).
    """
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    if path.is_dir():
        return _folder(path)
    kind = text_format(path)
    if kind in ("csv", "tsv"):
        return _csv(path, kind)
    if kind == "jsonl":
        return _jsonl(path)
    if kind == "parquet":
        return _parquet(path)
    known = ", ".join(sorted(TEXT_FORMATS))
    raise ValueError(f"{path}: a text set is a {known} file, or a folder of .txt files per class; "
                     f"{path.suffix or 'a file without an extension'} is none of these")


def _csv(path: Path, kind: str) -> TextTable:
    from ._csv_records import read_csv_records

    rec = read_csv_records(path, "\t" if kind == "tsv" else ",")
    cols = {c: i for i, c in enumerate(rec.columns)}
    return TextTable(kind, path, list(rec.columns), lambda c: [r[cols[c]] for r in rec.rows],
                     list(rec.lines), "line", raw=rec.raw, head=rec.head)


def _jsonl(path: Path) -> TextTable:
    from ._jsonl import _BOM, read_jsonl

    data = read_jsonl(path)
    columns: dict[str, None] = {}
    for r in data.records:
        columns.update(dict.fromkeys(r))
    return TextTable("jsonl", path, list(columns), lambda c: [r.get(c) for r in data.records],
                     list(data.line_numbers), "line", raw=list(data.raw_bytes),
                     head=_BOM if data.bom else b"")


def _parquet(path: Path) -> TextTable:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(f"reading {path} (Parquet) needs pyarrow: pip install pyarrow") from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001  (pyarrow raises its own error types)
        raise ValueError(f"cannot read {path} as Parquet ({type(exc).__name__}: {exc})") from None
    names = table.column_names
    dups = sorted({c for c in names if names.count(c) > 1})
    if dups:
        raise ValueError(f"{path} has duplicate column names: {', '.join(repr(c) for c in dups)}; "
                         "every column needs its own name")
    return TextTable("parquet", path, list(names), lambda c: _parquet_column(table, c, path),
                     list(range(table.num_rows)), "row", table=table)


def _parquet_column(table, name: str, path: Path) -> list:
    import pyarrow as pa

    col = table.column(name)
    if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
        raise ValueError(f"{path}: column {name!r} holds bytes ({col.type}), not text; store it as a "
                         "string column (UTF-8)")
    return col.to_pylist()


def _folder(root: Path) -> TextTable:
    from ._labelled_images import _OutputSets, _visible

    skip = _OutputSets()
    files, labels, empty = [], [], []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and _visible(p.name) and not skip(p)):
        found = []
        for dirpath, dirnames, filenames in os.walk(d):
            dirnames[:] = sorted(n for n in dirnames if _visible(n) and not skip(os.path.join(dirpath, n)))
            found += [os.path.join(dirpath, f) for f in filenames
                      if _visible(f) and f.lower().endswith(_TEXT_FILE)]
        if not found:
            empty.append(d.name)
        files += sorted(found)
        labels += [d.name] * len(found)
    if not files:
        raise ValueError(f"no .txt files found in {root}; expected one subfolder per class holding "
                         f"text files ({root}/<class>/*.txt)")
    texts, bad = _read_text_files(files)
    table = TextTable("folder", root, ["text", "label"], {"text": texts, "label": labels}.__getitem__,
                      list(files), "path", paths=list(files), bad=bad)
    if empty:
        table.notes.append(f"class folder(s) without .txt files left out: {', '.join(empty)}")
    table.notes += skip.notes(root)
    return table


def _read_text_files(files: list[str]) -> tuple[list, list]:
    """Each file's text (None when it is not UTF-8) and the (path, reason) of those."""
    texts, bad = [], []
    for f in files:
        data = Path(f).read_bytes()
        try:
            texts.append(data.decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            texts.append(None)
            bad.append((f, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at byte offset {exc.start})"))
    return texts, bad
