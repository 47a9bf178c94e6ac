"""FGSM and PGD in pixel space [0,1].

FGSM (Goodfellow et al. 2015): x' = clip_[0,1](x + eps * sign(grad_x L(x, y))).
PGD (Madry et al. 2018): from x (or a random point of the eps-ball), repeat
x <- Proj_{B(x0, eps) & [0,1]}(x + alpha * d), with d = sign(g) for L-inf and g/||g||_2
for L2; targeted attacks descend the loss of the target class instead. L is the
cross-entropy of the logits (summed over the batch: each image's step depends on its own
gradient only).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gradsum.adversarial._common import (
    check_budget,
    check_eps,
    check_model,
    check_positive_int,
    classifier_logits,
    labels_or_predictions,
    prepare_images,
)
from gradsum.core.probe import gradients_enabled, preserved_state
from gradsum.methods._args import check_flag, check_seed

__all__ = ["fgsm", "pgd", "project"]


def _loss_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (g,) = torch.autograd.grad(-loss if targeted else loss, x)
    return g


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor | int | None = None, *, eps: float = 8 / 255,
         targeted: bool = False) -> torch.Tensor:
    """One signed-gradient step of size eps (pixel units). y: true labels (default the
    model's predictions), or target labels when targeted=True. Returns x' in [0,1], in x's
    dtype (float64 / float16 images are attacked in the model's dtype)."""
    check_model(model)
    eps = check_eps(eps)
    targeted = check_flag(targeted, "targeted")
    with gradients_enabled(), preserved_state(model):
        x, dtype = prepare_images(model, x)
        y = labels_or_predictions(model, x, y, classifier_logits(model, x))
        g = _loss_grad(model, x, y, targeted)
    return (x + eps * g.sign()).clamp(0, 1).detach().to(dtype)


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.ndim - 1)))


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project perturbations (B,...) onto the eps-ball: clip for "inf", rescale for "2"."""
    if norm == "inf":
        return delta.clamp(-eps, eps)
    n = _flat_norm(delta)
    return delta * torch.where(n > eps, eps / n.clamp_min(1e-12), torch.ones_like(n))


def _check_norm(norm: str | float) -> str:
    key = str(norm).lower().replace("l", "")
    if key in ("inf", "linf"):
        return "inf"
    if key in ("2", "2.0"):
        return "2"
    raise ValueError(f"norm must be 'inf' or 2, got {norm!r}")


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | int | None = None,
    *,
    eps: float = 8 / 255,
    alpha: float = 2 / 255,
    steps: int = 10,
    norm: str | float = "inf",
    targeted: bool = False,
    random_start: bool = True,
    seed: int = 0,
) -> torch.Tensor:
    """Projected gradient descent; returns x' with x' - x in the eps-ball and x' in [0,1].

    eps and alpha are judged by the rule of `norm`: L-inf ("inf") budgets are pixel units
    in [0,1] (8/255 = 8 grey levels); L2 (2) budgets are lengths >= 0 with no upper cap.

    random_start: L-inf draws delta ~ U(-eps, eps) per pixel; L2 draws a Gaussian
    direction scaled to a radius U(0, eps) (both then clipped to [0,1]), from a CPU
    generator seeded with `seed` (the same start on every device). alpha: step size (pixel
    units for L-inf, L2 length for "2"). Runs on the device of x and the model (they must
    agree); the result stays there.
    """
    check_model(model)
    p = _check_norm(norm)
    eps = check_budget(eps, p, "eps")
    alpha = check_budget(alpha, p, "alpha")
    check_positive_int(steps, "steps")
    targeted = check_flag(targeted, "targeted")
    random_start = check_flag(random_start, "random_start")
    seed = check_seed(seed)
    with gradients_enabled(), preserved_state(model):
        x0, dtype = prepare_images(model, x)
        y = labels_or_predictions(model, x0, y, classifier_logits(model, x0))
        adv = x0.clone()
        if random_start:
            # drawn on the CPU: the same seed gives the same start on every device
            gen = torch.Generator().manual_seed(seed)
            if p == "inf":
                adv = adv + torch.empty_like(adv, device="cpu").uniform_(-eps, eps, generator=gen).to(adv.device)
            else:
                d = torch.empty_like(adv, device="cpu").normal_(generator=gen).to(adv.device)
                r = torch.empty((adv.shape[0],) + (1,) * (adv.ndim - 1)).uniform_(0, 1, generator=gen).to(adv.device)
                adv = adv + d * r / _flat_norm(d) * eps
            adv = adv.clamp(0, 1)
        for _ in range(steps):
            g = _loss_grad(model, adv, y, targeted)
            step = g.sign() if p == "inf" else g / (_flat_norm(g) + 1e-10)
            adv = adv + alpha * step
            adv = (x0 + project(adv - x0, eps, p)).clamp(0, 1).detach()
    return adv.to(dtype)
