"""Fixtures shared by the whole suite: small deterministic models and inputs."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from testmodels import GapLinear, InplaceReuseCNN, TinySteering


@pytest.fixture
def inplace_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = InplaceReuseCNN()
    with torch.no_grad():  # non-trivial BN statistics
        model.bn1.running_mean.uniform_(-0.2, 0.2)
        model.bn1.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture
def gap_model() -> nn.Module:
    torch.manual_seed(1)
    return GapLinear().eval()


@pytest.fixture
def steering_model() -> nn.Module:
    torch.manual_seed(2)
    model = TinySteering()
    model(torch.zeros(1, 3, 33, 100))  # materialise the lazy layer
    return model.eval()


@pytest.fixture
def images() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(4, 3, 32, 32, generator=gen)
