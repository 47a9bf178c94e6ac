"""DeepFool (Moosavi-Dezfooli, Fawzi & Frossard, CVPR 2016), L2, batched.

At x_i, linearise the classifier: for each candidate class k != k0 (the top
`candidates` classes of the clean image), w_k = grad f_k - grad f_k0 and
f_k = f_k(x_i) - f_k0(x_i); step to the nearest linearised boundary,
r_i = (|f_l| / ||w_l|| + 1e-4) * w_l / ||w_l|| with l = argmin_k |f_k| / ||w_k||, and
accumulate r = sum r_i; x_{i+1} = x0 + (1 + overshoot) r. Stop per image once its label
changes or after max_iter steps.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gradsum.adversarial._common import (
    check_model,
    check_positive_int,
    classifier_logits,
    prepare_images,
)
from gradsum.core.probe import gradients_enabled, preserved_state
from gradsum.methods._args import check_flag, check_number

__all__ = ["DeepFoolResult", "deepfool", "check_candidates"]


@dataclass
class DeepFoolResult:
    """adversarial (B,C,H,W) = clip(x + perturbation); perturbation = (1+overshoot) r;
    labels / adversarial_labels (B,); fooled (B,) bool; iterations (B,) int."""

    adversarial: torch.Tensor
    perturbation: torch.Tensor
    labels: torch.Tensor
    adversarial_labels: torch.Tensor
    fooled: torch.Tensor
    iterations: torch.Tensor

    @property
    def norms(self) -> torch.Tensor:
        """L2 norm of each image's perturbation."""
        return self.perturbation.flatten(1).norm(dim=1)


def _candidate_gradients(f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """d f[:, j] / d x for every column j, (n, nc, ...): one batched backward pass
    (vmap over grad_outputs), or one pass per column when the model does not support it."""
    nc = f.shape[1]
    eye = torch.eye(nc, device=f.device, dtype=f.dtype).unsqueeze(1).expand(nc, f.shape[0], nc)
    try:
        (g,) = torch.autograd.grad(f, x, grad_outputs=eye, is_grads_batched=True, retain_graph=True)
        return g.transpose(0, 1)
    except RuntimeError:
        grads = [torch.autograd.grad(f[:, j].sum(), x, retain_graph=True)[0] for j in range(nc)]
        return torch.stack(grads, 1)


def deepfool(
    model: nn.Module,
    x: torch.Tensor,
    *,
    candidates: int = 10,
    overshoot: float = 0.02,
    max_iter: int = 50,
    clip: bool = True,
) -> DeepFoolResult:
    """Minimal L2 perturbations that change the model's predicted label of each image.

    clip: evaluate x0 + (1+overshoot) r clipped to [0,1] (pixel space); the returned
    perturbation is the unclipped (1+overshoot) r.
    """
    check_model(model)
    check_candidates(candidates)
    check_positive_int(max_iter, "max_iter")
    overshoot = check_number(overshoot, "overshoot", low=0.0, meaning="the step past the boundary, 0.02 = 2%")
    clip = check_flag(clip, "clip")
    with gradients_enabled(), preserved_state(model):
        x0, dtype = prepare_images(model, x)
        b = x0.shape[0]
        logits = classifier_logits(model, x0)
        nc = min(candidates, logits.shape[1])
        order = logits.argsort(dim=1, descending=True)[:, :nc]        # (B, nc), column 0 = k0
        k0 = order[:, 0]
        r_tot = torch.zeros_like(x0)
        active = torch.ones(b, dtype=torch.bool, device=x0.device)
        iters = torch.zeros(b, dtype=torch.long, device=x0.device)
        current = k0.clone()
        for _ in range(max_iter):
            idx = active.nonzero().flatten()
            if idx.numel() == 0:
                break
            xa = (x0[idx] + (1 + overshoot) * r_tot[idx])
            if clip:
                xa = xa.clamp(0, 1)
            xa = xa.detach().requires_grad_(True)
            out = model(xa)
            cand = order[idx]                                          # (n, nc)
            f = out.gather(1, cand)                                    # (n, nc)
            g = _candidate_gradients(f, xa)                           # (n, nc, C, H, W)
            w = g[:, 1:] - g[:, :1]
            fd = (f[:, 1:] - f[:, :1]).detach()
            wn = w.flatten(2).norm(dim=2)                              # (n, nc-1)
            dist = fd.abs() / (wn + 1e-12)
            best = dist.argmin(dim=1)
            wl = w[torch.arange(len(idx), device=x0.device), best]
            step = (dist.gather(1, best[:, None]) + 1e-4).view(-1, *([1] * (x0.ndim - 1))) * wl / (
                wn.gather(1, best[:, None]).view(-1, *([1] * (x0.ndim - 1))) + 1e-12)
            r_tot[idx] = r_tot[idx] + step.detach()
            iters[idx] += 1
            with torch.no_grad():
                xn = x0[idx] + (1 + overshoot) * r_tot[idx]
                new = model(xn.clamp(0, 1) if clip else xn).argmax(1)
            current[idx] = new
            active[idx] = new == k0[idx]
        pert = (1 + overshoot) * r_tot
        adv = x0 + pert
        if clip:
            adv = adv.clamp(0, 1)
    return DeepFoolResult(adv.detach().to(dtype), pert.detach().to(dtype), k0, current, current != k0, iters)


def check_candidates(candidates: int) -> int:
    """DeepFool's number of candidate classes: the predicted class and at least one other."""
    if check_positive_int(candidates, "candidates", minimum=-(2**63)) < 2:
        raise ValueError(
            f"candidates must be >= 2 (the predicted class and at least one other class to move towards); "
            f"got {candidates}"
        )
    return int(candidates)
