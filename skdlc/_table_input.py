"""A pandas DataFrame or a Hugging Face ``datasets.Dataset`` as :func:`skdlc.prune`'s input.

:func:`table_input` takes the sample column (texts, or images: PIL images, arrays or
image paths) and the label column out of the table, checks them, and returns what the
scorer takes. ``datasets`` is imported by nobody here: a Dataset is recognised by its
type's module, so the package stays optional.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["table_input", "is_table"]


def _is_hf_dataset(X) -> bool:
    return type(X).__module__.split(".")[0] == "datasets" and hasattr(X, "column_names")


def _is_dataframe(X) -> bool:
    import pandas as pd

    return isinstance(X, pd.DataFrame)


def is_table(X) -> bool:
    """Whether X is a pandas DataFrame or a Hugging Face ``datasets.Dataset``."""
    return _is_dataframe(X) or _is_hf_dataset(X)


def _columns(X) -> list[str]:
    return [str(c) for c in (X.columns if _is_dataframe(X) else X.column_names)]


def _check_column(X, name: str, param: str) -> None:
    cols = _columns(X)
    if _is_dataframe(X) and X.columns.duplicated().any():
        dups = sorted({str(c) for c in X.columns[X.columns.duplicated()]})
        raise ValueError(f"X has duplicate column names {dups}; rename them before pruning")
    if name not in cols:
        raise ValueError(f"{param}={name!r} is not a column of X; its columns are: "
                         f"{', '.join(repr(c) for c in cols)}")


class _ColumnDataset(torch.utils.data.Dataset):
    """One column of a Hugging Face Dataset as a lazy, map-style torch dataset (images are
    decoded batch by batch by the scorer, not all at once)."""

    def __init__(self, ds, column: str):
        super().__init__()
        self.ds, self.column = ds, column

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        return self.ds[int(i)][self.column]


def _texts(values: list, name: str) -> list[str]:
    bad = [i for i, v in enumerate(values) if not isinstance(v, str) or not v.strip()]
    if bad:
        v = values[bad[0]]
        what = "empty" if isinstance(v, str) else f"{type(v).__name__} ({v!r:.40})"
        raise ValueError(f"text_column={name!r} holds {len(bad)} value(s) that are not non-empty text, "
                         f"e.g. row {bad[0]} is {what}; drop or fill those rows first "
                         f"(rows: {bad[:10]}{' ...' if len(bad) > 10 else ''})")
    return list(values)


def _is_missing(v) -> bool:
    import pandas as pd

    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def _labels(values, name: str) -> np.ndarray:
    values = list(values)  # before numpy, which would turn NaN among strings into "nan"
    missing = [i for i, v in enumerate(values) if _is_missing(v)]
    if missing and len(missing) == len(values):
        raise ValueError(f"label_column={name!r} is missing (None or NaN) in every row")
    if missing:
        raise ValueError(f"label_column={name!r} is missing (None or NaN) in {len(missing)} row(s), "
                         f"e.g. rows {missing[:10]}; drop those rows first")
    return np.asarray(values)


def table_input(X, y, *, text_column: str | None, image_column: str | None,
                label_column: str | None) -> tuple[Any, Any, str | None]:
    """``(samples, labels, kind)`` for :func:`skdlc.prune`; X unchanged when not a table.

    ``kind`` is ``"text"``, ``"images"`` or None (X was not a table).
    """
    given = {k: v for k, v in (("text_column", text_column), ("image_column", image_column),
                               ("label_column", label_column)) if v is not None}
    if type(X).__module__.split(".")[0] == "datasets" and type(X).__name__ in ("DatasetDict", "IterableDatasetDict"):
        raise ValueError(f"X is a datasets.{type(X).__name__} (splits: {', '.join(map(str, X))}); pass one "
                         "split, e.g. X['train']")
    if not is_table(X):
        if given:
            names = " and ".join(f"{k}={v!r}" for k, v in given.items())
            raise ValueError(f"{names}: column names are for a pandas DataFrame or a Hugging Face "
                             f"datasets.Dataset X; X is a {type(X).__name__}: pass the samples as X and the "
                             "labels as y instead")
        return X, y, None
    if (text_column is None) == (image_column is None):
        raise ValueError("X is a table: name its sample column with text_column= or image_column= (one "
                         f"of them); its columns are: {', '.join(repr(c) for c in _columns(X))}")
    if y is not None and label_column is not None:
        raise ValueError("give the labels either as y or as label_column=, not both")
    column = text_column if text_column is not None else image_column
    _check_column(X, column, "text_column" if text_column is not None else "image_column")
    if y is None:
        label_column = "label" if label_column is None else label_column
        _check_column(X, label_column, "label_column")
        y = _labels(X[label_column].tolist() if _is_dataframe(X) else X[label_column], label_column)
    if text_column is not None:
        values = X[column].tolist() if _is_dataframe(X) else X[column]
        return _texts(list(values), column), y, "text"
    if _is_dataframe(X):
        return X[column].tolist(), y, "images"
    return _ColumnDataset(X, column), y, "images"
