"""Bad labelled-text input to ``skdlc prune``: each case stops before any model is loaded,
with one line naming the value and what was expected, and leaves --out untouched."""

import csv
import json

import pytest

from skdlc._cli import main
from skdlc.datasets import make_image_folder

from tests.test_cli import _images
from tests.test_prune_text import RATIOS, TINY_TEXT, _csv_records, _rows, _txt_folder, tiny_text_backbone  # noqa: F401


def _err(capsys, argv, out):
    rc = main([str(a) for a in [*argv, "--out", out, "--quiet"]])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
    return err


def _csv(tmp_path, rows, name="reviews.csv", header=b"id,text,label\r\n"):
    _, records = _csv_records(rows)
    path = tmp_path / name
    path.write_bytes(header + b"".join(records))
    return path


def _prune_args(data, *extra):
    return ["prune", data, "--keep", "0.5", "--backbone", TINY_TEXT, *RATIOS, *extra]


def test_missing_file(tmp_path, capsys):
    err = _err(capsys, _prune_args(tmp_path / "nope.csv", "--text-column", "text"), tmp_path / "o")
    assert "DATA" in err and "nope.csv" in err and "does not exist" in err


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_unknown_column_lists_the_columns(tmp_path, capsys, fmt):
    rows = _rows()
    if fmt == "csv":
        data = _csv(tmp_path, rows)
    elif fmt == "jsonl":
        data = tmp_path / "reviews.jsonl"
        data.write_text("".join(json.dumps({"id": i, "text": t, "label": lab}) + "\n"
                                for i, (t, lab) in enumerate(rows)))
    else:
        pd = pytest.importorskip("pandas")
        pytest.importorskip("pyarrow")
        data = tmp_path / "reviews.parquet"
        pd.DataFrame({"id": range(len(rows)), "text": [t for t, _ in rows],
                      "label": [lab for _, lab in rows]}).to_parquet(data)
    err = _err(capsys, _prune_args(data, "--text-column", "body"), tmp_path / "o")
    assert "has no column 'body' (--text-column); its columns are: 'id', 'text', 'label'" in err
    err = _err(capsys, _prune_args(data, "--text-column", "text", "--label-column", "stars"), tmp_path / "o")
    assert "has no column 'stars' (--label-column)" in err


def test_empty_texts_and_missing_labels_are_named(tmp_path, capsys):
    data = _csv(tmp_path, _rows() + [(" \t ", "pos"), ("fine text", ""), ("", "")])
    err = _err(capsys, _prune_args(data, "--text-column", "text"), tmp_path / "o")
    assert ("3 of 23 records cannot be scored: line 23 (empty text), 24 (missing label), "
            "25 (empty text; missing label)") in err
    assert "--on-error skip" in err and "skipped.csv" in err


def test_single_class(tmp_path, capsys):
    data = _csv(tmp_path, [(t, "pos") for t in POS_TEXTS])
    err = _err(capsys, _prune_args(data, "--text-column", "text"), tmp_path / "o")
    assert "has only one class ('pos', 4 texts)" in err and "needs at least two" in err


POS_TEXTS = ["nice", "lovely", "great", "good"]


def test_single_class_left_after_skipping(tmp_path, capsys):
    data = _csv(tmp_path, [(t, "pos") for t in POS_TEXTS] + [("", "neg")])
    err = _err(capsys, _prune_args(data, "--text-column", "text", "--on-error", "skip"), tmp_path / "o")
    assert "has only one class ('pos', 4 texts)" in err


def test_non_utf8_csv_names_the_line_and_byte(tmp_path, capsys):
    data = tmp_path / "reviews.csv"
    data.write_bytes(b"text,label\ngood,pos\ncaf\xe9,neg\n")
    err = _err(capsys, _prune_args(data, "--text-column", "text"), tmp_path / "o")
    assert "line 3 is not UTF-8 text (byte 0xe9 at byte offset 23 of the file, column 4)" in err


def test_non_utf8_txt_file_fails_or_is_skipped(tmp_path, capsys):
    paths = _txt_folder(tmp_path / "news", _rows())
    paths[0].write_bytes(b"caf\xe9 au lait")
    err = _err(capsys, _prune_args(tmp_path / "news"), tmp_path / "o")
    assert f"{paths[0]} (not UTF-8 text (byte 0xe9 at byte offset 3))" in err
    out = tmp_path / "o"
    assert main([str(a) for a in [*_prune_args(tmp_path / "news", "--on-error", "skip"), "--out", out,
                                  "--quiet"]]) == 0
    with open(out / "skipped.csv", newline="", encoding="utf-8") as f:
        assert list(csv.DictReader(f)) == [{"path": str(paths[0]),
                                            "reason": "not UTF-8 text (byte 0xe9 at byte offset 3)"}]


