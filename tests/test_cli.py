"""The ``skdlc prune`` and ``skdlc demo`` commands, run in-process with a tiny backbone."""

import csv
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from skdlc import Backbone, Preprocessing
from skdlc._backbones import _REGISTRY, register_backbone
from skdlc._cli import main
from skdlc.datasets import make_image_folder
from skdlc.tuning import stratified_split, tune_gamma

TINY = "test_cli_tiny_cnn"
NO_FEATURES = "test_cli_no_features"


class _TinyCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(torch.nn.functional.max_pool2d(x, 2)))
        return x.mean(dim=(2, 3))


class _NoFeatures(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x)[:, :0, 0, 0]  # (N, 0): no features


_PP = Preprocessing(input_size=(16, 16), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@pytest.fixture(scope="module", autouse=True)
def tiny_backbones():
    """Register test-only backbones; the CLI resolves --backbone through the registry."""
    register_backbone(TINY)(lambda *, pretrained=True: Backbone(TINY, _TinyCNN().eval(), _PP, 16))
    register_backbone(NO_FEATURES)(lambda *, pretrained=True: Backbone(NO_FEATURES, _NoFeatures().eval(), _PP))
    yield
    _REGISTRY.pop(TINY, None)
    _REGISTRY.pop(NO_FEATURES, None)


def _images(n_per_class=(12, 12, 12), size=20, seed=0):
    rng = np.random.default_rng(seed)
    colours = np.array([[220, 40, 40], [40, 200, 60], [50, 60, 230], [200, 200, 40]], dtype=float)
    imgs, labels = [], []
    for k, n in enumerate(n_per_class):
        noise = rng.normal(0, 40 + 10 * np.arange(n)[:, None, None, None], (n, size, size, 3))
        imgs.append(np.clip(colours[k] + noise, 0, 255).astype(np.uint8))
        labels += [k] * n
    return np.concatenate(imgs), np.array(labels)


@pytest.fixture
def folder(tmp_path):
    X, y = _images()
    return make_image_folder(tmp_path / "data", X, y, class_names=["cat", "dog", "emu"])


def _run(argv):
    return main([str(a) for a in argv])


def _prune(data, out, *extra):
    return _run(["prune", data, "--backbone", TINY, "--mask-ratios", "0,0.3,0.6",
                 "--device", "cpu", "--num-workers", "0", "--out", out, "--quiet", *extra])


def _read(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _no_temp_files(out):
    return [p.name for p in out.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp")] == []


# --------------------------------------------------------------------------- prune
def test_prune_image_folder(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert _prune(folder, out, "--keep", "0.25", "--gamma", "0.3", "--seed", "1") == 0
    assert sorted(p.name for p in out.iterdir()) == ["figures", "kept.csv", "report.html", "scores.csv", "summary.json"]
    scores, kept = _read(out / "scores.csv"), _read(out / "kept.csv")
    assert len(scores) == 36
    assert {r["label"] for r in scores} == {"cat", "dog", "emu"}
    # 25% of 12 = 3 per class
    assert {lab: sum(r["label"] == lab for r in kept) for lab in ("cat", "dog", "emu")} == {
        "cat": 3, "dog": 3, "emu": 3}
    # kept rows: a subset of scores.csv with the same scores, marked kept there
    by_path = {r["path"]: r for r in scores}
    for r in kept:
        assert os.path.isabs(r["path"]) and os.path.isfile(r["path"])
        assert by_path[r["path"]]["score"] == r["score"] and by_path[r["path"]]["kept"] == "1"
        assert np.isfinite(float(r["score"]))
    assert sum(r["kept"] == "1" for r in scores) == 9
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images"] == 36 and summary["n_kept"] == 9
    assert summary["gamma"] == 0.3 and summary["gamma_source"] == "fixed"
    assert summary["backbone"] == TINY and summary["mask_ratios"] == [0.0, 0.3, 0.6]
    assert summary["classes"][0] == {"label": "cat", "before": 12, "kept": 3}
    assert set(summary["time_s"]) >= {"scoring", "total"}
    printed = capsys.readouterr().out
    assert "kept 9 of 36 images" in printed and "gamma 0.3" in printed
    assert _no_temp_files(out)


def test_prune_csv_manifest_relative_paths_and_reuse(folder, tmp_path):
    # relative paths are resolved against the CSV's folder, not the working directory
    files = sorted(folder.rglob("*.png"))
    manifest = folder.parent / "train.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "extra"])
        for p in files:
            w.writerow([p.relative_to(folder.parent).as_posix(), p.parent.name, "x"])
    out = tmp_path / "out"
    assert _prune(manifest, out, "--keep", "0.5") == 0
    kept = _read(out / "kept.csv")
    assert len(kept) == 18
    assert {os.path.realpath(r["path"]) for r in kept} <= {os.path.realpath(p) for p in files}
    # the kept manifest is itself valid DATA
    out2 = tmp_path / "out2"
    assert _prune(out / "kept.csv", out2, "--keep", "0.5") == 0
    assert len(_read(out2 / "kept.csv")) == 9


def test_prune_same_result_from_folder_and_manifest(folder, tmp_path):
    files = sorted(folder.rglob("*.png"))
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n" + "".join(f"{p},{p.parent.name}\n" for p in files))
    assert _prune(folder, tmp_path / "a", "--keep", "0.4") == 0
    assert _prune(manifest, tmp_path / "b", "--keep", "0.4") == 0
    assert _read(tmp_path / "a" / "kept.csv") == _read(tmp_path / "b" / "kept.csv")


def test_prune_gamma_auto(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert _prune(folder, out, "--keep", "0.5", "--strategy", "flexrand", "--gamma", "auto",
                  ) == 0
    summary = json.loads((out / "summary.json").read_text())
    search = summary["gamma_search"]
    assert summary["gamma_source"] == "auto"
    assert summary["gamma"] in search["gammas"] and len(search["gammas"]) == 19
    assert search["n_train"] + search["n_validation"] == 36 and search["n_validation"] == 6  # 2 of 12 per class
    best = search["gammas"].index(summary["gamma"])
    assert search["mean_accuracy"][best] == max(search["mean_accuracy"])
    assert len(_read(out / "kept.csv")) == 18
    assert "auto: validation accuracy" in capsys.readouterr().out


def test_prune_mixed_sizes_and_modes(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for k, cls in enumerate(["a", "b"]):
        (root / cls / "sub").mkdir(parents=True)
        for i in range(5):
            size = (10 + 7 * i, 30 - 3 * i)
            arr = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
            img = Image.fromarray(arr).convert(["RGB", "L", "RGBA", "P", "RGB"][i])
            img.save(root / cls / ("sub" if i == 4 else "") / f"{i}.{'jpg' if i == 1 else 'png'}")
        (root / cls / "notes.txt").write_text("not an image, ignored")
    (root / ".hidden").mkdir()
    out = tmp_path / "out"
    assert _prune(root, out, "--keep", "0.4") == 0
    assert len(_read(out / "scores.csv")) == 10
    assert len(_read(out / "kept.csv")) == 4


def test_prune_small_class_keeps_one(tmp_path, capsys):
    X, y = _images((20, 20, 2))
    data = make_image_folder(tmp_path / "data", X, y)
    out = tmp_path / "out"
    assert _prune(data, out, "--keep", "0.1") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [c["kept"] for c in summary["classes"]] == [2, 2, 1]
    assert any("kept 1" in n for n in summary["notes"])
    assert "every class keeps at least one" in capsys.readouterr().out


def test_prune_skip_unreadable(folder, tmp_path):
    bad = folder / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = sorted((folder / "cat").glob("*.png"))[0]
    trunc = folder / "cat" / "truncated.png"
    trunc.write_bytes(good.read_bytes()[:60])
    out = tmp_path / "out"
    assert _prune(folder, out, "--keep", "0.5", "--on-error", "skip") == 0
    skipped = _read(out / "skipped.csv")
    assert sorted(os.path.basename(r["path"]) for r in skipped) == ["broken.png", "truncated.png"]
    assert all(r["reason"] for r in skipped)
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["skipped"]) == 2 and summary["n_images"] == 36
    assert all(r["path"] not in {str(bad), str(trunc)} for r in _read(out / "scores.csv"))


# --------------------------------------------------------------------------- errors
def _error(capsys, argv):
    rc = _run(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err, err
    # progress bars (when not --quiet) redraw with "\r"; the error is one line of its own
    lines = [ln.rsplit("\r", 1)[-1].strip() for ln in err.splitlines()]
    errors = [ln for ln in lines if "error:" in ln]
    assert len(errors) == 1 and errors[0].startswith("skdlc prune: error: "), err
    return errors[0]


@pytest.mark.parametrize(
    "keep, message",
    [("0", "(0, 1]"), ("1.5", "or a percentage (e.g. 30%)"), ("30", "(0, 1]"), ("-0.2", "(0, 1]"),
     ("nan", "finite"), ("abc", "must be a number"), ("150%", "(0%, 100%]"), ("0%", "(0%, 100%]")],
)
def test_error_bad_keep(folder, tmp_path, capsys, keep, message):
    out = tmp_path / "out"
    line = _error(capsys, ["prune", folder, "--keep", keep, "--backbone", TINY, "--out", out])
    assert "--keep" in line and message in line
    assert "did you mean" not in line  # 1.5 is not guessed to be 0.015
    assert not out.exists()


@pytest.mark.parametrize("gamma", ["0", "1", "1.2", "-0.1", "often"])
def test_error_bad_gamma(folder, tmp_path, capsys, gamma):
    line = _error(capsys, ["prune", folder, "--keep", "0.5", "--gamma", gamma, "--backbone", TINY])
    assert "--gamma" in line


def test_error_missing_and_corrupt_files_write_nothing(folder, tmp_path, capsys):
    out = tmp_path / "out"
    bad = folder / "emu" / "zz_corrupt.png"
    bad.write_bytes(b"garbage")
    line = _error(capsys, ["prune", folder, "--keep", "0.5", "--backbone", TINY, "--out", out, "--quiet"])
    assert "zz_corrupt.png" in line and "--on-error skip" in line
    assert not out.exists()

    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\ndata/cat/00.png,cat\ndata/cat/nope.png,cat\ndata/dog/12.png,dog\n")
    line = _error(capsys, ["prune", manifest, "--keep", "0.5", "--backbone", TINY, "--out", out])
    assert "nope.png" in line and "no such file" in line
    assert not out.exists()


def test_error_existing_outputs_untouched_on_failure(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert _prune(folder, out, "--keep", "0.5") == 0
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    _error(capsys, ["prune", folder, "--keep", "0.5", "--backbone", NO_FEATURES,
                    "--device", "cpu", "--num-workers", "0", "--out", out, "--quiet"])
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_error_backbone_without_features(folder, tmp_path, capsys):
    out = tmp_path / "out"
    line = _error(capsys, ["prune", folder, "--keep", "0.5", "--backbone", NO_FEATURES,
                           "--device", "cpu", "--num-workers", "0", "--out", out, "--quiet"])
    assert "no features" in line and NO_FEATURES in line
    assert not out.exists()


def test_error_unknown_backbone(folder, capsys):
    line = _error(capsys, ["prune", folder, "--keep", "0.5", "--backbone", "no_such_net_xyz"])
    assert "no_such_net_xyz" in line


def test_error_empty_inputs(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no images found" in _error(capsys, ["prune", empty, "--keep", "0.5"])
    (empty / "cls").mkdir()
    (empty / "cls" / "readme.txt").write_text("x")  # .txt files and no image: a text folder
    assert "only one class ('cls', 1 texts)" in _error(capsys, ["prune", empty, "--keep", "0.5"])
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (4, 4)).save(flat / "a.png")
    assert "no class subfolders" in _error(capsys, ["prune", flat, "--keep", "0.5"])
    assert "does not exist" in _error(capsys, ["prune", tmp_path / "nowhere", "--keep", "0.5"])
    csv_empty = tmp_path / "e.csv"
    csv_empty.write_text("")
    assert "empty" in _error(capsys, ["prune", csv_empty, "--keep", "0.5"])
    csv_header = tmp_path / "h.csv"
    csv_header.write_text("path,label\n")
    assert "no rows" in _error(capsys, ["prune", csv_header, "--keep", "0.5"])
    csv_cols = tmp_path / "c.csv"
    csv_cols.write_text("file,class\na.png,x\n")
    assert "'path' and 'label'" in _error(capsys, ["prune", csv_cols, "--keep", "0.5"])


def test_error_nan_in_manifest(folder, tmp_path, capsys):
    m = tmp_path / "m.csv"
    m.write_text(f"path,label\n{folder}/cat/00.png,cat\n,dog\n{folder}/dog/12.png,NaN\n"
                 f"{folder}/dog/13.png,\n")
    line = _error(capsys, ["prune", m, "--keep", "0.5", "--backbone", TINY])
    # "NaN" is a class name like any other; only empty cells are missing
    assert "missing path (empty cell) on line(s) 3" in line
    assert "missing label (empty cell) on line(s) 5" in line


def test_error_single_class(tmp_path, capsys):
    X, _ = _images((6,))
    data = make_image_folder(tmp_path / "data", X, np.zeros(6, int), class_names=["only"])
    line = _error(capsys, ["prune", data, "--keep", "0.5", "--backbone", TINY])
    assert "only one class" in line and "'only'" in line and "6 images" in line


def test_error_gamma_auto_with_gamma_free_strategy(folder, capsys):
    line = _error(capsys, ["prune", folder, "--keep", "0.5", "--gamma", "auto", "--strategy", "random"])
    assert "does not use gamma" in line


def test_error_out_is_a_file(folder, tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("keep me")
    assert "not a folder" in _error(capsys, ["prune", folder, "--keep", "0.5", "--out", f])
    assert f.read_text() == "keep me"


def test_error_image_size_names_the_option(folder, capsys):
    line = _error(capsys, ["prune", folder, "--keep", "0.5", "--backbone", TINY, "--image-size", "4"])
    assert "--image-size must be at least 8 pixels, got 4" in line


# --------------------------------------------------------------------------- tuning
def test_stratified_split_keeps_tiny_classes_in_train():
    y = np.array([0] * 10 + [1] * 3 + [2] * 2 + [3])
    train, val = stratified_split(y, 0.2, random_state=0)
    assert np.intersect1d(train, val).size == 0 and train.size + val.size == y.size
    # round_half_up(0.2 * n): 2 of 10, 1 of 3, 0 of 2; a single row stays in train
    assert np.bincount(y[val], minlength=4).tolist() == [2, 1, 0, 0]
    assert set(y[train]) == {0, 1, 2, 3}
    y2 = np.array([0, 1] * 2)  # classes of two: 0.2 * 2 rounds to 0, nothing to validate on
    with pytest.raises(ValueError, match="validation"):
        tune_gamma(np.zeros(4), y2, features=np.eye(4), keep_ratio=0.5)


def test_tune_gamma_prefers_informative_side():
    # A quarter of each class is mislabelled (its features point to the other class)
    # and scored hard. Large gamma draws half the subset from those: it must lose.
    rng = np.random.default_rng(0)
    n = 400
    y = np.repeat([0, 1], n // 2)
    clean = np.tile(np.r_[np.ones(3 * n // 8), np.zeros(n // 8)].astype(bool), 2)
    sign = np.where(clean, 1, -1) * (2 * y - 1)
    features = rng.normal(size=(n, 4))
    features[:, 0] += 2 * sign
    scores = np.where(clean, rng.random(n), 1 + rng.random(n))
    res = tune_gamma(scores, y, features=features, keep_ratio=0.2,
                     gammas=[0.1, 0.5, 0.9], n_repeats=2, random_state=0)
    assert res.accuracy.shape == (3, 2) and res.random_accuracy.shape == (2,)
    assert res.best_gamma in (0.1, 0.5)
    assert min(res.mean_accuracy[:2]) > res.mean_accuracy[2] + 0.2
    # DLCScorer(embedding=True) layout: embedding first, then per-class scores
    X = np.hstack([features, np.c_[scores, scores]])
    res2 = tune_gamma(X, y, keep_ratio=0.2, gammas=[0.1, 0.5, 0.9], n_repeats=2, random_state=0)
    np.testing.assert_allclose(res2.accuracy, res.accuracy)
    with pytest.raises(ValueError, match="features"):
        tune_gamma(scores, y, keep_ratio=0.2)
    assert tune_gamma(X, y, keep_ratio=1.0, random_state=0).best_gamma == 0.5


# --------------------------------------------------------------------------- demo
def test_demo_tiny(tmp_path, capsys):
    rc = _run(["demo", "--out", tmp_path, "--quiet", "--backbone", TINY, "--image-size", "16",
               "--n-per-class", "8", "--n-test-per-class", "5", "--keep-ratios", "0.25,0.5",
               "--seeds", "2", "--mask-ratios", "0,0.5", "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    out = captured.out
    assert "Random" in out and "default" in out and "25%" in out and "50%" in out
    assert "clean" in out and "20% noisy" in out  # the two regimes side by side
    png = tmp_path / "skdlc_demo_mnist.png"
    assert f"plot: {png.resolve()}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads((tmp_path / "skdlc_demo_mnist.json").read_text())
    assert [g["regime"] for g in result["regimes"]] == ["clean", "20% noisy"]
    assert [r["n_kept"] for r in result["regimes"][0]["rows"]] == [20, 40]
    # flipped labels move rows between classes; per-class rounding moves the total a little
    assert [abs(r["n_kept"] - n) <= 3 for r, n in zip(result["regimes"][1]["rows"], (20, 40))] == [True] * 2
    for g in result["regimes"]:
        assert all(len(r["random"]) == 2 and 0 <= r["default_mean"] <= 1 for r in g["rows"])
    assert result["n_train"] == 80 and result["n_test"] == 50
    assert _no_temp_files(tmp_path)


def test_demo_bad_options(tmp_path, capsys):
    assert _run(["demo", "--n-per-class", "400", "--n-test-per-class", "200", "--out", tmp_path]) == 2
    assert "too many" in capsys.readouterr().err
    assert _run(["demo", "--keep-ratios", "0.1,2", "--out", tmp_path]) == 2
    assert "--keep-ratios" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_keep_everything_skips_the_selection_search(folder, tmp_path):
    out = tmp_path / "out"
    assert _prune(folder, out, "--keep", "1", "--no-report") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_kept"] == summary["n_images"]
    # no cross-validation when nothing is left out, and the summary says so
    assert summary["selection"]["cross_validated"] is False
    assert "everything is kept" in summary["selection"]["rule"]
