"""skdlc.report: the HTML report's content, parsed back, and the CLI writing it."""

import base64
import io
import json
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from PIL import Image

from skdlc import Backbone, Preprocessing
from skdlc._backbones import _REGISTRY, register_backbone
from skdlc._losses import per_class_losses
from skdlc._prototypes import class_means
from skdlc.report import (
    likely_mislabelled,
    plot_class_counts,
    plot_examples,
    plot_learning_path,
    plot_score_distribution,
    plot_selection,
    write_report,
)

EVIL_CLASS = "<script>x&y"  # a legal folder name, and HTML if not escaped
EVIL_FILE = "a<script>&b.png"
SECTIONS = ["overview", "counts", "examples", "mislabelled", "scores", "path", "selection", "run"]

CALIBRATION = {"probe_ratios": [0.0, 0.1, 0.2, 0.4, 0.6, 0.8], "accuracies": [0.92, 0.9, 0.86, 0.7, 0.41, 0.1],
               "chance": 1 / 3, "ratios": [0.0, 0.1, 0.2, 0.4]}
SELECTION = {"strategy": "flexrand", "gamma": 0.3, "params": {"gamma": 0.3}, "rule": "highest mean",
             "table": [{"candidate": f"flexrand gamma={g}", "strategy": "flexrand", "gamma": g,
                        "mean": 0.8 + g / 10, "sem": 0.01, "chosen": g == 0.3} for g in (0.1, 0.3, 0.5)]
             + [{"candidate": "random", "strategy": "random", "gamma": None, "mean": 0.79, "sem": 0.02,
                 "chosen": False}]}


class _Page(HTMLParser):
    """Sections (id -> text, imgs, table rows) and every tag of a report page."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.tags, self.sections, self.cur = [], {}, None
        self._cell, self._row = None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "section":
            self.cur = self.sections.setdefault(a["id"], {"text": [], "imgs": [], "rows": [], "na": 0})
        elif self.cur is not None:
            if tag == "img":
                self.cur["imgs"].append(a)
            elif tag == "tr":
                self._row = []
            elif tag in ("td", "th"):
                self._cell = []
            elif tag == "p" and a.get("class") == "na":
                self.cur["na"] += 1

    def handle_endtag(self, tag):
        if tag == "section":
            self.cur = None
        elif tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.cur["rows"].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self.cur is not None:
            self.cur["text"].append(data)
            if self._cell is not None:
                self._cell.append(data)


def _text(page, sid):
    return " ".join(page.sections[sid]["text"])


def _blobs(n_per_class=(12, 10, 9), d=8, seed=0):
    """Three well separated Gaussian blobs (features) and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (len(n_per_class), d)) * 4
    X = np.concatenate([c + rng.normal(0, 1, (n, d)) for c, n in zip(centres, n_per_class)])
    y = np.repeat(np.arange(len(n_per_class)), n_per_class)
    return X, y


