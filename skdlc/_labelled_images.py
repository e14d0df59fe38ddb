"""Reading labelled image files: an image folder (one subfolder per class) or a CSV
manifest (``path``, ``label``), as paths and labels for the scorer and the CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "LabelledImages", "read_image_folder", "read_labelled_images",
           "read_manifest"]

#: File name endings read as images in an image folder (case-insensitive).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif",
                                     ".tiff", ".ppm", ".pgm", ".pbm")  # fmt: skip


@dataclass
class LabelledImages:
    """Image files and their class labels, as read by :func:`read_image_folder` or
    :func:`read_manifest`.

    Attributes
    ----------
    paths : list of str
        Absolute paths, in reading order (sorted for a folder, row order for a CSV).
    labels : ndarray of str, shape (n,)
        Class of each path: always strings (a class named ``"NA"`` stays ``"NA"``).
    source : pathlib.Path
        The folder or CSV file read.
    kind : {"folder", "manifest"}
    notes : list of str
        What was noticed and handled (empty class folders left out, repeated rows).
    skipped : list of (path, reason)
        Files left out as unreadable (filled in by the command line's checks).

    Examples
    --------
    >>> data = read_image_folder("photos/")  # doctest: +SKIP
    >>> DLCScorer().fit(data.paths, data.labels)  # doctest: +SKIP
    """

    paths: list[str]
    labels: np.ndarray
    source: Path
    kind: str
    notes: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, keep) -> "LabelledImages":
        """The rows where ``keep`` (a boolean mask) is True."""
        keep = np.asarray(keep, dtype=bool)
        return LabelledImages(
            [p for p, k in zip(self.paths, keep) if k], self.labels[keep], self.source,
            self.kind, list(self.notes), list(self.skipped),
        )


def _visible(name: str) -> bool:
    return not name.startswith(".")


def read_labelled_images(data: str | os.PathLike) -> LabelledImages:
    """Read an image folder (a directory) or a CSV manifest (a file).

    See :func:`read_image_folder` and :func:`read_manifest`.

    Raises
    ------
    FileNotFoundError
        ``data`` does not exist.
    ValueError
        The folder or manifest holds no usable rows (the message says why).
    """
    path = Path(os.path.expanduser(os.fspath(data)))
    if not path.exists():
        raise FileNotFoundError(f"DATA {os.fspath(data)!r} does not exist")
    if path.is_dir():
        return read_image_folder(path)
    return read_manifest(path)


def read_image_folder(root: str | os.PathLike) -> LabelledImages:
    """Every image file under ``root/<class>/`` (any depth), labelled by ``<class>``.

    The layout of ``torchvision.datasets.ImageFolder`` and of :func:`make_image_folder`.
    Hidden files and folders are ignored; files are sorted; class folders without
    images are left out (named in ``notes``); so are folders that skdlc wrote (an
    output set, marked in its ``summary.json``) and files of other types (``.ico``,
    no extension: counted in ``notes``).

    Parameters
    ----------
    root : str or path-like

    Returns
    -------
    LabelledImages
        ``paths`` (absolute) and ``labels`` (the class folder names, as strings).

    Raises
    ------
    ValueError
        No image in any class folder (the message says what was found instead).
    """
    root = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
    skip = _OutputSets()
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p.name) and not skip(p))
    paths: list[str] = []
    labels: list[str] = []
    notes: list[str] = []
    empty: list[str] = []
    other: list[str] = []  # files of a type skdlc does not read
    for d in class_dirs:
        files = []
        for dirpath, dirnames, filenames in os.walk(d):
            dirnames[:] = sorted(n for n in dirnames if _visible(n) and not skip(os.path.join(dirpath, n)))
            for f in filenames:
                if _visible(f):
                    (files if f.lower().endswith(IMAGE_EXTENSIONS) else other).append(os.path.join(dirpath, f))
        if not files:
            empty.append(d.name)
            continue
        files.sort()
        paths += files
        labels += [d.name] * len(files)
    if not paths:
        loose = [f for f in os.listdir(root) if f.lower().endswith(IMAGE_EXTENSIONS)]
        if loose:
            raise ValueError(
                f"{root} holds images but no class subfolders; put the images of each "
                f"class in a subfolder named after it ({root}/<class>/...)"
            )
        what = "no class subfolders" if not class_dirs else "class subfolders without images"
        raise ValueError(
            f"no images found in {root} ({what}); expected one subfolder per class "
            f"holding image files ({', '.join(IMAGE_EXTENSIONS[:4])}, ...)"
        )
    if empty:
        notes.append(f"class folder(s) without images left out: {', '.join(empty)}")
    notes += skip.notes(root) + _other_files_note(other, root)
    return LabelledImages(paths, _str_array(labels), root, "folder", notes)


class _OutputSets:
    """Recognises folders that skdlc wrote (an output set, marked by its summary.json):
    they are never read as data, e.g. ``--out`` inside DATA from an older run."""

    def __init__(self):
        self.found: list[str] = []

    def __call__(self, folder) -> bool:
        from ._io import is_output_set

        if is_output_set(folder):
            self.found.append(os.fspath(folder))
            return True
        return False

    def notes(self, root: Path) -> list[str]:
        if not self.found:
            return []
        names = ", ".join(os.path.relpath(f, root) for f in self.found[:5])
        more = f" and {len(self.found) - 5} more" if len(self.found) > 5 else ""
        return [f"left out {len(self.found)} folder(s) written by skdlc (output sets, not data): {names}{more}"]


def _other_files_note(files: list[str], root: Path) -> list[str]:
    """A note counting the files left out as not of a readable image type, by extension."""
    if not files:
        return []
    kinds: dict[str, int] = {}
    for f in files:
        ext = os.path.splitext(f)[1].lower()
        key = ext if ext else "without extension"
        kinds[key] = kinds.get(key, 0) + 1
    by_kind = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))[:6])
    return [f"left out {len(files)} file(s) not of an image type skdlc reads ({by_kind}; e.g. "
            f"{os.path.relpath(files[0], root)!r}); read are {', '.join(IMAGE_EXTENSIONS)}"]


def _str_array(values) -> np.ndarray:
    """Labels as a numpy str array (never an object array, never parsed)."""
    return np.asarray(list(values), dtype=str) if len(values) else np.asarray([], dtype=str)


def read_manifest(csv_path: str | os.PathLike) -> LabelledImages:
    """A CSV file with a header holding ``path`` and ``label`` columns (others ignored).

    Labels are read as text, exactly: ``NA``, ``None``, ``null`` or ``nan`` are class
    names like any other, and only an empty cell is a missing value (an error, reported
    by line number). Labels are kept exactly as written: ``"a "`` and ``"a"`` are two
    classes, as they are for :class:`~skdlc.DLCScorer` (``notes`` says when labels
    have leading or trailing spaces); spaces around paths are stripped. Relative
    paths are resolved against the CSV's folder. The ``kept.csv`` written by ``skdlc prune`` reads back.

    Parameters
    ----------
    csv_path : str or path-like

    Returns
    -------
    LabelledImages
        ``paths`` (absolute) and ``labels`` (strings), in row order.

    Raises
    ------
    ValueError
        Not a CSV, no ``path``/``label`` header, no rows, or empty cells.
    """
    import pandas as pd

    csv_path = Path(os.path.abspath(os.path.expanduser(os.fspath(csv_path))))
    try:
        # keep_default_na=False: no cell is parsed as NaN; only "" is missing.
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.EmptyDataError:
        raise ValueError(f"manifest {csv_path} is empty") from None
    except UnicodeDecodeError:
        raise ValueError(f"manifest {csv_path}: {_utf8_error(csv_path)}; save the file as UTF-8") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"cannot read {csv_path} as a CSV manifest ({first}); DATA must be an image "
            "folder or a CSV file with 'path' and 'label' columns"
        ) from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in ("path", "label") if c not in df.columns]
    if missing:
        found = ", ".join(repr(c) for c in df.columns) or "none"
        raise ValueError(
            f"manifest {csv_path} needs a header with columns 'path' and 'label'; "
            f"missing {', '.join(repr(c) for c in missing)} (found: {found})"
        )
    if df.columns.duplicated().any():
        raise ValueError(f"manifest {csv_path} has duplicate column names")
    if len(df) == 0:
        raise ValueError(f"manifest {csv_path} has a header but no rows")
    problems = []
    df["path"] = df["path"].astype(str).str.strip()
    df["label"] = df["label"].astype(str)  # as written: "a " and "a" are two classes
    for col in ("path", "label"):
        bad = (df[col].str.strip() == "").to_numpy()
        if bad.any():
            lines = (np.flatnonzero(bad) + 2).tolist()  # + header, 1-based
            shown = ", ".join(map(str, lines[:10])) + (
                f" (and {len(lines) - 10} more)" if len(lines) > 10 else "")
            problems.append(f"missing {col} (empty cell) on line(s) {shown}")
    if problems:
        raise ValueError(f"manifest {csv_path}: {'; '.join(problems)}")
    base = csv_path.parent
    paths = [os.path.abspath(os.path.join(base, os.path.expanduser(p))) for p in df["path"]]
    notes = []
    n_dup = len(paths) - len(set(paths))
    if n_dup:
        notes.append(f"{n_dup} manifest row(s) repeat an earlier path; each row is scored")
    spaced = sorted({v for v in df["label"].tolist() if v != v.strip()})
    if spaced:
        notes.append(f"{len(spaced)} label(s) with leading or trailing spaces kept as written, as "
                     f"classes of their own (e.g. {spaced[0]!r})")
    return LabelledImages(paths, _str_array(df["label"].tolist()), csv_path, "manifest", notes)


def _utf8_error(path: Path) -> str:
    """Where a file stops being UTF-8: line, column and byte offset of the first bad byte."""
    data = path.read_bytes()
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        data[start:].decode("utf-8")
        return "not UTF-8 text"
    except UnicodeDecodeError as exc:
        at = start + exc.start
    line_start = data.rfind(b"\n", 0, at) + 1
    line = data.count(b"\n", 0, at) + 1
    return (f"line {line} is not UTF-8 text (byte 0x{data[at]:02x} at byte "
            f"offset {at} of the file, column {at - line_start + 1})")
