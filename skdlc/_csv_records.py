"""CSV and TSV records with their exact bytes, so kept rows can be written back unchanged.

:func:`read_csv_records` parses a delimited text file with Python's :mod:`csv` module,
feeding it one physical line at a time (split on ``b"\\n"`` only, line endings kept)
and noting which lines each record used: a record's bytes are exactly the lines it
spans, so a quoted field holding line breaks stays whole. Every problem names the file
and the line: bytes that are not UTF-8 (with the byte offset), a quote that is not
closed, a row with more or fewer fields than the header, duplicate column names.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ._jsonl import _BOM, _lines

__all__ = ["CsvRecords", "read_csv_records"]


@dataclass
class CsvRecords:
    """The records of a CSV/TSV file.

    ``head`` holds every byte before the first record (a byte-order mark, the header
    with its line ending); ``raw[i]`` the exact bytes of record ``i`` (its lines, line
    endings included); ``lines[i]`` the line the record starts on (1-based).
    """

    columns: list[str]
    rows: list[list[str]]
    raw: list[bytes]
    lines: list[int]
    head: bytes


class _LineFeed:
    """Decodes the file line by line for csv.reader and remembers each line's bytes."""

    def __init__(self, path: Path, data: bytes, offset: int):
        self.path, self.data, self.offset = path, data, offset
        self.seen: list[tuple[bytes, int]] = []  # (bytes, line number)

    def __iter__(self):
        for number, (chunk, start) in enumerate(_lines(self.data, self.offset), start=1):
            try:
                text = chunk.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(
                    f"{self.path}: line {number} is not UTF-8 text (byte 0x{chunk[exc.start]:02x} at "
                    f"byte offset {start + exc.start} of the file, column {exc.start + 1}); save the "
                    "file as UTF-8") from None
            self.seen.append((chunk, number))
            yield text


def _check_header(path: Path, columns: list[str]) -> None:
    if not columns or columns == [""]:
        raise ValueError(f"{path} has an empty first line; the first line must be a header naming the columns")
    dups = sorted({c for c in columns if columns.count(c) > 1})
    if dups:
        raise ValueError(f"{path} has duplicate column names: {', '.join(repr(c) for c in dups)}; "
                         "every column needs its own name")


def read_csv_records(path: str | Path, delimiter: str = ",") -> CsvRecords:
    """Read a CSV (``delimiter=","``) or TSV (``"\\t"``) file with a header line.

    Blank lines are skipped (they belong to no record). Fields are read as text,
    exactly (no value is parsed as a number or as missing).

    Raises
    ------
    ValueError
        Naming the file and line: not UTF-8, malformed quoting, a row whose number of
        fields differs from the header's, duplicate or empty header; or an empty file.
    """
    path = Path(path)
    data = path.read_bytes()
    offset = len(_BOM) if data.startswith(_BOM) else 0
    feed = _LineFeed(path, data, offset)
    reader = csv.reader(iter(feed), delimiter=delimiter, strict=True)
    columns: list[str] | None = None
    head = data[:offset]
    out = CsvRecords([], [], [], [], b"")
    while True:
        start = len(feed.seen)
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            first = feed.seen[start][1] if len(feed.seen) > start else reader.line_num
            raise ValueError(f"{path}: the record starting on line {first} is not valid "
                             f"{'TSV' if delimiter == chr(9) else 'CSV'} ({exc}; is a quote left open?)") from None
        used = feed.seen[start:]
        if columns is None:
            columns = row
            _check_header(path, columns)
            head += b"".join(b for b, _ in used)
            continue
        if not row:  # a blank line
            continue
        if len(row) != len(columns):
            raise ValueError(f"{path}: line {used[0][1]} has {len(row)} field(s) and the header "
                             f"{len(columns)}; is a quote left open, or a {_name(delimiter)} unquoted?")
        out.rows.append(row)
        out.raw.append(b"".join(b for b, _ in used))
        out.lines.append(used[0][1])
    if columns is None:
        raise ValueError(f"{path} is empty; expected a header line and one record per line")
    out.columns, out.head = columns, head
    return out


def _name(delimiter: str) -> str:
    return {",": "comma", "\t": "tab"}.get(delimiter, repr(delimiter))
