"""Activation maximisation: gradient ascent on the input image of a frozen model.

x* = argmax_x objective(model, T(x)) - l2 * mean((x - 0.5)^2) - tv * TV(x), with T a random
transform drawn at every step (see transforms.py) and x given by a parameterisation
(params.py). Erhan et al. 2009, "Visualizing Higher-Layer Features of a Deep Network";
Olah et al. 2017, "Feature Visualization" (Distill). Every image of the batch has its own
objective (one channel each), so N channels optimise as ONE batch.

The default preset ("pixel": projected normalised gradient ascent, pixels in [0,1], 512 steps)
replaced "lucent" as the default (issue 16). On a random 3->8->8 CNN at 32x32 with transforms
off, "lucent" reached 0.54-0.94x the channel mean of plain projected ascent (its worst channel
0.62-0.64x even with 4x the steps or 20x the lr): its FFT + ImageNet colour decorrelation +
sigmoid image is smooth, colour-correlated and never at 0 or 1, while the maxima are saturated
pixel-scale patterns (30-98% of plain ascent's pixels end at 0 or 1). The ReLU warm-up also
redirected gradients of images whose gradient was alive, which could leave a channel dead for
good (0.0 instead of 0.08); it now redirects only images with no ordinary gradient, as Lucid.
"""
from __future__ import annotations

import contextlib
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gradsum.core.layers import resolve_layer
from gradsum.core.probe import Probe, preserved_state
from gradsum.core.truncate import StopForward, stop_after
from gradsum.features._plot import tile_figure
from gradsum.features._relu import redirected_relus
from gradsum.features.objectives import OUTPUT, LayerActivations, Objective
from gradsum.features.params import make_param
from gradsum.features.transforms import STANDARD, Transforms
from gradsum.methods._args import check_choice, check_flag, check_int, check_number, check_seed
from gradsum.metrics._common import forward_checked

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["PRESETS", "MaxResult", "maximize"]

# keras: the Keras example "Visualizing what convnets learn": pixels, gradient ascent
#   x += 10 * g / ||g||_2 (per image), 30 iterations, loss on the activation map without a 2-position border,
#   pixels unbounded during the ascent (shown standardised, as the example's deprocess does).
# lucent: FFT + decorrelated colour parameterisation, Adam lr 0.05, 512 steps (smooth, colourful
#   images; reaches a lower activation, see the module docstring).
# pixel (the default): projected normalised ascent, pixels kept in [0,1], x += lr_rms * sqrt(C*H*W) * g/||g||_2
#   with lr_rms 0.04 (a root-mean-square step of 0.04 per pixel at any image size), 512 steps.
PRESETS: dict[str, dict[str, Any]] = {
    "pixel": {"param": "pixel", "optimizer": "normalized", "lr": 0.04, "lr_per_pixel": True, "steps": 512,
              "border": 0, "clamp": True},
    "keras": {"param": "pixel", "optimizer": "normalized", "lr": 10.0, "steps": 30, "border": 2,
              "clamp": False},
    "lucent": {"param": "fft", "optimizer": "adam", "lr": 0.05, "steps": 512, "border": 0},
}


@dataclass
class MaxResult:
    """images (B,C,H,W) as optimised (in [0,1] unless clamp=False); values (B,) the objective on the final, untransformed
    images; history (steps,B) the objective (on transformed images) at each step."""

    images: torch.Tensor
    values: torch.Tensor
    history: torch.Tensor = field(repr=False)
    labels: list[str]
    objective: str
    settings: dict[str, Any]

    def display(self) -> torch.Tensor:
        """Images for showing: as they are when inside [0,1], else standardised per image
        to 0.5 +- 0.15 standard deviations and clipped (the Keras example's deprocess)."""
        x = self.images
        if bool(((x >= 0) & (x <= 1)).all()):
            return x
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True)
        return ((x - mean) / (std + 1e-5) * 0.15 + 0.5).clamp(0, 1)

    def figure(self, ncols: int | None = None) -> Figure:
        titles = [f"{lab}\n{v:.3g}" for lab, v in zip(self.labels, self.values.tolist(), strict=True)]
        s = self.settings
        return tile_figure(self.display(), titles=titles, ncols=ncols,
                           title=f"activation maximisation: {s['preset'] or s['param']}, {s['steps']} steps, seed {s['seed']}")


def _size(image_size: int | tuple[int, int], minimum: int = 4) -> tuple[int, int]:
    """An int or (H, W) of ints >= minimum (numpy integers accepted) -> (H, W)."""
    if isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    if (not isinstance(image_size, tuple | list) or len(image_size) != 2
            or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= minimum
                       for v in image_size)):
        raise ValueError(f"image_size must be an int or (H, W) of ints >= {minimum}, got {image_size!r}")
    return int(image_size[0]), int(image_size[1])


