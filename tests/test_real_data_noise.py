"""On real data, the default path scores flipped labels as hard (MNIST, the offline backbone)."""

import numpy as np
from sklearn.metrics import roc_auc_score

from skdlc import DLCScorer
from skdlc.datasets import load_mnist


def test_default_path_scores_flipped_mnist_labels_higher():
    X, y = load_mnist(n_per_class=30, random_state=0, return_X_y=True)
    rng = np.random.default_rng(0)
    flip = rng.random(len(y)) < 0.2
    noisy = np.where(flip, (y + rng.integers(1, 10, len(y))) % 10, y)
    scorer = DLCScorer(image_size=64, random_state=0, verbose=False)  # default: calibrated path
    scores = scorer.fit(X, noisy).score_samples(X, noisy)
    assert scorer.calibration_ is not None and scorer.mask_ratios_[0] == 0.0
    assert scores[flip].mean() > scores[~flip].mean()
    assert roc_auc_score(flip, scores) > 0.8
