"""
Tune the keep ratio in a pipeline with GridSearchCV
===================================================

:class:`skdlc.SelectionSampler` is an imbalanced-learn sampler, so the main job sits in
a pipeline in front of a classifier: DLC scores (with the full model's embedding in
front), the selection, then a classifier trained on the kept rows (the embedding and the per-class
losses, standardised). In an
imbalanced-learn pipeline the sampler runs only while fitting; prediction and scoring
see every row. ``GridSearchCV`` then tunes ``keep_ratio`` like any other parameter.

``memory=`` caches the scores by content, so DLC runs once per fold and every keep
ratio reads the cache.
"""

import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from imblearn.pipeline import make_pipeline
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import StandardScaler

from skdlc import DLCScorer, SelectionSampler
from skdlc.datasets import load_mnist

X, y = load_mnist(n_per_class=40, return_X_y=True)  # 400 digits
cache = tempfile.mkdtemp(prefix="skdlc-cache-")

pipe = make_pipeline(
    DLCScorer(image_size=48, mask_ratios=[0.0, 0.1, 0.2], embedding=True, memory=cache,
              random_state=0, verbose=False),
    SelectionSampler(keep_ratio=0.3, cv=3, random_state=0),
    StandardScaler(),
    LogisticRegression(C=0.1, max_iter=500),
)
grid = GridSearchCV(pipe, {"selectionsampler__keep_ratio": [0.1, 0.3, 0.6, 1.0]}, cv=3)
t0 = time.perf_counter()
grid.fit(X, y)
print(f"grid search: {time.perf_counter() - t0:.1f} s, best: {grid.best_params_}")

# %%
# Test accuracy against the fraction of the data kept. The refitted pipeline is the
# best one; its sampler says which strategy the cross-validation chose inside it.
table = pd.DataFrame(grid.cv_results_)
ratios = table["param_selectionsampler__keep_ratio"].astype(float)
fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.errorbar(ratios, table["mean_test_score"], yerr=table["std_test_score"], marker="o", capsize=3)
ax.set_xlabel("keep_ratio (fraction of every class kept)")
ax.set_ylabel("accuracy on the held-out fold")
ax.set_title("Logistic regression on the kept rows' embedding")
fig.tight_layout()

best_sampler = grid.best_estimator_.named_steps["selectionsampler"]
print("chosen inside the best pipeline:", best_sampler.strategy_, best_sampler.best_params_)
print(table[["param_selectionsampler__keep_ratio", "mean_test_score", "std_test_score"]].round(3))

# %%
# The same pipeline predicts on new images: the scorer computes the embedding (and the
# per-class losses), the sampler is skipped, the classifier predicts.
some = np.random.default_rng(0).choice(len(y), 10, replace=False)
print("predictions:", grid.predict(X[some]), "labels:", y[some])
