"""Images are decoded once, in the scoring pass (issue 18.2): unreadable files are found
there, and a cached re-run decodes nothing."""

import json
import os

import numpy as np
import pytest
from PIL import Image, ImageFile

from skdlc import DLCScorer
from skdlc.datasets import ImageReadError
from skdlc._backbones import _REGISTRY, register_backbone
from skdlc._backbones._base import Backbone, Preprocessing
from skdlc._cli import main
from skdlc.datasets import make_image_folder
from tests.conftest import TinyCNN

TINY = "test_decode_once_tiny"
_PP = Preprocessing(input_size=(12, 12))


@pytest.fixture(scope="module", autouse=True)
def tiny_backbone():
    register_backbone(TINY)(lambda *, pretrained=True: Backbone(TINY, TinyCNN(0).eval(), _PP, 16))
    yield
    _REGISTRY.pop(TINY, None)


@pytest.fixture
def decodes(monkeypatch):
    """Pixel decodes in this process (``ImageFile.load``; header reads do not count)."""
    count = {"n": 0}
    load = ImageFile.ImageFile.load

    def counted(self, *a, **k):
        count["n"] += 1
        return load(self, *a, **k)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counted)
    return count


def _folder(tmp_path, n_per_class=8):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), n_per_class)
    colours = np.array([[220, 40, 40], [40, 200, 60], [50, 60, 230]])
    X = np.clip(colours[y][:, None, None] + rng.normal(0, 50, (len(y), 14, 14, 3)), 0, 255).astype(np.uint8)
    return make_image_folder(tmp_path / "data", X, y, class_names=["cat", "dog", "emu"])


def _truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 3])  # the header survives, the pixels do not


def _scorer(**kw):
    return DLCScorer(Backbone("tiny", TinyCNN(0), _PP), mask_ratios=[0, 0.3], device="cpu", engine="torch",
                     verbose=False, batch_size=8, num_workers=0, **kw)


def _scores(out):
    import csv

    with open(out / "scores.csv", newline="") as f:
        return {r["path"]: r["score"] for r in csv.DictReader(f)}


def test_check_images_reads_headers_not_pixels(tmp_path, decodes):
    from skdlc._cli import CLIError
    from skdlc._cli._common import check_images
    from skdlc.datasets import read_image_folder

    root = _folder(tmp_path)
    data = read_image_folder(root)
    assert check_images(data) is data and decodes["n"] == 0
    (root / "cat" / "empty.png").write_bytes(b"")
    (root / "dog" / "text.png").write_text("not an image")
    data = read_image_folder(root)
    with pytest.raises(CLIError, match="cannot read image .*empty.png.*1 more unreadable.*--on-error skip"):
        check_images(data)
    kept = check_images(data, "skip")
    assert len(kept) == len(data) - 2 and len(kept.skipped) == 2 and decodes["n"] == 0


def test_skip_leaves_out_a_file_that_breaks_while_scoring(tmp_path):
    root = _folder(tmp_path)
    paths = sorted(str(p) for p in root.rglob("*.png"))
    y = np.array([os.path.basename(os.path.dirname(p)) for p in paths])
    _truncate(paths[5])
    with pytest.raises(ImageReadError) as err:  # the default: named, while scoring
        _scorer().fit_transform(paths, y)
    assert err.value.path == paths[5]
    s = _scorer(on_error="skip")
    out = s.fit_transform(paths, y)
    assert s.unreadable_.tolist() == [5] and np.isnan(out[5]).all() and np.isfinite(np.delete(out, 5, 0)).all()
    # the others score as if the file had never been there (prototypes without it)
    ok = np.arange(len(paths)) != 5
    ref = _scorer().fit_transform([p for p, k in zip(paths, ok) if k], y[ok])
    np.testing.assert_allclose(out[ok], ref, rtol=1e-6, atol=1e-7)


def test_skip_and_raise_share_the_feature_cache(tmp_path):
    root = _folder(tmp_path)
    paths = sorted(str(p) for p in root.rglob("*.png"))
    y = np.array([os.path.basename(os.path.dirname(p)) for p in paths])
    _truncate(paths[2])
    mem = tmp_path / "cache"
    s = _scorer(on_error="skip", memory=mem)
    s.fit_transform(paths, y)
    again = _scorer(on_error="skip", memory=mem)
    again.fit_transform(paths, y)
    assert again.n_forward_batches_ == 0 and again.unreadable_.tolist() == [2]
    with pytest.raises(ImageReadError) as err:  # raise mode reads the marked chunk: still named
        _scorer(memory=mem).fit_transform(paths, y)
    assert err.value.path == paths[2]


def test_prune_skip_and_cached_rerun_with_another_seed(tmp_path, decodes, capsys):
    root = _folder(tmp_path)
    bad = sorted((root / "dog").glob("*.png"))[1]
    _truncate(bad)
    cache, out = tmp_path / "cache", tmp_path / "out"
    argv = ["prune", str(root), "--keep", "0.5", "--backbone", TINY, "--cache", str(cache), "--quiet",
            "--no-report", "--num-workers", "0", "--on-error", "skip", "--strategy", "random",
            "--out", str(out)]
    assert main(argv + ["--seed", "0"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [s["path"] for s in summary["skipped"]] == [str(bad)] and summary["n_images"] == 23
    assert summary["calibration"]["passes"]["path_passes"] == len(summary["mask_ratios"])
    first = _scores(out)
    assert str(bad) not in first
    decodes["n"] = 0
    assert main(argv + ["--seed", "1"]) == 0
    assert decodes["n"] == 1  # only the bad file, read again to say why it was left out
    assert _scores(out) == first  # the same scores; only the draw of the kept rows differs
    second = json.loads((out / "summary.json").read_text())
    assert second["mask_ratios"] == summary["mask_ratios"] and second["skipped"] == summary["skipped"]
