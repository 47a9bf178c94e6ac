"""Fixtures shared by the whole suite: small deterministic models and inputs."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from testmodels import GapLinear, InplaceReuseCNN, TinySteering, train_digits


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


def _trained_digits(seed: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor, float]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: one thread beats two contended ones
    try:
        result = train_digits(seed=seed)
    finally:
        torch.set_num_threads(before)
    assert result[3] > 0.9, f"the digits model (seed {seed}) reached only {result[3]:.3f} test accuracy"
    return result


@pytest.fixture(scope="session")
def digits_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor, float]:
    """A small CNN trained in seconds on sklearn's digits (16x16 RGB): (model in eval mode,
    test images (N,3,16,16), labels, test accuracy > 0.9). Trained once per session."""
    return _trained_digits(0)


@pytest.fixture(scope="session")
def second_digits_model() -> nn.Module:
    """Another digits CNN (different seed) for transfer tests."""
    return _trained_digits(1)[0]
