"""Writing a run's files: CSV and strict JSON, each atomic (see :mod:`skdlc._io`)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

__all__ = ["write_csv", "write_json", "dumps_json", "fmt_score", "counts_by_class"]


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Write a CSV atomically, streaming the rows: readers see the old file or the new one."""
    from ._io import atomic_write

    with atomic_write(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _strict(o):
    """``o`` with every non-finite float as None: JSON has no NaN or Infinity."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _strict(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_strict(v) for v in o]
    if isinstance(o, np.generic):
        return _strict(o.item())
    if isinstance(o, np.ndarray):
        return _strict(o.tolist())
    if isinstance(o, Path):
        return str(o)
    return o


def write_json(path: Path, obj) -> None:
    """Write strict JSON atomically (NaN and infinity become null)."""
    from ._io import atomic_write

    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(_strict(obj), f, indent=2, allow_nan=False)
        f.write("\n")


def dumps_json(obj, **kwargs) -> str:
    """``json.dumps`` as strict JSON: NaN and infinity become null, numpy values plain."""
    return json.dumps(_strict(obj), allow_nan=False, **kwargs)


def fmt_score(x: float) -> str:
    return f"{float(x):.8g}"


def counts_by_class(labels) -> dict[str, int]:
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts)}
