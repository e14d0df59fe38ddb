"""JSON Lines records in and out, checked before any model is loaded.

Reading keeps each record's exact bytes (line ending included) and whether the file
starts with a byte-order mark, so kept records can be written back byte for byte.
Every problem is reported with the file and the line: invalid UTF-8 (with the byte
offset), invalid JSON, a line that is not an object, text that is not valid Unicode
(a lone surrogate such as ``"\\ud800"``, which no tokenizer can encode).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ._io import atomic_write

__all__ = [
    "RecordError",
    "JsonlData",
    "read_jsonl",
    "write_jsonl",
    "as_records",
    "extract_fields",
    "check_text",
]

_BOM = b"\xef\xbb\xbf"


class RecordError(ValueError):
    """A malformed input record; ``line`` is its 1-based line number in a JSONL file."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line

    def __reduce__(self):
        return (type(self), (str(self), self.line))


@dataclass
class JsonlData:
    """The content of a JSONL file: parsed records, their raw text and line numbers.

    ``raw`` holds each record's text without its line ending; ``raw_bytes`` its exact
    bytes with the line ending (``b"\\r\\n"``, ``b"\\n"``, or none on a last line
    without one); ``bom`` whether the file starts with a UTF-8 byte-order mark (not
    part of the first record).
    """

    records: list[dict]
    raw: list[str]
    line_numbers: list[int]
    path: Path
    raw_bytes: list[bytes] = field(default_factory=list)
    bom: bool = False


def check_text(value: Any, where: str, line: int | None = None, _path: str = "") -> None:
    """Raise :class:`RecordError` if a string anywhere in ``value`` is not valid Unicode.

    JSON can spell a lone surrogate (``"\\ud800"``); Python then holds a string that
    cannot be encoded as UTF-8, and tokenizers fail on it deep inside the model run.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = value[exc.start]
            name = f"field {_path!r}" if _path else "a string"
            raise RecordError(
                f"{where}: {name} is not valid Unicode text: a lone surrogate "
                f"{bad.encode('unicode_escape').decode()!r} at character {exc.start}; "
                "fix or remove this record",
                line,
            ) from None
    elif isinstance(value, Mapping):
        for k, v in value.items():
            check_text(k, where, line, _path)
            check_text(v, where, line, f"{_path}.{k}" if _path else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_text(v, where, line, f"{_path}[{i}]")


def read_jsonl(path: str | os.PathLike) -> JsonlData:
    """Read a JSON Lines file of objects (blank lines are skipped).

    Raises
    ------
    RecordError
        Naming the file and line of the first line that is not UTF-8 (with the byte
        offset in the file), not valid JSON, not a JSON object, or holding text that
        is not valid Unicode.
    """
    path = Path(path)
    records, raw, raw_bytes, numbers = [], [], [], []
    with open(path, "rb") as f:
        data = f.read()
    bom = data.startswith(_BOM)
    offset = len(_BOM) if bom else 0
    for i, (line_bytes, start) in enumerate(_lines(data, offset), start=1):
        body = line_bytes.rstrip(b"\r\n")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordError(
                f"{path}: line {i}: not UTF-8 text (byte 0x{body[exc.start]:02x} at byte "
                f"offset {start + exc.start} of the file, column {exc.start + 1}); save the "
                "file as UTF-8",
                i,
            ) from None
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecordError(
                f"{path}: line {i}: not valid JSON ({exc.msg} at column {exc.colno})", i
            ) from None
        if not isinstance(obj, dict):
            raise RecordError(
                f"{path}: line {i}: expected a JSON object, got {type(obj).__name__}", i
            )
        check_text(obj, f"{path}: line {i}", i)
        records.append(obj)
        raw.append(text)
        raw_bytes.append(line_bytes)
        numbers.append(i)
    return JsonlData(records, raw, numbers, path, raw_bytes, bom)


def _lines(data: bytes, offset: int):
    """(line with its b"\\n", its byte offset in the file), splitting on b"\\n" only."""
    start = offset
    n = len(data)
    while start < n:
        end = data.find(b"\n", start)
        end = n if end < 0 else end + 1
        yield data[start:end], start
        start = end


def write_jsonl(
    path: str | os.PathLike, records: Iterable[Mapping | str | bytes], *, bom: bool = False
) -> int:
    """Write records atomically; returns the number of lines written.

    A dict is serialised as JSON (UTF-8, not ASCII-escaped) with ``"\\n"``; a str is
    written as one line followed by ``"\\n"``; bytes are written verbatim (a record's
    ``raw_bytes``, line ending included; ``b"\\n"`` is added when it has none).
    ``bom=True`` starts the file with a UTF-8 byte-order mark.
    """
    n = 0
    with atomic_write(path, "wb") as f:
        if bom:
            f.write(_BOM)
        for r in records:
            if isinstance(r, (bytes, bytearray)):
                f.write(r if r.endswith(b"\n") else bytes(r) + b"\n")
            else:
                text = r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)
                f.write(text.encode("utf-8") + b"\n")
            n += 1
    return n


def as_records(X: Any) -> list[Mapping]:
    """A list of dicts / a DataFrame / a JSONL path / a sequence of mappings -> list.

    Records are not copied or modified.
    """
    if isinstance(X, (str, os.PathLike)):
        return read_jsonl(X).records
    if hasattr(X, "to_dict") and hasattr(X, "columns"):  # pandas DataFrame
        return X.to_dict("records")
    if isinstance(X, Mapping):
        raise TypeError(
            "X must be a sequence of records (dicts), a DataFrame or a JSONL path; "
            "got a single mapping"
        )
    try:
        records = list(X)
    except TypeError:
        raise TypeError(
            f"X must be a list of dicts, a DataFrame or a JSONL path, got {type(X).__name__}"
        ) from None
    return records


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def extract_fields(
    records: Sequence[Mapping],
    instruction_field: str = "instruction",
    input_field: str | None = "input",
    output_field: str = "output",
    line_numbers: Sequence[int] | None = None,
) -> list[tuple[str, str, str]]:
    """(instruction, input, output) strings of each record; input may be absent.

    Raises
    ------
    RecordError
        Naming the record (or JSONL line) and the field that is missing, not text, or
        not valid Unicode text.
    """

    def where(i: int) -> str:
        return f"line {line_numbers[i]}" if line_numbers is not None else f"record {i}"

    out = []
    for i, r in enumerate(records):
        line = line_numbers[i] if line_numbers is not None else None
        if not isinstance(r, Mapping):
            raise RecordError(f"{where(i)}: expected a dict, got {type(r).__name__}", line)
        vals = []
        for name, required in ((instruction_field, True), (input_field, False),
                               (output_field, True)):
            v = r.get(name) if name is not None else None
            if _is_missing(v):
                if required and name in r:  # present, but null (or NaN)
                    raise RecordError(
                        f"{where(i)}: field {name!r} is {'null' if v is None else 'NaN'}; it must "
                        "be a string", line
                    )
                if required:
                    have = ", ".join(repr(k) for k in list(r)[:8])
                    raise RecordError(
                        f"{where(i)}: missing field {name!r} (the record has: {have})", line
                    )
                v = ""
            if not isinstance(v, str):
                raise RecordError(
                    f"{where(i)}: field {name!r} must be a string, got {type(v).__name__}", line
                )
            check_text(v, where(i), line, str(name))
            vals.append(v)
        out.append((vals[0], vals[1], vals[2]))
    return out
