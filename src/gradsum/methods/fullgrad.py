"""FullGrad (Srinivas & Fleuret 2019): input-gradient plus bias-gradient maps.

S(x) = psi(|x * dy/dx|) + sum_layers sum_c psi(|b_c * dy/dz_c|), psi = per-map min-max
(divisor max - min + 1e-7, as pytorch-grad-cam) then bilinear upsampling, over every Conv2d
and BatchNorm2d with a bias (BatchNorm's bias folded: beta - mean * gamma / sqrt(var + eps)).
Gradients of all layers and the input come from ONE forward and ONE autograd.grad.
`settings["completeness_gap"]` = y - (sum x dy/dx + sum_layers sum b dy/dz) over conv, BN and
linear biases: ~0 for piecewise-linear networks (the full-gradient completeness property).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gradsum.core.attribution import Attribution, Cost
from gradsum.core.probe import Probe
from gradsum.core.targets import Target
from gradsum.methods.base import Explainer, upsample
from gradsum.methods.registry import register

__all__ = ["FullGrad", "layer_bias"]

_EPS = 1e-7


def layer_bias(module: nn.Module) -> torch.Tensor:
    """The bias a layer adds to its output: Conv/Linear bias, or BatchNorm's folded
    beta - running_mean * gamma / sqrt(running_var + eps)."""
    if isinstance(module, nn.BatchNorm2d):
        if module.running_mean is None or module.running_var is None:
            return module.bias.detach()
        gamma = module.weight if module.weight is not None else torch.ones_like(module.running_mean)
        return (module.bias - module.running_mean * gamma / torch.sqrt(module.running_var + module.eps)).detach()
    return module.bias.detach()


def _per_map_minmax(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.flatten(2)
    lo = flat.amin(dim=2, keepdim=True)
    hi = flat.amax(dim=2, keepdim=True)
    return ((flat - lo) / (hi - lo + _EPS)).reshape(maps.shape)


@register("fullgrad", family="perturbation", passes="1 forward + 1 backward",
          paper="Srinivas & Fleuret 2019, Full-Gradient Representation for Neural Network Visualization")
class FullGrad(Explainer):
    """FullGrad: |x * grad| per channel plus |bias * grad| of every Conv2d / BatchNorm2d with a
    bias, each channel map min-max scaled, upsampled (bilinear) and summed (raw sum; the peer
    library min-maxes the sum). Modules called several times count their last call."""

    def __init__(self, model: nn.Module, layer: Any = None, *, seed: int = 0):
        super().__init__(model, layer=layer)
        self.seed = seed

    def _explain(self, x: torch.Tensor, target: Target) -> Attribution:
        biased = [(n, m) for n, m in self.model.named_modules()
                  if type(m) in (nn.Conv2d, nn.BatchNorm2d, nn.Linear) and getattr(m, "bias", None) is not None]
        if not any(not isinstance(m, nn.Linear) for _, m in biased):
            raise ValueError(f"fullgrad needs Conv2d or BatchNorm2d layers with a bias; {type(self.model).__name__} "
                             "has none (use inputxgradient)")
        xin = x.detach().requires_grad_(True)
        probe = Probe(self.model, biased)
        with probe:
            output = self.model(xin)
        bound = target.bind(output)
        scores = bound(output)
        names = [n for n, _ in biased if n in probe.captured]
        grads = probe.gradients(scores, names, extra=[xin])
        size = (x.shape[-2], x.shape[-1])
        modules = dict(biased)
        with torch.no_grad():
            gx = grads[-1]
            total = _per_map_minmax((x * gx).abs()).sum(dim=1)
            explained = (x * gx).flatten(1).sum(dim=1).double()
            for name, g in zip(names, grads[:-1], strict=True):
                module = modules[name]
                bias = layer_bias(module).to(g.dtype)
                shape = (1, -1) + (1,) * (g.ndim - 2)
                term = bias.reshape(shape) * g
                explained += term.flatten(1).sum(dim=1).double()
                if isinstance(module, nn.Linear) or g.ndim != 4:
                    continue
                total += upsample(_per_map_minmax(term.abs()).sum(dim=1), size)
            gap = scores.detach().double() - explained
        return Attribution(
            method=self.name, maps=total.float(), scores=scores.detach(), targets=bound.indices,
            cost=Cost(forward_passes=x.shape[0], backward_passes=x.shape[0]),
            settings={"layers": [n for n in names if not isinstance(modules[n], nn.Linear)],
                      "completeness_gap": gap, "target": bound.description, "seed": self.seed},
        )