@pytest.fixture
def run(tmp_path):
    """A small labelled image set with one flipped label, its per-class losses and a keep mask."""
    X, y_true = _blobs()
    y = y_true.copy()
    flipped = 3  # a class-0 sample labelled as class 2
    y[flipped] = 2
    losses = per_class_losses(X, class_means(X, y, 3), "cosine", 0.1)
    classes = np.array(["cat", "dog & co", EVIL_CLASS])  # sorted order is irrelevant: given
    labels = classes[y]
    rng = np.random.default_rng(1)
    paths = []
    for i in range(len(y)):
        folder = tmp_path / "imgs" / labels[i]
        folder.mkdir(parents=True, exist_ok=True)
        p = folder / (EVIL_FILE if i == 0 else f"img{i:03d}.png")
        Image.fromarray(rng.integers(0, 255, (20 + i % 5, 24, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    scores = losses[np.arange(len(y)), y]
    kept = np.zeros(len(y), dtype=bool)
    kept[::3] = True
    return dict(scores=scores, labels=labels, kept=kept, paths=paths, losses=losses, classes=classes,
                flipped=flipped)


def _write(tmp_path, run, **kw):
    args = dict(scores=run["scores"], labels=run["labels"], kept=run["kept"], paths=run["paths"],
                losses=run["losses"], classes=run["classes"], calibration=CALIBRATION, selection=SELECTION,
                timings={"scoring": 1.5}, command=["skdlc", "prune", f"data/{EVIL_CLASS}", "--keep", "0.3"])
    args.update(kw)
    path = write_report(tmp_path / "out", **args)
    return path, _Page(path.read_text(encoding="utf-8"))


def test_every_section_present_with_counts(tmp_path, run):
    path, page = _write(tmp_path, run)
    assert path == tmp_path / "out" / "report.html"
    assert list(page.sections) == SECTIONS
    assert all(s["na"] == 0 for s in page.sections.values())  # every input given: nothing missing
    rows = {r[0]: r[1:] for r in page.sections["counts"]["rows"][1:]}
    labels, kept = run["labels"], run["kept"]
    for c in run["classes"]:
        assert rows[c][:2] == [str((labels == c).sum()), str((kept & (labels == c)).sum())]
    assert rows["total"][:2] == [str(len(labels)), str(kept.sum())]
    # the figures: embedded as PNG, and the same ones under figures/
    figs = {p.stem for p in (tmp_path / "out" / "figures").iterdir()}
    assert figs == {"counts", "scores", "examples", "path", "selection", "mislabelled"}
    embedded = [i["alt"] for s in page.sections.values() for i in s["imgs"] if i["src"].startswith("data:image/png")]
    assert sorted(embedded) == sorted(figs - {"examples", "mislabelled"})  # those two are thumbnails in the page
    # path and selection: the chosen ratios and candidate are in the tables
    on_path = [r[0] for r in page.sections["path"]["rows"][1:] if r[2] == "yes"]
    assert on_path == ["0", "0.1", "0.2", "0.4"]
    chosen = [r[0] for r in page.sections["selection"]["rows"][1:] if r[-1] == "yes"]
    assert chosen == ["flexrand gamma=0.3"]
    assert "1.50" in _text(page, "run") and "numpy" in _text(page, "run")


def test_user_text_is_escaped_and_page_is_self_contained(tmp_path, run):
    path, page = _write(tmp_path, run)
    html = path.read_text(encoding="utf-8")
    assert "<script" not in html and "&lt;script&gt;x&amp;y" in html
    assert "a&lt;script&gt;&amp;b.png" in html
    assert not [t for t, _ in page.tags if t in ("script", "link", "iframe", "object")]
    assert all(a["src"].startswith("data:") for t, a in page.tags if "src" in a)
    assert "http://" not in html and "https://" not in html
    # the parsed text gives the user's strings back unchanged
    assert EVIL_CLASS in _text(page, "counts") and EVIL_FILE in _text(page, "examples")
    assert f"data/{EVIL_CLASS}" in _text(page, "run")


def test_thumbnails_embedded_small_and_outlined(tmp_path, run):
    _, page = _write(tmp_path, run, n_examples=4)
    thumbs = [i for i in page.sections["examples"]["imgs"] if i["src"].startswith("data:image/jpeg")]
    assert len(thumbs) == 3 * 2 * 4  # classes x (easiest, hardest) x n_examples
    for t in thumbs:
        im = Image.open(io.BytesIO(base64.b64decode(t["src"].split(",", 1)[1])))
        assert im.format == "JPEG" and max(im.size) <= 64
    # kept samples carry the outline class; as many as kept among the shown
    shown_kept = [a for t, a in page.tags if t == "figure" and a.get("class") == "t kept"]
    assert shown_kept, "some shown samples are kept"
    # the easiest of class 'cat' comes first, with its file name
    s, lab = run["scores"], run["labels"]
    cat = np.flatnonzero(lab == "cat")
    easiest = run["paths"][cat[np.argmin(s[cat])]].rsplit("/", 1)[1]
    assert thumbs[0]["alt"] == easiest


def test_likely_mislabelled_finds_the_flipped_sample(tmp_path, run):
    sus = likely_mislabelled(run["losses"], run["labels"], classes=run["classes"])
    assert len(sus) >= 1
    top = sus.iloc[0]
    assert top["index"] == run["flipped"]
    assert top["label"] == EVIL_CLASS and top["suggested"] == "cat"  # labelled 2, really 0
    assert top["margin"] > 0
    _, page = _write(tmp_path, run)
    rows = page.sections["mislabelled"]["rows"][1:]
    assert rows[0][:3] == [run["paths"][run["flipped"]], EVIL_CLASS, "cat"]


def test_likely_mislabelled_clean_data_flags_nothing_and_checks_shapes():
    X, y = _blobs(seed=2)
    losses = per_class_losses(X, class_means(X, y, 3), "cosine", 0.1)
    assert likely_mislabelled(losses, y).empty
    with pytest.raises(ValueError, match="2 columns for 3 classes"):
        likely_mislabelled(losses[:, :2], y)


def test_missing_inputs_say_not_available(tmp_path, run):
    path = write_report(tmp_path / "out", scores=run["scores"], labels=run["labels"], kept=run["kept"])
    page = _Page(path.read_text(encoding="utf-8"))
    assert list(page.sections) == SECTIONS
    for sid in ("examples", "path", "selection", "mislabelled"):
        assert page.sections[sid]["na"] == 1 and "not available" in _text(page, sid)
    assert {p.stem for p in (tmp_path / "out" / "figures").iterdir()} == {"counts", "scores"}
    # a rerun with more inputs, then one with fewer: no stale figure is left behind
    _write(tmp_path, run)
    write_report(tmp_path / "out", scores=run["scores"], labels=run["labels"], kept=run["kept"])
    assert {p.stem for p in (tmp_path / "out" / "figures").iterdir()} == {"counts", "scores"}


def test_text_records_categories_and_gamma_search(tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    texts = [json.dumps({"instruction": f"task {i} <script>alert(1)</script> & more "
                         + "word " * (80 if i == 5 else 1)}) for i in range(n)]
    cats = np.array(["open_qa", "summary"])[np.arange(n) % 2]
    scores = rng.random(n)
    kept = np.zeros(n, dtype=bool)
    kept[:10] = True  # 5 open_qa, 5 summary
    kept[10:14:2] = True  # 2 more open_qa
    search = {"procedure": "80/20 split", "n_repeats": 4, "gammas": [0.3, 0.5, 0.7],
              "mean_accuracy": [0.8, 0.85, 0.82], "std_accuracy": [0.02, 0.01, 0.03],
              "random_subset_accuracy": 0.79, "best_gamma": 0.5}
    path = write_report(tmp_path / "rep", scores=scores, labels=cats, kept=kept, texts=texts,
                        selection=search)
    html = path.read_text(encoding="utf-8")
    page = _Page(html)
    assert "<script" not in html
    rows = {r[0]: r[1:] for r in page.sections["counts"]["rows"][1:]}
    assert rows["open_qa"] == ["20", "7", "35.0%"] and rows["summary"] == ["20", "5", "25.0%"]
    recs = [a for t, a in page.tags if t == "li"]
    assert len(recs) == 2 * 2 * 6  # categories x sides x n_examples
    assert "<script>alert(1)</script>" in _text(page, "examples")  # escaped in the file, intact when parsed
    longest = max(len(x) for x in page.sections["examples"]["text"])
    assert longest <= 300  # records truncated
    chosen = [r[0] for r in page.sections["selection"]["rows"][1:] if r[-1] == "yes"]
    assert chosen == ["flexrand gamma=0.5"]
    assert page.sections["mislabelled"]["na"] == 1


def test_figure_functions_return_figures(run):
    from matplotlib.figure import Figure

    s, lab, k = run["scores"], run["labels"], run["kept"]
    figs = [plot_score_distribution(s, lab, k), plot_class_counts(lab, k),
            plot_examples(run["paths"], s, lab, k, n=2), plot_learning_path(CALIBRATION),
            plot_selection(SELECTION)]
    assert all(isinstance(f, Figure) for f in figs)
    assert len([a for a in figs[0].axes if a.get_visible()]) == 3  # one panel per class
    # a fitted scorer holding its calibration is accepted too
    fitted = type("Fitted", (), {"calibration_": CALIBRATION})()
    line = plot_learning_path(fitted).axes[0].lines[0]
    assert list(line.get_ydata()) == CALIBRATION["accuracies"]


# ---------------------------------------------------------------------------- the CLI
TINY = "test_report_tiny_cnn"


class _TinyCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x):
        return torch.relu(self.conv(x)).mean(dim=(2, 3))


@pytest.fixture(scope="module")
def tiny_backbone():
    pp = Preprocessing(input_size=(16, 16), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    register_backbone(TINY)(lambda *, pretrained=True: Backbone(TINY, _TinyCNN().eval(), pp, 8))
    yield TINY
    _REGISTRY.pop(TINY, None)


@pytest.fixture
def image_folder(tmp_path):
    from skdlc.datasets import make_image_folder

    rng = np.random.default_rng(0)
    colours = np.array([[220, 40, 40], [40, 200, 60], [50, 60, 230]], dtype=float)
    X = np.concatenate([np.clip(c + rng.normal(0, 50, (8, 16, 16, 3)), 0, 255) for c in colours]).astype(np.uint8)
    return make_image_folder(tmp_path / "data", X, np.repeat([0, 1, 2], 8), class_names=["red", "green & co", "blue"])


def _prune(data, out, *extra):
    from skdlc._cli import main

    return main([str(a) for a in ["prune", data, "--keep", "0.5", "--backbone", TINY, "--mask-ratios", "0,0.3",
                                  "--image-size", "16", "--device", "cpu", "--num-workers", "0", "--out", out,
                                  "--quiet", *extra]])


def test_cli_prune_writes_report(tmp_path, tiny_backbone, image_folder):
    out = tmp_path / "out"
    assert _prune(image_folder, out) == 0
    page = _Page((out / "report.html").read_text(encoding="utf-8"))
    # prune looks for label issues (the "mislabelled" section) and duplicates
    assert list(page.sections) == SECTIONS[:4] + ["duplicates"] + SECTIONS[4:]
    rows = {r[0]: r[1:3] for r in page.sections["counts"]["rows"][1:]}
    assert rows == {"blue": ["8", "4"], "green & co": ["8", "4"], "red": ["8", "4"], "total": ["24", "12"]}
    assert sum(1 for i in page.sections["examples"]["imgs"] if i["src"].startswith("data:image/jpeg")) == 3 * 2 * 6
    assert page.sections["mislabelled"]["na"] == 0  # the scorer's losses were passed
    assert {"counts", "scores", "examples"} <= {p.stem for p in (out / "figures").iterdir()}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["outputs"]["report"] == "report.html"
    assert not [n for n in summary["notes"] if "report" in n]


def test_cli_no_report_writes_none(tmp_path, tiny_backbone, image_folder):
    out = tmp_path / "out"
    assert _prune(image_folder, out, "--no-report") == 0
    assert sorted(p.name for p in out.iterdir()) == ["kept.csv", "scores.csv", "summary.json"]
    assert "report" not in json.loads((out / "summary.json").read_text())["outputs"]


def test_cli_prune_instructions_report(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from test_instruction import DATA, _tiny_cli

    cli, model_dir = _tiny_cli(tmp_path, monkeypatch)
    recs = [dict(r, task=t, instruction=r["instruction"] + " <u>&") for t in ("a", "b") for r in DATA]
    src = tmp_path / "data.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    base = ["prune-instructions", str(src), "--keep", "0.5", "--model", str(model_dir), "--mask-ratios", "0",
            "--category-field", "task", "--quiet"]
    assert cli.main(base + ["--out", str(tmp_path / "kept.jsonl")]) == 0
    html = (tmp_path / "kept_report" / "report.html").read_text(encoding="utf-8")
    page = _Page(html)
    assert "<u>" not in html and "&lt;u&gt;&amp;" in html
    rows = {r[0]: r[1:3] for r in page.sections["counts"]["rows"][1:]}
    kept = [json.loads(x)["task"] for x in (tmp_path / "kept.jsonl").read_text().splitlines()]
    n = len(DATA)
    assert rows == {t: [str(n), str(kept.count(t))] for t in ("a", "b")} | {"total": [str(2 * n), str(len(kept))]}
    assert len([a for t, a in page.tags if t == "li"]) == 2 * 2 * min(6, n)
    assert cli.main(base + ["--out", str(tmp_path / "k2.jsonl"), "--no-report"]) == 0
    assert not (tmp_path / "k2_report").exists()


def test_awkward_inputs_do_not_fail(tmp_path, run):
    """NaN scores, nothing kept, kept given as indices, an unreadable image, one class."""
    s = run["scores"].copy()
    s[1] = np.nan
    paths = list(run["paths"])
    paths[0] = str(tmp_path / "missing.png")
    path = write_report(tmp_path / "a", scores=s, labels=run["labels"], kept=np.zeros(len(s), bool), paths=paths)
    page = _Page(path.read_text(encoding="utf-8"))
    assert page.sections["counts"]["rows"][-1][1:3] == [str(len(s)), "0"]
    assert any(a.get("class") == "ph" for t, a in page.tags if t == "div")  # the placeholder
    path = write_report(tmp_path / "b", scores=run["scores"], labels=None, kept=np.array([0, 5, 7]),
                        paths=run["paths"], losses=run["losses"])
    page = _Page(path.read_text(encoding="utf-8"))
    assert page.sections["counts"]["rows"][1:] == [["all", str(len(s)), "3", f"{300 / len(s):.1f}%"],
                                                   ["total", str(len(s)), "3", f"{300 / len(s):.1f}%"]]
    assert page.sections["mislabelled"]["na"] == 1  # no labels: nothing to compare with
    with pytest.raises(ValueError, match="one entry per score"):
        write_report(tmp_path / "c", scores=s, labels=run["labels"], kept=run["kept"], paths=paths[:-1])


def test_selection_result_with_a_pandas_table(tmp_path, run):
    """A SelectionResult-like object whose table is a DataFrame (numpy bools, NaN gamma)."""
    import pandas as pd

    class Result:
        def to_dict(self):
            return {**SELECTION, "table": pd.DataFrame(SELECTION["table"])}

    path = write_report(tmp_path / "s", scores=run["scores"], labels=run["labels"], kept=run["kept"],
                        selection=Result())
    rows = _Page(path.read_text(encoding="utf-8")).sections["selection"]["rows"][1:]
    assert [r[0] for r in rows if r[-1] == "yes"] == ["flexrand gamma=0.3"]
    assert rows[-1][2] == "" and "nan" not in " ".join(rows[-1])  # 'random' has no gamma
