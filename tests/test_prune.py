"""skdlc.prune, the one-call main job: the same rows as the command line, and its outputs."""

import csv
import json
import warnings

import numpy as np
import pytest

import skdlc
from skdlc import DLCScorer, FlexRandSampler, SelectionSampler
from skdlc.datasets import make_image_folder, read_image_folder

from tests.test_cli import TINY, _images, _run, tiny_backbones  # noqa: F401  (the fixture)


def _kept_paths(out):
    with open(out / "kept.csv", newline="", encoding="utf-8") as f:
        return [row["path"] for row in csv.DictReader(f)]


@pytest.fixture
def data(tmp_path):
    X, y = _images(n_per_class=(20, 20, 20))
    return make_image_folder(tmp_path / "data", X, y, class_names=["cat", "dog", "emu"])


@pytest.mark.parametrize("extra", [[], ["--strategy", "flexrand", "--gamma", "0.3"]])
def test_python_call_keeps_the_same_rows_as_the_command_line(data, tmp_path, extra):
    out = tmp_path / "cli"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny folds
        assert _run(["prune", data, "--keep", "0.4", "--backbone", TINY, "--seed", "3", "--quiet",
                     "--no-report", "--out", out, *extra]) == 0
        images = read_image_folder(data)
        selection = None if not extra else FlexRandSampler(gamma=0.3)
        res = skdlc.prune(images.paths, images.labels, keep_ratio=0.4, random_state=3,
                          scorer=DLCScorer(TINY), selection=selection, verbose=False)
    assert [images.paths[i] for i in res.kept_indices] == _kept_paths(out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["strategy"] == res.summary()["strategy"]
    assert summary["mask_ratios"] == res.summary()["mask_ratios"]


def test_prune_result_on_arrays_and_its_output_set(tmp_path):
    X, y = _images(n_per_class=(20, 20, 20))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = skdlc.prune(X, y, keep_ratio=0.5, scorer=DLCScorer(TINY), random_state=0, verbose=False)
    assert len(res.kept_indices) == 30 and np.all(np.diff(res.kept_indices) > 0)
    assert res.kept.sum() == 30 and res.kept[res.kept_indices].all()
    assert res.losses.shape == (60, 3) and res.scores.shape == (60,)
    np.testing.assert_allclose(res.scores, res.losses[np.arange(60), y])
    assert isinstance(res.sampler, SelectionSampler) and res.selection["cross_validated"]
    assert res.scorer.embedding is True and res.calibration is not None
    summary = res.write(tmp_path / "out", report=False)
    rows = list(csv.DictReader(open(tmp_path / "out" / "scores.csv", encoding="utf-8")))
    assert [r["index"] for r in rows] == [str(i) for i in range(60)]
    assert sum(int(r["kept"]) for r in rows) == 30
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk["n_kept"] == summary["n_kept"] == 30
    assert on_disk["selection"]["strategy"] == res.selection["strategy"]


def test_selection_reads_the_compact_float32_input_and_keeps_the_pipeline_rows(monkeypatch):
    # skdlc.prune hands its sampler [embedding | own-class score] in float32 rather than
    # DLCScorer.transform's float64 per-class layout: the same rows as that pipeline
    X, y = _images(n_per_class=(20, 20, 20))
    seen = {}
    fit = SelectionSampler.fit

    def recorded(self, Xs, ys):
        seen.update(dtype=np.asarray(Xs).dtype, shape=np.shape(Xs))
        return fit(self, Xs, ys)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monkeypatch.setattr(SelectionSampler, "fit", recorded)
        res = skdlc.prune(X, y, keep_ratio=0.4, scorer=DLCScorer(TINY), random_state=2, verbose=False)
        monkeypatch.undo()
        Xt = DLCScorer(TINY, embedding=True, random_state=2).fit_transform(X, y)
        piped = SelectionSampler(0.4, random_state=2).fit(Xt, y)
    assert seen["dtype"] == np.float32 and seen["shape"] == (60, Xt.shape[1] - 3 + 1)
    assert res.sampler.score_columns == "own_class"
    np.testing.assert_array_equal(res.kept_indices, piped.sample_indices_)
    np.testing.assert_allclose(res.losses, Xt[:, -3:])


class _FirstRows:
    """A sampler of the user's own: keeps each class's first rows, records what it read."""

    def __init__(self, keep_ratio=0.5):
        self.keep_ratio = keep_ratio

    def get_params(self, deep=True):
        return {"keep_ratio": self.keep_ratio}

    def set_params(self, **params):
        self.__dict__.update(params)
        return self

    def fit(self, X, y):
        self.seen_ = (np.asarray(X).dtype, np.shape(X))
        y = np.asarray(y)
        self.sample_indices_ = np.sort(np.concatenate([
            np.flatnonzero(y == k)[: int(self.keep_ratio * np.sum(y == k))] for k in np.unique(y)]))
        return self


def test_a_sampler_without_score_columns_gets_the_per_class_layout():
    X, y = _images(n_per_class=(20, 20, 20))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = skdlc.prune(X, y, keep_ratio=0.5, scorer=DLCScorer(TINY), issues=False, random_state=0,
                          selection=_FirstRows(), verbose=False)
        Xt = DLCScorer(TINY, embedding=True, random_state=0).fit_transform(X, y)
    assert res.sampler.seen_ == (np.float64, Xt.shape)  # [embedding | 3 loss columns], as transform's
    assert res.kept_indices.tolist() == [*range(10), *range(20, 30), *range(40, 50)]


def test_prune_validates_and_does_not_touch_its_arguments():
    X, y = _images()
    scorer = DLCScorer(TINY, embedding=False)
    sampler = SelectionSampler(keep_ratio=0.9)
    with pytest.raises(ValueError, match="keep_ratio"):
        skdlc.prune(X, y, keep_ratio=0)
    with pytest.raises(ValueError, match="keep_ratio"):
        skdlc.prune(X, y, keep_ratio=1.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = skdlc.prune(X, y, keep_ratio=0.5, scorer=scorer, selection=sampler, verbose=False)
    assert scorer.embedding is False and sampler.keep_ratio == 0.9  # clones were fitted
    assert not hasattr(scorer, "classes_") and res.sampler.keep_ratio == 0.5


def test_grid_search_over_keep_ratio_scores_each_fold_once(tmp_path):
    """DLCScorer + SelectionSampler + a classifier in GridSearchCV: every keep ratio of a
    fold reads the fold's scores from the cache; only the first one runs the backbone."""
    import torch
    from imblearn.pipeline import make_pipeline
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    calls = []

    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)
            torch.nn.init.normal_(self.conv.weight, generator=torch.Generator().manual_seed(0))

        def forward(self, x):
            calls.append(len(x))
            return torch.relu(self.conv(x)).mean(dim=(2, 3))

    X, y = _images(n_per_class=(30, 30, 30))
    X = X.astype(np.float32).transpose(0, 3, 1, 2) / 255.0

    def forwards(keeps, memory):
        calls.clear()
        pipe = make_pipeline(
            DLCScorer(Counting(), mask_ratios=[0.0, 0.3], embedding=True, device="cpu",
                      engine="torch", memory=str(memory), verbose=False),
            SelectionSampler(random_state=0, cv=3), LogisticRegression(max_iter=500))
        grid = GridSearchCV(pipe, {"selectionsampler__keep_ratio": keeps},
                            cv=StratifiedKFold(3, shuffle=True, random_state=0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            grid.fit(X, y)
        assert np.isfinite(grid.cv_results_["mean_test_score"]).all()
        return sum(calls)

    one = forwards([0.5], tmp_path / "a")
    three = forwards([0.3, 0.5, 0.8], tmp_path / "b")
    assert one > 0 and three == one  # the two extra keep ratios scored nothing
