"""
Prune an image folder and read the report
=========================================

The main job from files on disk: an image folder with one subfolder per class (what
``skdlc prune photos/ --keep 0.3`` reads) is scored with DLC, pruned by the
cross-validated default selection, and written as ``kept.csv``, ``scores.csv``,
``summary.json`` and ``report.html``.

The images are 300 MNIST digits scored at 48 px so that the example runs in seconds;
on your own data leave ``image_size`` at the backbone's default.
"""

# %%
# An image folder
# ---------------
# :func:`~skdlc.datasets.make_image_folder` writes ``root/<class>/<i>.png``;
# :func:`~skdlc.datasets.read_image_folder` reads it back as paths and labels, as the
# command line does.
import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

import skdlc
from skdlc.datasets import load_mnist, make_image_folder, read_image_folder
from skdlc.report import plot_examples, plot_selection

work = Path(tempfile.mkdtemp(prefix="skdlc-example-"))
X, y = load_mnist(n_per_class=30, return_X_y=True)
make_image_folder(work / "digits", X, y)

data = read_image_folder(work / "digits")
print(len(data.paths), "images in", len(set(data.labels)), "classes, e.g.", Path(data.paths[0]).relative_to(work))

# %%
# Score and prune
# ---------------
# :func:`skdlc.prune` runs DLC (EfficientNet-Lite0, the offline default, on a
# calibrated learning path), then chooses how to keep 30% of every class by 5-fold
# cross-validation on the data.
scorer = skdlc.DLCScorer(image_size=48, n_ratios=3)
res = skdlc.prune(data.paths, data.labels, keep_ratio=0.3, scorer=scorer, random_state=0, verbose=False)

print("kept", len(res.kept_indices), "of", len(res.scores))
print("learning path (mask ratios):", [round(r, 3) for r in res.scorer.mask_ratios_])
print("selection:", res.selection["strategy"], res.selection["params"])
print(res.selection["rule"])

# %%
# Write the output set
# --------------------
# ``write`` writes every file at once (``summary.json`` last); ``paths`` puts the file
# names in the CSVs and thumbnails in the report.
out = work / "digits_pruned"
summary = res.write(out, paths=data.paths)
print(sorted(p.name for p in out.iterdir()))
print((out / "kept.csv").read_text().splitlines()[:3])

# %%
# ``summary.json`` holds the counts per class, the settings and the timings.
summary = json.loads((out / "summary.json").read_text())
print({k: summary[k] for k in ("n_samples", "n_kept") if k in summary})
print(sorted(summary))

# %%
# The report's figures
# --------------------
# ``report.html`` opens offline in a browser. Its figures come from
# :mod:`skdlc.report`, which builds them without pyplot; ``plt.figure(fig)`` hands one
# to pyplot (here, so that the gallery shows it). The easiest and hardest digits of
# every class, the kept ones outlined:
fig = plot_examples(data.paths, res.scores, res.labels, res.kept, n=5, max_classes=10)
plt.figure(fig)

# %%
# How the selection was chosen: every candidate's cross-validated accuracy, the chosen
# one in colour. The rule keeps the simplest candidate within one standard error of
# the best, Random being the simplest: with few rows per fold, few candidates get past
# that line.
fig = plot_selection(res.selection)
plt.figure(fig)
