"""
Export a scorer to ONNX and score without torch
===============================================

A fitted :class:`skdlc.DLCScorer` writes its masked variants as ONNX files with the
class prototypes and a manifest (``export_onnx``). :class:`skdlc.OnnxDLCModel` scores
from that folder with ONNX Runtime alone: no torch model, the same scores. This is what
the TorchServe handler serves (``skdlc serve archive --onnx``).
"""

import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from skdlc import DLCScorer, OnnxDLCModel
from skdlc.datasets import load_mnist

X, y = load_mnist(n_per_class=10, return_X_y=True)
scorer = DLCScorer(image_size=32, mask_ratios=[0.0, 0.1, 0.2, 0.3], engine="torch",
                   random_state=0, verbose=False).fit(X, y)
torch_scores = scorer.score_samples(X, y)

folder = scorer.export_onnx(Path(tempfile.mkdtemp(prefix="skdlc-onnx-")) / "dlc_export")
for f in sorted(folder.iterdir()):
    print(f"{f.name:28s} {f.stat().st_size / 1e6:6.2f} MB")

# %%
# The manifest says everything the scores depend on.
manifest = json.loads((folder / "manifest.json").read_text())
print("ratios:", manifest["mask_ratios"], "| classes:", manifest["class_names"])
print("preprocessing:", manifest["preprocessing"])

# %%
# Score from the folder
# ---------------------
# ``load`` checks every file against the SHA-256 in the manifest.
model = OnnxDLCModel.load(folder, verbose=False)
onnx_scores = model.score_samples(X, y)
print(f"largest difference from the torch scores: {np.abs(onnx_scores - torch_scores).max():.2e}")

fig, ax = plt.subplots(figsize=(4.2, 4))
ax.scatter(torch_scores, onnx_scores, s=8)
lims = [min(torch_scores.min(), onnx_scores.min()), max(torch_scores.max(), onnx_scores.max())]
ax.plot(lims, lims, color="#b8bec9", lw=1, zorder=0)
ax.set_xlabel("DLCScorer (torch)")
ax.set_ylabel("OnnxDLCModel (ONNX Runtime)")
ax.set_title("The same DLC scores, two engines")
fig.tight_layout()

# %%
# ``transform`` gives every sample's loss under every class, as ``DLCScorer.transform``
# does, so the export slots into the same samplers.
print(model.transform(X[:3]).round(3))
