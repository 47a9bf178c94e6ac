"""Small deterministic models shared by tests (importable: tests/ is on pytest's pythonpath)."""
from __future__ import annotations

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