def _check_init(init: object, shape: tuple[int, int, int, int]) -> None:
    if not isinstance(init, torch.Tensor):
        raise TypeError(f"init must be a torch.Tensor of start images {shape}; got {type(init).__name__}")
    try:
        torch.broadcast_shapes(tuple(init.shape), shape)
    except RuntimeError:
        raise ValueError(f"init has shape {tuple(init.shape)}, which does not broadcast to the {shape} images "
                         "to optimise (give (C,H,W), (1,C,H,W) or (N,C,H,W))") from None
    if not init.is_floating_point() or not bool(torch.isfinite(init).all()):
        raise ValueError("init must hold finite floating-point pixels (no NaN or infinity)")


def _crop_border(a: torch.Tensor, border: int) -> torch.Tensor:
    if border <= 0 or a.ndim != 4:
        return a
    b = min(border, (min(a.shape[-2:]) - 1) // 2)
    return a[..., b:a.shape[-2] - b, b:a.shape[-1] - b] if b > 0 else a


def maximize(
    model: nn.Module,
    objective: Objective,
    *,
    image_size: int | tuple[int, int],
    batch: int | None = None,
    preset: str | None = "pixel",
    param: str | None = None,
    steps: int | None = None,
    lr: float | None = None,
    optimizer: str | None = None,
    transforms: bool | Transforms = True,
    l2: float = 0.0,
    tv: float = 0.0,
    blur_every: int = 0,
    blur_sigma: float = 0.5,
    border: int | None = None,
    clamp: bool | None = None,
    channels: int = 3,
    init: torch.Tensor | None = None,
    redirect_relu: int = 16,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> MaxResult:
    """Optimise images that maximise `objective` (see objectives.py).

    preset: "pixel" (the default: x <- clip(x + lr*sqrt(C*H*W) * g/||g||_2, 0, 1), lr 0.04 = the
    RMS step per pixel, 512 steps; with transforms off this is plain projected gradient ascent
    plus the ReLU warm-up, which revives dead channels), "lucent"
    (fft + colour decorrelation + sigmoid, Adam lr 0.05, 512 steps: smoother images, lower
    activations) or "keras" (pixel, normalised
    gradient ascent x += lr * g/||g||_2 with lr 10, 30 steps, border 2, unbounded
    pixels), or None; explicit arguments override it.
    transforms: True = the standard pad/jitter/scale/rotate/jitter scaled to the image
    size, False = none, or a `Transforms`. redirect_relu: number of warm-up steps in which
    nn.ReLU modules of an image whose ordinary gradient is all zero pass the gradient that
    would revive a dead unit (0 = never). l2, tv: weights of the L2-decay and
    total-variation penalties; clamp: keep pixel-parameterised images in [0,1] (the
    keras preset leaves them unbounded, as the Keras example does); blur_every: blur the (pixel) image every k steps.
    The model runs in eval mode with frozen parameters; its state is restored afterwards.
    Everything runs on the model's device; the random start and transforms are drawn from a
    CPU generator seeded with `seed`, so a seed draws the same numbers on every device, and
    the objective's history stays on the device until the end (no per-step host sync).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be a gradsum.features Objective (channel(...), neuron(...)), got {type(objective).__name__}")
    settings: dict[str, Any] = dict(PRESETS.get(preset or "", {}))
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)} or None")
    for key, value in {"param": param, "steps": steps, "lr": lr, "optimizer": optimizer, "border": border,
                       "clamp": clamp}.items():
        if value is not None:
            settings[key] = value
    settings.setdefault("param", "pixel")
    settings.setdefault("optimizer", "adam")
    settings.setdefault("lr", 0.05)
    settings.setdefault("steps", 256)
    settings.setdefault("border", 0)
    settings.setdefault("clamp", True)
    n_steps = settings["steps"] = check_int(settings["steps"], "steps")
    if settings["optimizer"] not in ("adam", "normalized"):
        raise ValueError(f"optimizer must be 'adam' or 'normalized', got {settings['optimizer']!r}")
    check_choice(settings["param"], "param", ("pixel", "fft"))
    settings["lr"] = check_number(settings["lr"], "lr", low=0.0, low_open=True, meaning="the step size")
    settings["border"] = check_int(settings["border"], "border", minimum=0)
    settings["clamp"] = check_flag(settings["clamp"], "clamp")
    l2 = check_number(l2, "l2", low=0.0, meaning="weight of the L2 penalty")
    tv = check_number(tv, "tv", low=0.0, meaning="weight of the total-variation penalty")
    blur_every = check_int(blur_every, "blur_every", minimum=0)
    if blur_every:
        blur_sigma = check_number(blur_sigma, "blur_sigma", low=0.0, low_open=True, meaning="blur radius in pixels")
    channels = check_int(channels, "channels")
    redirect_relu = check_int(redirect_relu, "redirect_relu", minimum=0)
    seed = check_seed(seed)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable progress(step, steps) or None; got {type(progress).__name__}")
    h, w = _size(image_size)
    if batch is not None:
        batch = check_int(batch, "batch")
    if objective.batch is not None and batch is not None and batch != objective.batch:
        raise ValueError(f"batch={batch} but the objective defines {objective.batch} images")
    n = objective.batch or batch or 1
    if init is not None:
        _check_init(init, (n, channels, h, w))

    layers = [resolve_layer(model, layer) for layer in objective.layers if not (isinstance(layer, str) and layer == OUTPUT)]
    unique = list({name: (name, module) for name, module in layers}.values())
    modules = {id(module): name for name, module in unique}
    tf: Transforms | None
    if transforms is True:
        tf = STANDARD.scaled_for(min(h, w))
    elif transforms is False or transforms is None:
        tf = None
    elif isinstance(transforms, Transforms):
        tf = transforms
    else:
        raise TypeError(f"transforms must be True, False or a Transforms, got {type(transforms).__name__}")

    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    bord = int(settings["border"])
    # one grey image through the model first: a wrong channel, layer or channel count is
    # refused here, before n images (one per channel) are allocated and optimised
    with preserved_state(model), Probe(model, unique) as probe, torch.no_grad():
        grey = torch.full((1, channels, h, w), 0.5, device=device)
        out = forward_checked(model, grey, f"a grey image of channels={channels}, image_size={(h, w)}")
        acts = {name: _crop_border(probe.activation(name), bord) for name, _ in unique}
        acts[OUTPUT] = out
        objective.validate(LayerActivations(acts, modules))
        # the ascent stops each forward after the layers read (each must run once per forward)
        stop_early = (
            all(not (isinstance(layer, str) and layer == OUTPUT) for layer in objective.layers)
            and all(probe.captured[name].calls == 1 for name, _ in unique))
    gen = torch.Generator().manual_seed(seed)  # on the CPU: a seed gives the same start and warps on every device
    p = make_param(settings["param"], (n, channels, h, w), generator=gen, device=device, init=init,
                   clamp=bool(settings["clamp"]))
    params = p.parameters()
    opt = torch.optim.Adam(params, lr=settings["lr"]) if settings["optimizer"] == "adam" else None
    # normalised steps: lr is the L2 step per image, or with lr_per_pixel the RMS step per pixel
    step_size = settings["lr"] * (channels * h * w) ** 0.5 if settings.get("lr_per_pixel") else settings["lr"]
    history = torch.empty(n_steps, n, device=device)

    active = [redirect_relu > 0]
    with preserved_state(model), redirected_relus(model, active), Probe(model, unique) as probe, \
            stop_after([module for _, module in unique], stop_early) as restart:

        def evaluate(x: torch.Tensor) -> torch.Tensor:
            probe.reset()
            restart()
            acts: dict[str, torch.Tensor] = {}
            with contextlib.suppress(StopForward):
                acts[OUTPUT] = model(x)
            acts.update({name: _crop_border(probe.activation(name), bord) for name, _ in unique})
            score = objective(LayerActivations(acts, modules))
            if score.shape != (x.shape[0],):
                raise ValueError(f"objective {objective.description!r} returned shape {tuple(score.shape)}, expected ({x.shape[0]},)")
            return score

        for step in range(n_steps):
            active[0] = step < redirect_relu
            img = p.image()
            x = tf(img, gen) if tf is not None else img
            score = evaluate(x)
            total = score
            if l2:
                total = total - l2 * (img - 0.5).pow(2).mean(dim=(1, 2, 3))
            if tv:
                total = total - tv * ((img[..., 1:, :] - img[..., :-1, :]).abs().mean(dim=(1, 2, 3))
                                      + (img[..., :, 1:] - img[..., :, :-1]).abs().mean(dim=(1, 2, 3)))
            grads = torch.autograd.grad(total.sum(), params)
            if opt is not None:
                for t, g in zip(params, grads, strict=True):
                    t.grad = -g
                opt.step()
                opt.zero_grad(set_to_none=True)
            else:
                with torch.no_grad():
                    for t, g in zip(params, grads, strict=True):
                        norm = g.flatten(1).norm(dim=1).view(-1, *([1] * (g.ndim - 1)))
                        t.add_(step_size * g / (norm + 1e-12))
            p.project()
            if blur_every and (step + 1) % blur_every == 0 and step + 1 < n_steps:
                p.blur(blur_sigma)
            history[step] = score.detach()
            if progress is not None:
                progress(step + 1, n_steps)
        active[0] = False
        with torch.no_grad():
            images = p.image().detach()
            values = evaluate(images).detach()

    labels = objective.labels if objective.labels and len(objective.labels) == n else [objective.description] * n
    settings.update(preset=preset, seed=seed, redirect_relu=redirect_relu, image_size=(h, w), l2=l2, tv=tv, blur_every=blur_every,
                    transforms=tf is not None)
    return MaxResult(images, values, history, list(labels), objective.description, settings)
