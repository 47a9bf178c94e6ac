"""Random-model baseline: the same architecture with freshly initialised weights.

A heatmap method applied to an untrained network still prefers some regions (large
uniform areas, borders, textures); GradSUM values are read against this baseline.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["randomized_copy"]


def randomized_copy(model: nn.Module, seed: int) -> nn.Module:
    """A deep copy of `model` with every module that has `reset_parameters` re-initialised
    (BatchNorm running statistics reset too) under `seed`, in eval mode. The original model
    and the global random state are untouched."""
    clone = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in clone.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    return clone.eval()
