import os

import numpy as np
import pytest
import torch

# Two cores on CI: one intra-op thread per test process keeps runs predictable.
torch.set_num_threads(int(os.environ.get("SKDLC_TEST_THREADS", "2")))


class TinyCNN(torch.nn.Module):
    """A small conv net mapping (N, 3, H, W) to 16 features; seeded weights."""

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, padding=1)
        self.fc = torch.nn.Linear(16, 16)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            self.bn1.running_mean.copy_(torch.randn(8, generator=g) * 0.1)
            self.bn1.running_var.copy_(torch.rand(8, generator=g) + 0.5)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(torch.nn.functional.max_pool2d(x, 2)))
        x = x.mean(dim=(2, 3))
        return self.fc(x)


@pytest.fixture
def tiny_cnn():
    return TinyCNN(0)


@pytest.fixture
def blob_images():
    """60 float32 images (N, 3, 12, 12) in 3 classes with class-dependent colour + noise."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    base = rng.random((3, 3, 1, 1)).astype(np.float32)
    X = base[y] + 0.35 * rng.standard_normal((60, 3, 12, 12)).astype(np.float32)
    return np.clip(X, 0, 1).astype(np.float32), y
