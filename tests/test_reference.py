"""DLCScorer against an independent, deliberately naive implementation of the method page.

The reference copies the model per ratio, sorts |w| with numpy to find thresholds, and
loops over samples; it shares no code with skdlc.
"""

import copy

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from skdlc import DLCScorer

RATIOS = [0.0, 0.2, 0.4, 0.6, 0.8]


def _reference_mask(model, ratio, masking):
    model = copy.deepcopy(model)
    weights = [p for p in model.parameters() if p.ndim >= 2]
    with torch.no_grad():
        if masking == "layer":
            for w in weights:
                a = np.abs(w.numpy().ravel())
                k = int(round(a.size * ratio))
                if k == 0:
                    continue
                tau = np.sort(a)[k - 1]
                w[torch.from_numpy(np.abs(w.numpy()) <= tau)] = 0.0
        else:
            a = np.concatenate([np.abs(w.numpy().ravel()) for w in weights])
            k = int(round(a.size * ratio))
            if k:
                tau = np.sort(a)[k - 1]
                for w in weights:
                    w[torch.from_numpy(np.abs(w.numpy()) <= tau)] = 0.0
    return model.eval()


def _reference_scores(model, X, y, masking, prototypes, logits, temperature=0.1):
    classes = np.unique(y)
    x = torch.from_numpy(X)
    total = np.zeros(len(X))
    with torch.no_grad():
        feats0 = _reference_mask(model, 0.0, masking)(x).numpy().astype(np.float64)
        for r in RATIOS:
            f = _reference_mask(model, r, masking)(x).numpy().astype(np.float64)
            source = f if prototypes == "masked" else feats0
            protos = np.stack([source[y == c].mean(0) for c in classes])
            for i in range(len(X)):
                d = np.sqrt(((f[i] - protos) ** 2).sum(1))
                if logits == "cosine":
                    cos = protos @ f[i] / (np.linalg.norm(protos, axis=1) * np.linalg.norm(f[i]))
                    z = cos / temperature
                else:
                    z = -(d**2) if logits == "neg_sq_distance" else 1.0 / d
                z = z - z.max()
                logp = z - np.log(np.exp(z).sum())
                total[i] += -logp[np.searchsorted(classes, y[i])]
    return total / len(RATIOS)


@pytest.mark.parametrize(
    "masking,prototypes,logits",
    [("layer", "masked", "neg_sq_distance"), ("global", "unmasked", "inverse_distance"),
     ("layer", "masked", "cosine")],  # the default logits, with the default temperature
)
def test_matches_independent_reference(tiny_cnn, blob_images, masking, prototypes, logits):
    X, y = blob_images
    expected = _reference_scores(tiny_cnn, X, y, masking, prototypes, logits)
    scorer = DLCScorer(
        backbone=tiny_cnn, mask_ratios=RATIOS, masking=masking, prototypes=prototypes,
        logits=logits, device="cpu", verbose=False,
    )
    got = scorer.fit(X, y).score_samples(X, y)
    rho = spearmanr(expected, got).statistic
    assert rho >= 0.995, rho
    # Not just the same ranking: the same numbers (both are mean losses over the path).
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    assert scorer.mask_ratios_ == tuple(RATIOS)


def test_cosine_logits_follow_the_temperature(tiny_cnn, blob_images):
    X, y = blob_images
    expected = _reference_scores(tiny_cnn, X, y, "layer", "masked", "cosine", temperature=0.5)
    scorer = DLCScorer(backbone=tiny_cnn, mask_ratios=RATIOS, temperature=0.5, device="cpu",
                       verbose=False, engine="torch")
    got = scorer.fit(X, y).score_samples(X, y)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
