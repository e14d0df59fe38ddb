"""
What each selection strategy keeps
==================================

:class:`skdlc.FlexRandSampler` is the paper's sampler: per class it splits the samples
at the ``gamma``-quantile of their scores and draws half of the budget at random from
the easy interval, half from the hard one. Its ``strategy`` parameter gives the paper's
ablations. :func:`skdlc.select_from_scores` applies the same rules to one group's
scores. This example needs no model: it draws scores for one class of 200 samples and
shows which 40 every strategy keeps.
"""

import matplotlib.pyplot as plt
import numpy as np

from skdlc import select_from_scores

rng = np.random.default_rng(0)
scores = np.sort(rng.gamma(2.0, 1.0, size=200))  # sorted: easiest left, hardest right

settings = [
    ("random", {"strategy": "random"}),
    ("easy (T-E)", {"strategy": "easy"}),
    ("hard (T-H)", {"strategy": "hard"}),
    ("flexible, gamma=0.5 (T-F)", {"strategy": "flexible"}),
    ("bins (DQ-style)", {"strategy": "bins"}),
    ("flexrand, gamma=0.3", {"strategy": "flexrand", "gamma": 0.3}),
    ("flexrand, gamma=0.7", {"strategy": "flexrand", "gamma": 0.7}),
    ("random, drop hardest 20%", {"strategy": "random", "drop_hardest": 0.2}),
]

fig, ax = plt.subplots(figsize=(8, 4.2))
for row, (name, params) in enumerate(settings):
    kept = select_from_scores(scores, 40, rng=np.random.default_rng(0), **params)
    ax.scatter(np.arange(200), np.full(200, row), s=4, color="#d0d4dc")
    ax.scatter(kept, np.full(len(kept), row), s=14, color="#1f9d55")
    print(f"{name:28s} kept {len(kept)}: mean score {scores[kept].mean():.2f} (all: {scores.mean():.2f})")
ax.set_yticks(range(len(settings)), [name for name, _ in settings])
ax.invert_yaxis()
ax.set_xlabel("samples sorted by DLC score (easy \u2192 hard); green = kept")
ax.set_title("Which 40 of 200 samples each strategy keeps")
fig.tight_layout()

# %%
# On labelled data, :class:`~skdlc.FlexRandSampler` runs these rules per class
# (``FlexRandSampler(keep_ratio=0.2, strategy="easy")``) and adds ``"herding"``, which
# reads the embedding instead of the score. FlexRand's ``gamma`` moves the split: a small value makes the easy interval small,
# so each kept easy sample stands for fewer samples and the subset leans easy (better
# when little data is kept, the paper finds). :class:`skdlc.SelectionSampler`, skdlc's
# default, compares these strategies by cross-validation on your data instead of fixing
# one (see :ref:`sphx_glr_auto_examples_plot_noisy_labels.py`).