def test_label_column_all_missing(tmp_path, capsys):
    data = _csv(tmp_path, [(t, "") for t, _ in _rows()])
    err = _err(capsys, _prune_args(data, "--text-column", "text", "--on-error", "skip"), tmp_path / "o")
    assert "--label-column 'label' is empty (or NaN) in every one of its 20 records" in err


def test_label_column_all_nan_parquet(tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    data = tmp_path / "reviews.parquet"
    pd.DataFrame({"text": [t for t, _ in _rows()], "label": [float("nan")] * 20}).to_parquet(data)
    err = _err(capsys, _prune_args(data, "--text-column", "text"), tmp_path / "o")
    assert "--label-column 'label' is empty (or NaN) in every one of its 20 records" in err


def test_duplicate_column_names(tmp_path, capsys):
    data = _csv(tmp_path, _rows(), header=b"text,text,label\r\n")
    err = _err(capsys, _prune_args(data, "--text-column", "text"), tmp_path / "o")
    assert "has duplicate column names: 'text'" in err


@pytest.mark.parametrize("content, message", [
    (b'text,label\n"never closed,pos\nok,neg\n', "the record starting on line 2 is not valid CSV"),
    (b"text,label\na,b,c\n", "line 2 has 3 field(s) and the header 2"),
    (b"", "is empty"),
    (b"text,label\r\n", "holds no records (a header only)"),
])
def test_malformed_csv(tmp_path, capsys, content, message):
    data = tmp_path / "reviews.csv"
    data.write_bytes(content)
    assert message in _err(capsys, _prune_args(data, "--text-column", "text"), tmp_path / "o")


def test_text_column_for_an_image_input_is_refused(tmp_path, capsys):
    X, y = _images((4, 4))
    folder = make_image_folder(tmp_path / "photos", X, y, class_names=["cat", "dog"])
    err = _err(capsys, ["prune", folder, "--keep", "0.5", "--text-column", "text"], tmp_path / "o")
    assert f"--text-column given, but DATA {folder} is an image folder" in err and "drop --text-column" in err
    manifest = tmp_path / "train.csv"
    manifest.write_text("path,label\n" + "".join(f"{p},{p.parent.name}\n" for p in sorted(folder.rglob("*.png"))))
    err = _err(capsys, ["prune", manifest, "--keep", "0.5", "--label-column", "label"], tmp_path / "o")
    assert "--label-column given, but DATA" in err and "is an image manifest (path,label)" in err


def test_text_column_on_a_txt_folder_is_refused(tmp_path, capsys):
    _txt_folder(tmp_path / "news", _rows())
    err = _err(capsys, _prune_args(tmp_path / "news", "--text-column", "text"), tmp_path / "o")
    assert "is a folder of .txt files" in err and "drop --text-column" in err


@pytest.mark.parametrize("name", ["reviews.csv", "reviews.tsv", "reviews.jsonl"])
def test_missing_text_column_for_a_text_file_says_which(tmp_path, capsys, name):
    rows = _rows()
    data = tmp_path / name
    if name.endswith(".jsonl"):
        data.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows))
    else:
        head, records = _csv_records(rows, "\t" if name.endswith(".tsv") else ",")
        data.write_bytes(head + b"".join(records))
    err = _err(capsys, ["prune", data, "--keep", "0.5"], tmp_path / "o")
    assert "--text-column" in err and "'text'" in err and "'label'" in err


def test_image_backbone_and_image_size_on_text_are_refused(tmp_path, capsys):
    data = _csv(tmp_path, _rows())
    err = _err(capsys, ["prune", data, "--keep", "0.5", "--text-column", "text", "--image-size", "64"],
               tmp_path / "o")
    assert "--image-size 64 applies to images" in err
    from tests.test_cli import TINY, tiny_backbones  # noqa: F401

    from skdlc import Backbone, Preprocessing
    from skdlc._backbones import _REGISTRY, register_backbone
    from tests.test_cli import _TinyCNN

    pp = Preprocessing(input_size=(16, 16), mean=(0.5,) * 3, std=(0.25,) * 3)
    register_backbone(TINY)(lambda *, pretrained=True: Backbone(TINY, _TinyCNN().eval(), pp, 16))
    try:
        err = _err(capsys, ["prune", data, "--keep", "0.5", "--text-column", "text", "--backbone", TINY],
                   tmp_path / "o")
    finally:
        _REGISTRY.pop(TINY, None)
    assert f"--backbone {TINY} takes images, not text" in err


def test_jsonl_text_that_is_not_a_string(tmp_path, capsys):
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in _rows())
                    + json.dumps({"text": ["a", "list"], "label": "pos"}) + "\n")
    err = _err(capsys, _prune_args(data, "--text-column", "text"), tmp_path / "o")
    assert "line 21: --text-column 'text' holds a list" in err and "expected text" in err
