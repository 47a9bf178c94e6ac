"""Small deterministic models shared by tests (importable: tests/ is on pytest's pythonpath)."""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class InplaceReuseCNN(nn.Module):
    """A small CNN that uses in-place ReLU and calls ONE ReLU module twice (the cases that
    break naive hook code)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)  # used twice in forward
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.conv2(x))
        x = self.conv3(x)
        x = F.relu(x)  # functional, not in place: conv3's output stays intact
        return self.fc(self.pool(x).flatten(1))


class GapLinear(nn.Module):
    """conv -> ReLU -> conv -> ReLU -> global average pool -> linear (the CAM architecture)."""

    def __init__(self, num_classes: int = 5, out: int = 1):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1, stride=2), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


class TinySteering(nn.Module):
    """A one-output regressor (steering-like)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 5, stride=2), nn.ELU(), nn.Conv2d(6, 8, 3, stride=2), nn.ELU()
        )
        self.head = nn.Sequential(nn.Flatten(), nn.LazyLinear(16), nn.ELU(), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def digits_tensors(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return x.expand(-1, 3, -1, -1).contiguous(), torch.tensor(d.target, dtype=torch.int64)


def small_cnn() -> nn.Module:
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 16, 3, padding=1), act1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(16, 32, 3, padding=1), act2=nn.ReLU(), pool2=nn.MaxPool2d(2),
        flatten=nn.Flatten(), fc=nn.Linear(32 * 4 * 4, 10),
    ))


def train_digits(seed: int = 0, epochs: int = 3) -> tuple[nn.Module, torch.Tensor, torch.Tensor, float]:
    torch.manual_seed(seed)
    x, y = digits_tensors()
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=g)
    train, test = perm[:1400], perm[1400:]
    model = small_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for idx in train[torch.randperm(len(train), generator=g)].split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x[test]).argmax(1) == y[test]).float().mean().item()
    model.zero_grad(set_to_none=True)
    return model, x[test], y[test], acc


def voc_net(num_classes: int = 20) -> nn.Module:
    """A tiny CNN with `num_classes` outputs (a FILE.py:FACTORY model for CLI tests)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes)).eval()
