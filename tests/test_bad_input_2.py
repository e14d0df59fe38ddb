"""Issue 19: bad input, second round. One test (or a few) per numbered item.

Image cases use tiny images and the tiny conv net of test_cli (registered under names
the CLI resolves); cases about what reaches stderr run the CLI in a subprocess, since
pytest records warnings itself.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skdlc import Backbone, DLCScorer, Preprocessing
from skdlc._cli import build_parser, main
from skdlc.datasets import make_image_folder, read_image_folder, read_manifest

from test_bad_input import COUNTED, N_BUILT, backbones, folder  # noqa: F401 (fixtures)
from test_bad_input import _err as _user_error
from test_cli import TINY, _images, _prune, _read, _TinyCNN

ROOT = Path(__file__).resolve().parents[1]
_PP = Preprocessing(input_size=(16, 16), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def _err(capsys, argv):
    """Run the CLI expecting a one-line user error (exit 2, no traceback); its stderr."""
    N_BUILT["n"] = 0
    return _user_error(capsys, argv)


def _refused_early(capsys, argv, *expected):
    """The error names what it should, and came before the backbone was even built."""
    err = _err(capsys, argv)
    for text in expected:
        assert text in err, err
    assert N_BUILT["n"] == 0, "refused only after the backbone was built"
    return err


def _strict_json(text):
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def _bb():
    return Backbone("t", _TinyCNN().eval(), _PP, 16)


# ------------------------------------------------------ 1. outputs inside DATA
@pytest.mark.parametrize("where", [".", "pruned", "cat", "cat/deeper"])
def test_out_inside_data_is_refused_before_any_work(folder, capsys, where):
    out = Path(folder) / where
    err = _refused_early(capsys, ["prune", folder, "--keep", "0.5", "--backbone", COUNTED,
                                  "--out", out, "--quiet"], "--out", "DATA")
    assert ("is DATA itself" if where == "." else "is inside DATA") in err
    assert sorted(p.name for p in Path(folder).iterdir()) == ["cat", "dog", "emu"]
    assert sorted(p.name for p in (Path(folder) / "cat").iterdir())[0] == "00.png"  # nothing added


def test_default_out_from_inside_data_is_refused(folder, capsys, monkeypatch):
    monkeypatch.chdir(folder)
    err = _refused_early(capsys, ["prune", ".", "--keep", "0.5", "--backbone", COUNTED, "--quiet"],
                         "the default --out", "inside DATA")
    assert "run from outside DATA" in err
    assert sorted(p.name for p in Path(folder).iterdir()) == ["cat", "dog", "emu"]


def test_data_that_is_one_of_the_outputs_is_refused(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert _prune(folder, out, "--keep", "0.5", "--no-report") == 0
    before = (out / "kept.csv").read_bytes()
    _refused_early(capsys, ["prune", out / "kept.csv", "--keep", "0.5", "--backbone", COUNTED,
                            "--out", out, "--quiet"], "which this run writes over")
    assert (out / "kept.csv").read_bytes() == before


def test_output_sets_inside_data_are_never_read_as_classes(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert _prune(folder, out, "--keep", "0.5") == 0  # with report figures (PNG files)
    summary = json.loads((out / "summary.json").read_text())
    shutil.copytree(out, Path(folder) / "photos_pruned")  # e.g. from an older skdlc
    shutil.copytree(out, Path(folder) / "cat" / "pruned")  # nested in a class
    legacy = Path(folder) / "dog" / "old"  # an older summary.json, without the marker
    shutil.copytree(out, legacy)
    summary.pop("skdlc_output", None)
    (legacy / "summary.json").write_text(json.dumps(summary))

    data = read_image_folder(folder)
    assert sorted(set(data.labels)) == ["cat", "dog", "emu"] and len(data) == 24
    assert not any("pruned" in p or "old" in p for p in data.paths)
    note = next(n for n in data.notes if "written by skdlc" in n)
    assert "left out 3 folder(s)" in note and "photos_pruned" in note

    assert _prune(folder, tmp_path / "out2", "--keep", "0.5") == 0
    s2 = json.loads((tmp_path / "out2" / "summary.json").read_text())
    assert [c["label"] for c in s2["classes"]] == ["cat", "dog", "emu"] and s2["n_images"] == 24
    assert any("written by skdlc" in n for n in s2["notes"])
    assert s2["skdlc_output"] is True  # the mark the reader looks for


# ------------------------------------------------- 3. 32-bit integer images
def test_32bit_integer_images_are_scaled_by_their_range(tmp_path):
    from skdlc._data import decode_image

    yy, xx = np.mgrid[0:24, 0:32]
    g = np.clip(xx * 7 + yy * 2, 0, 255).astype(np.uint8)
    Image.fromarray(g).save(tmp_path / "p8.png")
    Image.fromarray(g.astype(np.int32)).save(tmp_path / "i8.tif")  # mode I holding 0-255
    Image.fromarray(g.astype(np.int32) * 257).save(tmp_path / "i16.tif")  # mode I holding 0-65535
    with Image.open(tmp_path / "i8.tif") as im:
        assert im.mode == "I"
    ref = decode_image(tmp_path / "p8.png")
    for name in ("i8.tif", "i16.tif"):
        a = decode_image(tmp_path / name)
        assert a.dtype == np.uint8 and a.shape == (24, 32, 3)
        assert np.abs(a.astype(int) - ref.astype(int)).max() <= 1, name


# ---------------------------------------------------------- 4. strict JSON
def test_summary_json_is_strict_json_with_one_image_per_class(tmp_path):
    X, _ = _images((1, 1, 1))
    data = make_image_folder(tmp_path / "data", X, [0, 1, 2], class_names=["a", "b", "c"])
    out = tmp_path / "out"
    assert _prune(data, out, "--keep", "0.5", "--mask-ratios", "calibrated") == 0
    summary = _strict_json((out / "summary.json").read_text())
    accs = summary["calibration"]["accuracies"]
    assert accs and all(a is None for a in accs)  # leave-one-out accuracy is undefined here


def test_json_writers_write_null_for_nan(tmp_path):
    from skdlc._cli._common import write_json
    from skdlc._outputs import dumps_json

    obj = {"a": float("nan"), "b": [np.float32("inf"), 1.5], "c": np.array([np.nan, 2.0])}
    write_json(tmp_path / "x.json", obj)
    assert _strict_json((tmp_path / "x.json").read_text()) == {"a": None, "b": [None, 1.5], "c": [None, 2.0]}
    assert _strict_json(dumps_json(obj)) == {"a": None, "b": [None, 1.5], "c": [None, 2.0]}


# ----------------------------------------------- 5. user text drawn literally
def test_dollar_signs_in_class_names_are_drawn_literally(tmp_path):
    import matplotlib.text

    from skdlc.report import plot_class_counts, plot_score_distribution, write_report

    names = ["cost $5 and $6", "$\\frac{a$"]
    labels = np.repeat(names, 4)
    scores = np.linspace(0, 1, 8)
    kept = scores < 0.5
    write_report(tmp_path / "r", scores=scores, labels=labels, kept=kept)  # raised before
    assert (tmp_path / "r" / "figures" / "counts.png").stat().st_size > 0
    for fig in (plot_class_counts(labels, kept), plot_score_distribution(scores, labels, kept)):
        fig.savefig(tmp_path / "f.png")  # drawing outside skdlc's own calls works too
        texts = [t for t in fig.findobj(matplotlib.text.Text) if "$" in t.get_text()]
        assert texts and not any(t.get_parse_math() for t in texts)


def test_report_of_a_class_named_like_tex_is_written(tmp_path, capsys):
    X, y = _images((6, 6))
    data = make_image_folder(tmp_path / "data", X, y, class_names=["plain", "frac"])
    os.rename(data / "frac", data / "$\\frac{a$")
    out = tmp_path / "out"
    assert _prune(data, out, "--keep", "0.5") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "report" in summary["outputs"], summary["notes"]
    assert not any("report not written" in n for n in summary["notes"])


# ------------------------------------------------------------- 7. --device
def test_bad_device_is_refused_before_reading(folder, tmp_path, capsys):
    _refused_early(capsys, ["prune", folder, "--keep", "0.5", "--backbone", COUNTED, "--device", "banana",
                            "--out", tmp_path / "o", "--quiet"], "--device 'banana' is not a device")
    assert not (tmp_path / "o").exists()
    X = np.zeros((4, 12, 12, 3), np.uint8)
    with pytest.raises(ValueError, match="device='banana' is not a device"):
        DLCScorer(_bb(), mask_ratios=[0.0], num_workers=0, device="banana").fit(X, [0, 1, 0, 1])


# --------------------------------------------- 8. options refused up front
def test_cache_that_is_a_file_is_refused_naming_the_option(folder, tmp_path, capsys):
    f = tmp_path / "x"
    f.write_text("a file")
    _refused_early(capsys, ["prune", folder, "--keep", "0.5", "--backbone", COUNTED, "--cache", f,
                            "--out", tmp_path / "o", "--quiet"], f"--cache {f} is a file, not a folder")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_unwritable_cache_is_refused_naming_the_option(folder, tmp_path, capsys):
    _refused_early(capsys, ["prune", folder, "--keep", "0.5", "--backbone", COUNTED, "--cache",
                            "/proc/skdlc_cache", "--out", tmp_path / "o", "--quiet"],
                   "--cache /proc/skdlc_cache cannot be used as a cache folder")


@pytest.mark.parametrize("extra, expected", [
    (["--num-workers", "-1"], "--num-workers must be 0 (decode in the main process) or more, got -1"),
    (["--address", "auto"], "--address applies to --backend ray only"),
    (["--num-gpus", "1"], "--num-gpus applies to --backend ray only"),
    (["--gamma", "auto", "--strategy", "flexrand"], "--gamma auto with --strategy flexrand"),
])
def test_options_are_refused_before_reading_or_scoring(tmp_path, capsys, extra, expected):
    X, _ = _images((2, 2, 2))  # tiny classes: too small to hold out 20% for --gamma auto
    data = make_image_folder(tmp_path / "data", X, [0, 0, 1, 1, 2, 2], class_names=["a", "b", "c"])
    _refused_early(capsys, ["prune", data, "--keep", "0.5", "--backbone", COUNTED, *extra,
                            "--out", tmp_path / "o", "--quiet"], expected)


@pytest.mark.parametrize("extra, expected", [
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--lr", "-1"], "--lr must be a number above 0, got -1"),
    (["--mask-ratios", "1.5"], "--mask-ratios values must be ratios in [0, 1)"),
])
def test_validate_options_are_refused_before_loading_data(tmp_path, capsys, extra, expected):
    # the data file does not exist: an option checked after loading would fail on it instead
    err = _err(capsys, ["validate", "--data", tmp_path / "none.npz", *extra])
    assert expected in err


# ------------------------------------------------ 9. the printed selection line
def test_summary_line_does_not_claim_a_cross_validation_that_was_skipped(tmp_path, capsys):
    X, _ = _images((1, 1, 1))
    data = make_image_folder(tmp_path / "data", X, [0, 1, 2], class_names=["a", "b", "c"])
    assert _prune(data, tmp_path / "out", "--keep", "0.5", "--strategy", "auto") == 0
    printed = capsys.readouterr().out
    line = next(ln for ln in printed.splitlines() if ln.strip().startswith("selection"))
    assert "not cross-validated" in line and "accuracy" not in line


# ------------------------------------------------------------- 10. stderr noise
_RUNNER = textwrap.dedent('''
    import sys
    sys.path[:0] = [{tests!r}]
    from skdlc import Backbone, Preprocessing
    from skdlc._backbones import register_backbone
    from skdlc._cli import main
    from test_cli import TINY, _TinyCNN

    pp = Preprocessing(input_size=(16, 16), mean=(0.5,) * 3, std=(0.25,) * 3)
    register_backbone(TINY)(lambda *, pretrained=True: Backbone(TINY, _TinyCNN().eval(), pp, 16))
    sys.exit(main(sys.argv[1:]))
''')


def _cli_subprocess(tmp_path, data, out, *extra):
    script = tmp_path / "run.py"
    script.write_text(_RUNNER.format(tests=str(ROOT / "tests")))
    env = dict(os.environ, PYTHONPATH=str(ROOT), SKDLC_TEST_THREADS="1", OMP_NUM_THREADS="1")
    env.pop("SKDLC_DEBUG", None)
    args = ["prune", data, "--backbone", TINY, "--mask-ratios", "0,0.3,0.6", "--device", "cpu",
            "--num-workers", "0", "--out", out, "--quiet", *extra]
    proc = subprocess.run([sys.executable, str(script), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def _no_raw_warnings(err):
    assert "Warning:" not in err and "Traceback" not in err, err
    assert ".py:" not in err, err  # no source path and line


@pytest.mark.slow  # a subprocess: pytest would record the warnings itself
def test_small_run_prints_warnings_as_one_line(tmp_path):
    X, y = _images((4, 4, 4))  # tiny classes: the selection warns that folds are small
    data = make_image_folder(tmp_path / "data", X, y, class_names=["a", "b", "c"])
    err = _cli_subprocess(tmp_path, data, tmp_path / "out", "--keep", "0.5")
    _no_raw_warnings(err)
    for line in err.splitlines():
        assert line.startswith("skdlc prune: "), line


@pytest.mark.slow  # a subprocess: pytest would record the warnings itself
def test_one_image_per_class_prints_no_regression_warning(tmp_path):
    X, _ = _images((1,) * 4, size=12)
    X = np.concatenate([X] * 6)  # 24 images in 24 classes of one image each
    names = [f"c{i:02d}" for i in range(24)]
    data = make_image_folder(tmp_path / "data", X, np.arange(24), class_names=names)
    err = _cli_subprocess(tmp_path, data, tmp_path / "out", "--keep", "0.5", "--gamma", "0.5")
    _no_raw_warnings(err)
    assert "regression" not in err


@pytest.mark.slow  # a subprocess: pytest would record the warnings itself
def test_corrupt_cache_entry_is_one_note_and_recomputed(folder, tmp_path):
    cache = tmp_path / "cache"
    assert _prune(folder, tmp_path / "o1", "--keep", "0.5", "--gamma", "0.5", "--cache", cache) == 0
    entries = list(cache.rglob("output.pkl"))
    assert entries
    for p in entries:
        p.write_bytes(b"garbage")
    err = _cli_subprocess(tmp_path, folder, tmp_path / "o2", "--keep", "0.5", "--gamma", "0.5",
                          "--cache", cache)
    _no_raw_warnings(err)
    assert "a cached result could not be read" in err and "computed again" in err
    assert _read(tmp_path / "o1" / "scores.csv") == _read(tmp_path / "o2" / "scores.csv")


# ------------------------------------------------------- 11. Python API input
@pytest.mark.parametrize("channels", [2, 5])
def test_uint8_arrays_with_odd_channel_counts_are_refused_clearly(channels):
    X = np.random.default_rng(0).integers(0, 255, (4, 12, 12, channels), dtype=np.uint8)
    with pytest.raises(ValueError, match=rf"C = 1 \(gray\), 3 \(RGB\) or 4 \(RGBA\).*\(4, 12, 12, {channels}\)"):
        DLCScorer(_bb(), mask_ratios=[0.0], num_workers=0, device="cpu").fit(X, [0, 1, 0, 1])


def test_integer_arrays_are_8bit_images_or_refused():
    X = np.random.default_rng(0).integers(0, 255, (4, 12, 12, 3), dtype=np.uint8)
    y = [0, 1, 0, 1]
    kw = dict(mask_ratios=[0.0, 0.3], num_workers=0, device="cpu", engine="torch")
    ref = DLCScorer(_bb(), **kw).fit_transform(X, y)
    np.testing.assert_allclose(DLCScorer(_bb(), **kw).fit_transform(X.astype(np.int64), y), ref, rtol=1e-5)
    with pytest.raises(ValueError, match=r"integer \(int64\) image array with values from 0 to 4000"):
        DLCScorer(_bb(), **kw).fit(np.where(X > 128, 4000, 0).astype(np.int64), y)
    with pytest.raises(ValueError, match=r"channels first\? transpose to \(N, H, W, C\)"):
        DLCScorer(_bb(), **kw).fit(X.transpose(0, 3, 1, 2).astype(np.int64), y)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_unusable_memory_folder_names_memory():
    X = np.zeros((4, 12, 12, 3), np.uint8)
    with pytest.raises(ValueError, match=r"memory='/proc/skdlc_x'.*cannot be created or written"):
        DLCScorer(_bb(), mask_ratios=[0.0], num_workers=0, device="cpu", memory="/proc/skdlc_x").fit(X, [0, 1, 0, 1])


# ---------------------------------------------------------------- 12. smaller
def _jsonl(tmp_path, lines):
    src = tmp_path / "d.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in lines) + "\n", encoding="utf-8")
    return src


def test_null_output_field_is_named_as_null(tmp_path, capsys):
    from skdlc._jsonl import RecordError, extract_fields

    with pytest.raises(RecordError, match="record 0: field 'output' is null; it must be a string"):
        extract_fields([{"instruction": "a", "output": None}])
    src = _jsonl(tmp_path, [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": None}])
    err = _err(capsys, ["prune-instructions", src, "--keep", "0.5", "--model", tmp_path / "no_model",
                        "--out", tmp_path / "k.jsonl", "--quiet"])
    assert "line 2: field 'output' is null" in err and "missing" not in err


def test_bad_mask_ratios_for_instructions_are_not_a_model_error(tmp_path, capsys):
    src = _jsonl(tmp_path, [{"instruction": "a", "output": "b"}] * 2)
    err = _err(capsys, ["prune-instructions", src, "--keep", "0.5", "--model", tmp_path / "no_model",
                        "--mask-ratios", "0,1.5", "--out", tmp_path / "k.jsonl", "--quiet"])
    assert "--mask-ratios values must be ratios in [0, 1)" in err and "cannot load model" not in err


def test_keep_percentage_and_mask_ratios_0_mean_the_same_in_both_commands(folder, tmp_path):
    args = build_parser().parse_args(["prune-instructions", "d.jsonl", "--keep", "50%", "--out", "k.jsonl"])
    assert args.keep == 0.5
    from skdlc._cli._common import parse_mask_ratios

    assert parse_mask_ratios("0") == [0.0] == parse_mask_ratios("0", keywords=())
    assert _prune(folder, tmp_path / "o", "--keep", "50%", "--mask-ratios", "0", "--gamma", "0.5") == 0
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["mask_ratios"] == [0.0]


def test_non_utf8_manifest_names_line_and_offset(folder, tmp_path, capsys):
    csv_path = tmp_path / "m.csv"
    body = b"path,label\n" + f"{folder}/cat/00.png,cat\n".encode() + f"{folder}/dog/08.png,caf".encode() + b"\xe9\n"
    csv_path.write_bytes(body)
    err = _err(capsys, ["prune", csv_path, "--keep", "0.5", "--backbone", COUNTED,
                        "--out", tmp_path / "o", "--quiet"])
    offset = body.index(b"\xe9")
    assert f"line 3 is not UTF-8 text (byte 0xe9 at byte offset {offset}" in err
    assert "position 0" not in err


def test_label_whitespace_is_kept_in_cli_and_api(folder, tmp_path):
    rows = [f"{p},{lab}" for p, lab in zip(sorted(Path(folder).rglob("*.png"))[:12],
                                            ["a"] * 4 + ["a "] * 4 + ["b"] * 4)]
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("path,label\n" + "\n".join(rows) + "\n")
    assert sorted(set(read_manifest(csv_path).labels)) == ["a", "a ", "b"]
    assert _prune(csv_path, tmp_path / "o", "--keep", "0.5", "--gamma", "0.5") == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert sorted(c["label"] for c in summary["classes"]) == ["a", "a ", "b"]
    assert any("leading or trailing spaces" in n for n in summary["notes"])
    # the API: the same three classes
    X = np.zeros((6, 12, 12, 3), np.uint8)
    scorer = DLCScorer(_bb(), mask_ratios=[0.0], num_workers=0, device="cpu").fit(X, ["a", "a ", "b"] * 2)
    assert scorer.classes_.tolist() == ["a", "a ", "b"]


def test_files_of_other_types_are_counted_in_the_notes(folder, tmp_path):
    shutil.copy(Path(folder) / "cat" / "00.png", Path(folder) / "cat" / "icon.ico")
    shutil.copy(Path(folder) / "cat" / "00.png", Path(folder) / "dog" / "IMG_0001")
    data = read_image_folder(folder)
    assert len(data) == 24
    note = next(n for n in data.notes if "not of an image type" in n)
    assert "left out 2 file(s)" in note and "1 .ico" in note and "1 without extension" in note
    assert _prune(folder, tmp_path / "o", "--keep", "0.5", "--gamma", "0.5") == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert any("not of an image type" in n for n in summary["notes"])


def test_chunk_size_without_cache_and_gamma_with_random_are_refused(folder, tmp_path, capsys):
    base = ["prune", folder, "--keep", "0.5", "--backbone", COUNTED, "--out", tmp_path / "o", "--quiet"]
    _refused_early(capsys, [*base, "--chunk-size", "8"], "--chunk-size", "add --cache DIR")
    _refused_early(capsys, [*base, "--gamma", "0.3", "--strategy", "random"],
                   "--gamma 0.3: --strategy random does not use gamma")
    # without --gamma, --strategy random runs (it was refused: the default gamma was 'auto')
    assert _prune(folder, tmp_path / "o", "--keep", "0.5", "--strategy", "random") == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["strategy"] == "random" and summary["gamma"] is None
