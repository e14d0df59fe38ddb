"""
A custom backbone: your own torch module
========================================

Any ``torch.nn.Module`` that maps a batch of images to feature vectors can be DLC's
backbone. Wrapped in a :class:`skdlc.Backbone` with a :class:`skdlc.Preprocessing`, it
also says how images are resized and normalised, so the scorer takes uint8 images,
files or folders like the built-in backbones do; :func:`skdlc.register_backbone` gives
it a name.

Here a tiny convolutional network is trained for a few seconds on MNIST digits, then
scores digits it did not see.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from skdlc import Backbone, DLCScorer, Preprocessing, create_backbone, register_backbone
from skdlc.datasets import load_mnist

X, y = load_mnist(return_X_y=True)  # 5,000 digits, uint8 (N, 28, 28, 3)
rng = np.random.default_rng(0)
order = rng.permutation(len(y))
train, held_out = order[:3000], order[3000:3500]


class TinyCNN(nn.Module):
    """Two convolutions and a pooled 32-d feature vector."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )

    def forward(self, x):
        return self.features(x)


# %%
# Train it briefly
# ----------------
# The features are what DLC reads; the linear head is only for training.
torch.manual_seed(0)
net = TinyCNN()
head = nn.Linear(32, 10)
inputs = (torch.from_numpy(X[train]).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
targets = torch.from_numpy(np.asarray(y[train], dtype=np.int64))
opt = torch.optim.Adam([*net.parameters(), *head.parameters()], lr=3e-3)
for epoch in range(3):
    for i in range(0, len(inputs), 100):
        loss = nn.functional.cross_entropy(head(net(inputs[i:i + 100])), targets[i:i + 100])
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"epoch {epoch}: last batch loss {loss.item():.3f}")
net.eval()

# %%
# Register and score
# ------------------
# ``Preprocessing`` repeats the training normalisation: ``(pixel / 255 - 0.5) / 0.5`` at
# 28x28. A registered factory is called with ``pretrained=``; the scorer creates the
# backbone from the name.
@register_backbone("tiny-mnist-cnn")
def tiny_mnist_cnn(*, pretrained=True):
    return Backbone(name="tiny-mnist-cnn", module=net,
                    preprocessing=Preprocessing(input_size=(28, 28), mean=(0.5,) * 3, std=(0.5,) * 3),
                    num_features=32)


print(create_backbone("tiny-mnist-cnn"))
scorer = DLCScorer("tiny-mnist-cnn", mask_ratios=[0.0, 0.1, 0.2, 0.3, 0.4], random_state=0, verbose=False)
Xh, yh = X[held_out], y[held_out]
scores = scorer.fit(Xh, yh).score_samples(Xh, yh)
print("scored", len(scores), "held-out digits at ratios", scorer.mask_ratios_)

# %%
# The easiest and hardest held-out digits of every class
# ------------------------------------------------------
# The hardest are the odd ones: unusual shapes, and digits that look like another class.
fig, axes = plt.subplots(10, 8, figsize=(6, 7.5))
for k in range(10):
    members = np.flatnonzero(np.asarray(yh) == k)
    ranked = members[np.argsort(scores[members])]
    for j, i in enumerate(np.r_[ranked[:4], ranked[-4:]]):
        ax = axes[k, j]
        ax.imshow(Xh[i], cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
        if j == 4:
            ax.spines[:].set_color("#d1495b")
    axes[k, 0].set_ylabel(str(k), rotation=0, labelpad=10)
axes[0, 1].set_title("4 easiest", loc="left")
axes[0, 5].set_title("4 hardest", loc="left")
fig.tight_layout()
