"""The path options beyond the paper's draw: 'calibrated' and 'cumulative', API and CLI."""

import numpy as np
import pytest
import torch

from skdlc import DLCScorer
from skdlc._cli._common import parse_mask_ratios
from skdlc._ratios import cumulative_ratios


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())


@pytest.fixture
def blobs():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 40)
    X = rng.random((120, 3, 12, 12), dtype=np.float32) * 0.2
    X[y == 1, 0] += 0.8  # classes a conv net tells apart even when masked a little
    X[y == 2, 2] += 0.8
    return X, y


def test_cumulative_is_the_official_global_schedule(blobs):
    X, y = blobs
    s = DLCScorer(_net(), mask_ratios="cumulative", masking="global", device="cpu", verbose=False).fit(X, y)
    assert s.mask_ratios_ == cumulative_ratios()
    assert s.mask_ratios_[0] == 0.0
    np.testing.assert_allclose(s.mask_ratios_[1:], [1 - 0.98**k for k in (10, 20, 30, 40, 50)])


def test_cumulative_needs_global_masking(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="masking='global'"):
        DLCScorer(_net(), mask_ratios="cumulative", device="cpu", verbose=False).fit(X, y)


def test_calibrated_path_stays_where_the_models_still_separate_classes(blobs):
    X, y = blobs
    s = DLCScorer(_net(), mask_ratios="calibrated", device="cpu", engine="torch",
                  batch_size=32, verbose=False).fit(X, y)
    cal = s.calibration_
    d = cal.to_dict()
    assert set(d) >= {"probe_ratios", "accuracies", "chance", "ratios"}
    assert s.mask_ratios_ == tuple(cal.ratios) and s.mask_ratios_[0] == 0.0
    acc = dict(zip(cal.probe_ratios, cal.accuracies))
    assert acc[0.0] > cal.chance + 0.3  # the unmasked model separates the blobs
    # no ratio of the path is one the calibration found at chance
    informative = dict(zip(cal.probe_ratios, cal.informative))
    assert all(informative[r] for r in s.mask_ratios_)
    assert s.transform(X).shape == (120, 3)


@pytest.mark.parametrize("text, expected", [("calibrated", "calibrated"), ("Cumulative", "cumulative"),
                                            ("auto", "auto"), ("3", 3), ("0,0.3", [0.0, 0.3])])
def test_cli_parses_every_path_option(text, expected):
    assert parse_mask_ratios(text) == expected
