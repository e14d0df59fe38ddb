"""Tests of skdlc.datasets: real offline data (MNIST, Fashion-MNIST) and image folders."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from skdlc.datasets import (
    FASHION_MNIST_CLASSES,
    DatasetNotAvailableError,
    load_fashion_mnist,
    load_mnist,
    make_image_folder,
)

STANDARD_FASHION = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip


def _row_hashes(images: np.ndarray) -> list[str]:
    return [hashlib.sha1(np.ascontiguousarray(im).tobytes()).hexdigest() for im in images]


# ----------------------------------------------------------------------------- MNIST


def test_load_mnist_bunch():
    data = load_mnist()
    assert data.images.shape == (5000, 28, 28, 3)
    assert data.images.dtype == np.uint8
    assert np.issubdtype(data.target.dtype, np.integer)
    assert data.target.shape == (5000,)
    assert data.target_names == [str(d) for d in range(10)]
    assert np.bincount(data.target).tolist() == [500] * 10
    # gray replicated into identical RGB channels, a real 0-255 range
    assert np.array_equal(data.images[..., 0], data.images[..., 1])
    assert np.array_equal(data.images[..., 0], data.images[..., 2])
    assert data.images.min() == 0 and data.images.max() == 255
    assert "MNIST" in data.DESCR


def test_load_mnist_return_X_y_matches_bunch():
    X, y = load_mnist(return_X_y=True)
    data = load_mnist()
    assert np.array_equal(X, data.images) and np.array_equal(y, data.target)


def test_mnist_subsample_stratified_and_deterministic():
    full_X, _ = load_mnist(return_X_y=True)
    X1, y1 = load_mnist(n_per_class=7, random_state=3, return_X_y=True)
    X2, y2 = load_mnist(n_per_class=7, random_state=3, return_X_y=True)
    X3, _ = load_mnist(n_per_class=7, random_state=4, return_X_y=True)
    assert X1.shape == (70, 28, 28, 3)
    assert np.bincount(y1).tolist() == [7] * 10
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2)
    assert not np.array_equal(X1, X3)
    assert set(_row_hashes(X1)) <= set(_row_hashes(full_X))
    assert np.all(np.diff(y1) >= 0)  # source order kept (grouped by class)


@pytest.mark.parametrize("bad", [0, -1, 501])
def test_n_per_class_out_of_range(bad):
    with pytest.raises(ValueError, match="n_per_class"):
        load_mnist(n_per_class=bad)


@pytest.mark.parametrize("bad", [2.5, "10", True])
def test_n_per_class_wrong_type(bad):
    with pytest.raises(TypeError, match="n_per_class"):
        load_mnist(n_per_class=bad)


# ----------------------------------------------------------------- Fashion-MNIST
# Installed from Debian's archive by the README's test command: these tests fail, not
# skip, when it is missing.


def test_load_fashion_mnist_test_split():
    data = load_fashion_mnist()
    assert data.images.shape == (10000, 28, 28, 3) and data.images.dtype == np.uint8
    assert data.target.shape == (10000,) and np.issubdtype(data.target.dtype, np.integer)
    assert np.bincount(data.target, minlength=10).tolist() == [1000] * 10
    assert data.target_names == list(FASHION_MNIST_CLASSES) == STANDARD_FASHION
    assert "Fashion-MNIST" in data.DESCR
    X = data.images
    assert np.array_equal(X[..., 0], X[..., 1]) and np.array_equal(X[..., 0], X[..., 2])
    # The published statistics of the test split: mean 0.2868, std 0.3524 (of 255).
    assert abs(X[..., 0].mean() / 255 - 0.2868) < 0.001
    assert abs(X[..., 0].std() / 255 - 0.3524) < 0.001
    assert len(set(_row_hashes(X))) == 10000  # distinct pictures
    # Pictures follow the labels: trousers are narrow and tall, bags and pullovers wide.
    ink = X[..., 0] > 50
    width = ink.any(axis=1).sum(axis=1)
    per_class = np.array([width[data.target == k].mean() for k in range(10)])
    assert per_class[STANDARD_FASHION.index("Trouser")] < 0.7 * per_class[
        STANDARD_FASHION.index("Pullover")]
    assert per_class[STANDARD_FASHION.index("Bag")] > per_class[STANDARD_FASHION.index("Trouser")]


def test_load_fashion_mnist_train_and_all():
    train = load_fashion_mnist(subset="train", return_X_y=True)
    assert train[0].shape == (60000, 28, 28, 3)
    assert np.bincount(train[1]).tolist() == [6000] * 10
    assert abs(train[0][..., 0].mean() / 255 - 0.2860) < 0.001
    X, y = load_fashion_mnist(subset="all", n_per_class=3, random_state=0, return_X_y=True)
    assert X.shape == (30, 28, 28, 3) and np.bincount(y).tolist() == [3] * 10
    with pytest.raises(ValueError, match="subset"):
        load_fashion_mnist(subset="val")


def test_fashion_mnist_subsample_and_cache(tmp_path, monkeypatch):
    X1, y1 = load_fashion_mnist(n_per_class=25, random_state=0, return_X_y=True)
    X2, y2 = load_fashion_mnist(n_per_class=25, random_state=0, return_X_y=True)
    X3, _ = load_fashion_mnist(n_per_class=25, random_state=1, return_X_y=True)
    assert X1.shape == (250, 28, 28, 3) and np.bincount(y1).tolist() == [25] * 10
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2) and not np.array_equal(X1, X3)
    full = load_fashion_mnist()
    lookup = dict(zip(_row_hashes(full.images), full.target.tolist()))
    assert all(lookup[h] == t for h, t in zip(_row_hashes(X1), y1.tolist()))
    # a fresh cache is filled once; later calls read the .npz without the source files
    monkeypatch.setenv("SKDLC_CACHE_DIR", str(tmp_path / "cache"))
    first = load_fashion_mnist()
    assert (tmp_path / "cache" / "datasets" / "fashion_mnist_test.npz").is_file()
    monkeypatch.setenv("SKDLC_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    again = load_fashion_mnist()
    assert np.array_equal(first.images, again.images)


def test_fashion_mnist_missing_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("SKDLC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SKDLC_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetNotAvailableError) as info:
        load_fashion_mnist()
    msg = str(info.value)
    assert "apt-get install -y dataset-fashion-mnist" in msg
    assert "SKDLC_FASHION_MNIST_DIR" in msg and "t10k-images-idx3-ubyte.gz" in msg


def test_fashion_mnist_bad_files(tmp_path, monkeypatch):
    import gzip
    import shutil

    src = tmp_path / "files"
    src.mkdir()
    for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(f"/usr/share/datasets/fashion-mnist/{f}", src / f)
    (src / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x08\x03" + b"\0" * 12))
    monkeypatch.setenv("SKDLC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SKDLC_FASHION_MNIST_DIR", str(src))
    with pytest.raises(DatasetNotAvailableError, match="unexpected header"):
        load_fashion_mnist()


# ---------------------------------------------------------------------- image folder


def test_make_image_folder_layout_and_roundtrip(tmp_path):
    X, y = load_mnist(n_per_class=2, return_X_y=True)
    root = make_image_folder(tmp_path / "mnist", X, y)
    assert root == tmp_path / "mnist"
    assert sorted(p.name for p in root.iterdir()) == [str(d) for d in range(10)]
    files = sorted(root.rglob("*.png"))
    assert len(files) == 20
    assert all(len(list((root / str(d)).glob("*.png"))) == 2 for d in range(10))
    # file <i> holds row i, losslessly
    for i in (0, 7, 19):
        (path,) = root.glob(f"*/{i:02d}.png")
        assert path.parent.name == str(y[i])
        assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), X[i])


def test_make_image_folder_class_names_and_formats(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 16, 16, 3), dtype=np.uint8)
    names = ["cat", "dog", "emu"]
    root = make_image_folder(tmp_path / "a", images, [0, 1, 0, 1, 0, 1], class_names=names)
    assert sorted(p.name for p in root.iterdir()) == names  # the empty class has a folder
    assert sorted(p.name for p in (root / "cat").iterdir()) == ["0.png", "2.png", "4.png"]
    root = make_image_folder(tmp_path / "b", images, ["emu"] * 6, class_names=names, fmt="jpg")
    assert len(list((root / "emu").glob("*.jpg"))) == 6
    gray = images[..., 0]
    root = make_image_folder(tmp_path / "c", gray, np.arange(6) % 2)
    assert np.array_equal(np.asarray(Image.open(root / "1" / "3.png")), gray[3])


def test_make_image_folder_errors(tmp_path):
    images = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="no index"):
        make_image_folder(tmp_path, images, [0, 2], class_names=["a", "b"])
    with pytest.raises(ValueError, match="not in class_names"):
        make_image_folder(tmp_path, images, ["a", "z"], class_names=["a", "b"])
    with pytest.raises(ValueError, match="labels must have shape"):
        make_image_folder(tmp_path, images, [0])
    with pytest.raises(ValueError, match="uint8"):
        make_image_folder(tmp_path, images.astype(float), [0, 1])
    with pytest.raises(ValueError, match="fmt"):
        make_image_folder(tmp_path, images, [0, 1], fmt="gif")
    with pytest.raises(ValueError, match="folder name"):
        make_image_folder(tmp_path, images, [0, 1], class_names=["a", "../b"])


# ------------------------------------------------------- reading labelled image files
def test_read_image_folder_and_manifest(tmp_path):
    from skdlc.datasets import read_image_folder, read_manifest

    images = np.zeros((5, 4, 4, 3), dtype=np.uint8)
    root = make_image_folder(tmp_path / "d", images, [0, 1, 1, 0, 1], class_names=["b", "a"])
    (root / "empty").mkdir()
    (root / "a" / ".hidden.png").write_bytes(b"x")
    data = read_image_folder(root)
    assert data.kind == "folder" and len(data) == 5
    assert data.labels.tolist() == ["a", "a", "a", "b", "b"]  # sorted class folders
    assert [p.rsplit("/", 1)[1] for p in data.paths] == ["1.png", "2.png", "4.png", "0.png", "3.png"]
    assert any("empty" in n for n in data.notes)

    csv_path = tmp_path / "m.csv"
    csv_path.write_text("path,label\n d/a/1.png , null\nd/b/0.png,None\nd/b/3.png,NA\n")
    m = read_manifest(csv_path)
    assert m.labels.tolist() == [" null", "None", "NA"]  # labels as written (issue 19); paths stripped
    assert any("leading or trailing spaces" in n for n in m.notes)
    assert m.paths[0] == str(root / "a" / "1.png")
    csv_path.write_text("path,label\nd/a/1.png,\n")
    with pytest.raises(ValueError, match=r"missing label \(empty cell\) on line\(s\) 2"):
        read_manifest(csv_path)
    with pytest.raises(ValueError, match="no images found"):
        read_image_folder(tmp_path / "d" / "empty")
