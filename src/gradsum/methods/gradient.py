"""The gradient family: saliency, input x gradient, guided backprop, guided Grad-CAM,
integrated gradients, and SmoothGrad over any of them.

Each method computes per-channel input attributions (`Attribution.input_maps`, (B,C,H,W))
and reduces them over channels into `maps` (B,H,W). Gradient-like methods (saliency,
guided backprop) reduce with max|.|; attribution-like methods that satisfy completeness
(input x gradient, integrated gradients) sum the channels, keeping the sign.
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from gradsum.core.attribution import Attribution, Cost
from gradsum.core.batching import BatchSize, auto_batch_size
from gradsum.core.layers import AUTO
from gradsum.core.layout import in_preferred_layout
from gradsum.core.targets import BoundTarget, FixedTarget, Target
from gradsum.methods._args import (
    check_choice,
    check_flag,
    check_int,
    check_number,
    check_seed,
    unknown_names,
)
from gradsum.methods.base import Explainer, option_names
from gradsum.methods.cam import compute_cams
from gradsum.methods.registry import register

__all__ = [
    "Saliency",
    "InputXGradient",
    "GuidedBackprop",
    "GuidedGradCAM",
    "IntegratedGradients",
    "SmoothGrad",
    "guided_relu",
    "reduce_channels",
    "quadrature",
]

ChannelReduce = Literal["absmax", "sum", "abssum", "mean", "max"]
_CHANNEL_REDUCE = ("absmax", "sum", "abssum", "mean", "max")


def _check_batch_size(batch_size: Any, name: str = "batch_size") -> BatchSize:
    """"auto" or an int >= 1."""
    if isinstance(batch_size, str) and batch_size == "auto":
        return "auto"
    if isinstance(batch_size, str):
        raise ValueError(f"{name} must be 'auto' or an int >= 1; got {batch_size!r}")
    return check_int(batch_size, name)


def reduce_channels(maps: torch.Tensor, how: ChannelReduce) -> torch.Tensor:
    """(B,C,H,W) -> (B,H,W): absmax = max_c |a|, sum, abssum = sum_c |a|, mean, max."""
    if how == "absmax":
        return maps.abs().amax(dim=1)
    if how == "sum":
        return maps.sum(dim=1)
    if how == "abssum":
        return maps.abs().sum(dim=1)
    if how == "mean":
        return maps.mean(dim=1)
    if how == "max":
        return maps.amax(dim=1)
    raise ValueError(f"unknown channel reduction {how!r}; use absmax, sum, abssum, mean or max")


# --- guided ReLU -------------------------------------------------------------------------


def _positive_part(grad: torch.Tensor) -> torch.Tensor:
    return grad.clamp_min(0)


def _guided(out: torch.Tensor) -> torch.Tensor:
    """Make a ReLU output guided: a hook clamps the gradient arriving at it to max(grad, 0),
    then ReLU's own backward multiplies by 1[out > 0]."""
    if out.requires_grad:
        out.register_hook(_positive_part)
    return out


_RELU = {F.relu, torch.relu, torch.Tensor.relu, F.relu_, torch.relu_, torch.Tensor.relu_}


class guided_relu(TorchFunctionMode):
    """Within this context every ReLU — nn.ReLU modules, F.relu, torch.relu, Tensor.relu and
    their in-place forms — backpropagates grad_in = grad_out * 1[x > 0] * 1[grad_out > 0]
    (Springenberg et al. 2015): the ReLU runs as usual and a tensor hook on its output keeps
    only the positive part of the incoming gradient (for an in-place ReLU the hook belongs to
    the output version, so later in-place ops on the same tensor do not move it). Nothing in
    the model is modified, so there is nothing to restore."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        out = func(*args, **(kwargs or {}))
        return _guided(out) if func in _RELU else out


# --- shared gradient machinery ---------------------------------------------------------------


def _clean_forward(model: nn.Module, x: torch.Tensor, target: Target) -> tuple[BoundTarget, torch.Tensor]:
    """Bind the target on the clean input: (bound target, scores)."""
    with torch.no_grad():
        output = model(x)
    bound = target.bind(output)
    return bound, bound(output)


def _input_gradients(
    model: nn.Module,
    inputs: torch.Tensor,
    bound: BoundTarget,
    rows: torch.Tensor,
    *,
    batch_size: BatchSize = "auto",
    guided: bool = False,
) -> torch.Tensor:
    """d target / d input for every row of `inputs` (rows[i] = the sample row i belongs to),
    in chunks; one forward and one backward per row."""
    n = inputs.shape[0]
    pixels = inputs.shape[-2] * inputs.shape[-1]
    size = auto_batch_size(inputs.device, n, pixels) if batch_size == "auto" else min(int(batch_size), n)
    grads = torch.empty_like(inputs)
    for start in range(0, n, size):
        stop = min(n, start + size)

        def gradient(chunk: torch.Tensor, rows_: torch.Tensor = rows[start:stop]) -> torch.Tensor:
            chunk = chunk.detach().requires_grad_(True)
            with torch.enable_grad(), guided_relu() if guided else contextlib.nullcontext():
                out = model(chunk)
                (g,) = torch.autograd.grad(bound(out, rows_).sum(), chunk)
            return g

        grads[start:stop] = in_preferred_layout(model, inputs[start:stop], gradient)
    return grads


def _reject_unknown_options(cls: type, options: dict[str, Any]) -> None:
    known = option_names(cls)
    name = getattr(cls, "name", cls.__name__)
    raise TypeError(f"{name} got unknown option(s) {unknown_names(list(options), known)}; it takes {', '.join(known)}")


class GradientExplainer(Explainer):
    """Base of the gradient family: `input_attributions(x, bound, rows)` -> ((B,C,H,W), Cost).

    Methods whose gradient is taken at x itself (`direct = True`: saliency, input x gradient,
    guided backprop) implement `from_gradient(x, grad)` and cost exactly one forward and one
    backward per image: the target is bound on the output of that same forward pass."""

    channel_reduce: ChannelReduce = "absmax"
    direct: bool = False
    guided: bool = False

    def __init__(self, model: nn.Module, layer: Any = None, *, channel_reduce: ChannelReduce | None = None,
                 batch_size: BatchSize = "auto", **options: Any):
        if options:
            _reject_unknown_options(type(self), options)
        super().__init__(model, layer=layer)
        if channel_reduce is not None:
            self.channel_reduce = check_choice(channel_reduce, "channel_reduce", _CHANNEL_REDUCE)  # type: ignore[assignment]
        self.batch_size = _check_batch_size(batch_size)

    def from_gradient(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover

    def input_attributions(self, x: torch.Tensor, bound: BoundTarget, rows: torch.Tensor) -> tuple[torch.Tensor, Cost]:
        """Attributions of (possibly perturbed) inputs whose target is already bound."""
        g = _input_gradients(self.model, x, bound, rows, batch_size=self.batch_size, guided=self.guided)
        return self.from_gradient(x, g), Cost(forward_passes=x.shape[0], backward_passes=x.shape[0])

    def _explain(self, x: torch.Tensor, target: Target) -> Attribution:
        batch = x.shape[0]
        if self.direct:
            xin = x.detach().requires_grad_(True)
            with torch.enable_grad(), guided_relu() if self.guided else contextlib.nullcontext():
                output = self.model(xin)
                bound = target.bind(output)
                scores = bound(output)
                (grad,) = torch.autograd.grad(scores.sum(), xin)
            attributions = self.from_gradient(x, grad)
            scores = scores.detach()
            cost = Cost(forward_passes=batch, backward_passes=batch)
        else:
            bound, scores = _clean_forward(self.model, x, target)
            attributions, cost = self.input_attributions(x, bound, torch.arange(batch, device=x.device))
            cost.forward_passes += batch
        return Attribution(
            method=self.name,
            maps=reduce_channels(attributions, self.channel_reduce),
            scores=scores,
            targets=bound.indices,
            cost=cost,
            input_maps=attributions,
            settings={"channel_reduce": self.channel_reduce, "target": bound.description, **self.options},
        )


@register("saliency", family="gradient", passes="1 forward + 1 backward",
          paper="Simonyan et al. 2014, Deep Inside Convolutional Networks")
class Saliency(GradientExplainer):
    """Saliency (Simonyan et al. 2014): |dy/dx|; the map is max_c |dy/dx_c|
    (channel_reduce="abssum" or others on request)."""

    channel_reduce: ChannelReduce = "absmax"
    direct = True

    def from_gradient(self, x, grad):
        return grad.abs()


@register("inputxgradient", family="gradient", passes="1 forward + 1 backward",
          paper="Shrikumar et al. 2016, Not Just a Black Box", signed=True)
class InputXGradient(GradientExplainer):
    """Input x gradient: x * dy/dx, summed over channels for the map (signed)."""

    channel_reduce: ChannelReduce = "sum"
    direct = True

    def from_gradient(self, x, grad):
        return x * grad


@register("guided-backprop", family="gradient", passes="1 forward + 1 backward",
          paper="Springenberg et al. 2015, Striving for Simplicity")
class GuidedBackprop(GradientExplainer):
    """Guided backpropagation (Springenberg et al. 2015): the input gradient with every ReLU's
    backward replaced by grad_out * 1[x>0] * 1[grad_out>0]; map = max_c |.|."""

    channel_reduce: ChannelReduce = "absmax"
    direct = True
    guided = True

    def from_gradient(self, x, grad):
        return grad


@register("guided-gradcam", family="gradient", passes="2 forward + 2 backward",
          paper="Selvaraju et al. 2017, Grad-CAM")
class GuidedGradCAM(GradientExplainer):
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop x upsampled Grad-CAM;
    input_maps = gb * cam per channel, map = max_c |gb| * cam. `layer` is Grad-CAM's layer."""

    channel_reduce: ChannelReduce = "absmax"
    guided = True

    def __init__(self, model: nn.Module, layer: Any = AUTO, **options: Any):
        super().__init__(model, layer=layer, **options)

    def from_gradient(self, x, grad):
        return grad

    def input_attributions(self, x, bound, rows):
        guided, cost = super().input_attributions(x, bound, rows)
        cam = compute_cams(self.model, x, FixedTarget(bound.select(rows)), ["gradcam"], self.layer)["gradcam"]
        return guided * cam.maps[:, None], cost + cam.cost


# --- integrated gradients ------------------------------------------------------------------

Quadrature = Literal["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]
_QUADRATURES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def quadrature(steps: int, method: Quadrature = "gausslegendre") -> tuple[torch.Tensor, torch.Tensor]:
    """Points a in [0,1] and weights w with sum_i w_i f(a_i) ~ integral_0^1 f(a) da."""
    steps = check_int(steps, "steps")
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return torch.from_numpy(0.5 * (nodes + 1)), torch.from_numpy(0.5 * weights)
    i = torch.arange(steps, dtype=torch.float64)
    if method == "riemann_left":
        return i / steps, torch.full((steps,), 1 / steps, dtype=torch.float64)
    if method == "riemann_right":
        return (i + 1) / steps, torch.full((steps,), 1 / steps, dtype=torch.float64)
    if method == "riemann_middle":
        return (i + 0.5) / steps, torch.full((steps,), 1 / steps, dtype=torch.float64)
    if method == "riemann_trapezoid":
        if steps < 2:
            raise ValueError(f"method='riemann_trapezoid' needs steps >= 2; got steps={steps}")
        w = torch.full((steps,), 1 / (steps - 1), dtype=torch.float64)
        w[0] = w[-1] = 0.5 / (steps - 1)
        return i / (steps - 1), w
    raise ValueError(
        f"unknown quadrature {method!r}; use gausslegendre, riemann_left, riemann_right, riemann_middle or riemann_trapezoid"
    )


BaselineSpec = str | float | torch.Tensor | Sequence[Any]
_BASELINE_NAMES = ("zeros", "black", "blur", "uniform")


def check_baseline(baseline: Any, name: str = "baseline") -> BaselineSpec:
    """Validate a baseline spec (see `make_baselines`) without an input: a known name, a
    finite number, a floating tensor of finite values, or a non-empty list of these."""
    if isinstance(baseline, str):
        return check_choice(baseline, name, _BASELINE_NAMES)
    if isinstance(baseline, torch.Tensor):
        if not baseline.is_floating_point():
            raise TypeError(f"{name} tensor must be floating point (like the input); got {baseline.dtype}")
        if not bool(torch.isfinite(baseline).all()):
            raise ValueError(f"{name} tensor contains NaN or infinite values")
        return baseline
    if isinstance(baseline, Sequence):
        if len(baseline) == 0:
            raise ValueError(f"{name} list is empty; give at least one baseline")
        for each in baseline:
            if isinstance(each, Sequence) and not isinstance(each, str):
                raise TypeError(f"{name} lists cannot be nested; got {baseline!r}")
            check_baseline(each, name)
        return baseline
    if isinstance(baseline, bool) or not isinstance(baseline, int | float):
        raise TypeError(
            f"{name} must be 'zeros', 'black', 'blur', 'uniform', a number, a tensor or a list of them; "
            f"got {type(baseline).__name__}"
        )
    check_number(baseline, name)
    return baseline


def make_baselines(
    x: torch.Tensor, baseline: BaselineSpec, *, seed: int = 0, mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None, blur_sigma: float = 5.0,
) -> list[torch.Tensor]:
    """Baselines x0 for x: "zeros" (zeros in model-input space), "black" (pixel 0 mapped
    through mean/std when given, else zeros), "blur" (Gaussian blur of x), "uniform" (seeded
    uniform noise over each image's value range: x0 = min(x) + (max(x) - min(x)) u, with ONE
    draw u (C,H,W) shared by every image, so an image's baseline depends on the seed and that
    image alone), a number, a tensor broadcastable to x, or a list of these (IG is then
    averaged over them; the k-th entry is seeded with seed + k, so ["uniform"] * 10 gives ten
    different random baselines)."""
    if isinstance(baseline, Sequence) and not isinstance(baseline, str):
        if len(baseline) == 0:
            raise ValueError("baseline list is empty; give at least one baseline")
        return [b for k, each in enumerate(baseline)
                for b in make_baselines(x, each, seed=(seed + k) % 2**64, mean=mean, std=std, blur_sigma=blur_sigma)]
    if isinstance(baseline, torch.Tensor):
        try:
            return [torch.broadcast_to(baseline.to(x.device, x.dtype), x.shape)]
        except RuntimeError:
            raise ValueError(
                f"baseline tensor of shape {tuple(baseline.shape)} does not broadcast to the input {tuple(x.shape)}"
            ) from None
    if isinstance(baseline, int | float) and not isinstance(baseline, bool):
        return [torch.full_like(x, float(baseline))]
    if baseline == "zeros":
        return [torch.zeros_like(x)]
    if baseline == "black":
        if mean is None or std is None:
            return [torch.zeros_like(x)]
        m = torch.tensor(mean, dtype=x.dtype, device=x.device)[None, :, None, None]
        s = torch.tensor(std, dtype=x.dtype, device=x.device)[None, :, None, None]
        return [((0 - m) / s).expand_as(x).clone()]
    if baseline == "blur":
        radius = max(1, int(3 * blur_sigma))
        t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
        k = torch.exp(-(t**2) / (2 * blur_sigma**2))
        k = k / k.sum()
        c = x.shape[1]
        pad = x
        pad = F.pad(pad, (radius, radius, 0, 0), mode="replicate")
        pad = F.conv2d(pad, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
        pad = F.pad(pad, (0, 0, radius, radius), mode="replicate")
        return [F.conv2d(pad, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)]
    if baseline == "uniform":
        # drawn on the CPU (the same numbers on every device), once for all images
        gen = torch.Generator(device="cpu").manual_seed(seed)
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        noise = torch.rand((1, *x.shape[1:]), generator=gen, dtype=x.dtype).to(x.device)
        return [lo + (hi - lo) * noise]
    check_baseline(baseline)  # raises the precise error
    raise ValueError(f"unknown baseline {baseline!r}")  # pragma: no cover - check_baseline raised


@register("integrated-gradients", family="gradient", passes="steps x (forward + backward), default 50",
          paper="Sundararajan et al. 2017, Axiomatic Attribution for Deep Networks", signed=True)
class IntegratedGradients(GradientExplainer):
    """Integrated gradients (Sundararajan et al. 2017):
    IG(x) = (x - x0) * integral_0^1 dF(x0 + a (x - x0))/dx da, by quadrature (default
    Gauss-Legendre, 50 steps). Baseline default "zeros" in the model's input space (black
    only when the model takes [0,1] pixels); "uniform" is seeded by `seed` and the same draw
    for every image of the batch. Map = sum over channels (signed).
    `return_delta=True` stores the completeness error sum(IG) - (F(x) - F(x0)) in
    `settings["delta"]` (one value per image)."""

    channel_reduce: ChannelReduce = "sum"

    def __init__(self, model: nn.Module, layer: Any = None, *, steps: int = 50,
                 method: Quadrature = "gausslegendre", baseline: BaselineSpec = "zeros",
                 return_delta: bool = False, seed: int = 0, internal_batch_size: BatchSize = "auto",
                 **options: Any):
        internal_batch_size = options.pop("batch_size", internal_batch_size)
        super().__init__(model, layer=layer, batch_size=internal_batch_size, **options)
        steps = check_int(steps, "steps")
        method = check_choice(method, "method", _QUADRATURES)  # type: ignore[assignment]
        quadrature(steps, method)  # riemann_trapezoid needs 2 steps
        baseline = check_baseline(baseline)
        return_delta, seed = check_flag(return_delta, "return_delta"), check_seed(seed)
        self.steps, self.method, self.baseline = steps, method, baseline
        self.return_delta, self.seed = return_delta, seed
        self.options.update(steps=steps, method=method, baseline=baseline if isinstance(baseline, str) else "custom", seed=seed)
        self._delta: torch.Tensor | None = None

    def input_attributions(self, x, bound, rows):
        alphas, weights = quadrature(self.steps, self.method)
        alphas = alphas.to(x.device, x.dtype)
        weights = weights.to(x.device, x.dtype)
        baselines = make_baselines(x, self.baseline, seed=self.seed)
        b, n = x.shape[0], self.steps
        pixels = x.shape[-2] * x.shape[-1]
        size = auto_batch_size(x.device, n * b, pixels) if self.batch_size == "auto" else int(self.batch_size)
        steps_per_chunk = max(1, size // b)  # path points of several steps per forward, step-major
        total = torch.zeros_like(x)
        deltas = []
        for x0 in baselines:
            diff = x - x0
            avg = torch.zeros_like(x)  # sum_s w_s dF/dx(x0 + a_s diff), accumulated chunk by chunk
            for s0 in range(0, n, steps_per_chunk):
                a, w = alphas[s0 : s0 + steps_per_chunk], weights[s0 : s0 + steps_per_chunk]
                path = (x0[None] + a[:, None, None, None, None] * diff[None]).reshape(-1, *x.shape[1:])
                grads = _input_gradients(self.model, path, bound, rows.repeat(len(a)), batch_size=self.batch_size)
                avg += (w[:, None, None, None, None] * grads.reshape(len(a), b, *x.shape[1:])).sum(dim=0)
            ig = diff * avg
            total += ig
            if self.return_delta:
                with torch.no_grad():
                    delta = ig.flatten(1).sum(1) - (bound(self.model(x), rows) - bound(self.model(x0), rows))
                deltas.append(delta)
        passes = n * b * len(baselines)
        if self.return_delta:
            self.options["delta"] = torch.stack(deltas).mean(dim=0)
        return total / len(baselines), Cost(forward_passes=passes, backward_passes=passes)


# --- SmoothGrad ---------------------------------------------------------------------------

Variant = Literal["smoothgrad", "smoothgrad_sq", "vargrad"]


@register("smoothgrad", family="gradient", passes="n_samples x the base method's passes (default 25)",
          paper="Smilkov et al. 2017, SmoothGrad; Adebayo et al. 2018 (VarGrad)")
class SmoothGrad(GradientExplainer):
    """SmoothGrad (Smilkov et al. 2017) over any gradient method (`base`, default saliency):
    average the base method's input attributions over n_samples noisy copies
    x + sigma * (max(x) - min(x)) * eps_j, j = 1..n_samples, sigma a FRACTION of each image's
    value range (default 0.15). variant: smoothgrad (mean), smoothgrad_sq (mean of squares),
    vargrad (variance). The standard normal draws eps_j (C,H,W) come from a CPU
    torch.Generator seeded with `seed` and are the SAME for every image of a batch, so an
    image's map depends on the seed and that image alone (not on its position or its
    neighbours), and CPU and GPU runs add the same noise. Rows are sample-major (row i*n + j
    is noise sample j of image i). The map uses the base's channel reduction."""

    def __init__(self, model: nn.Module, layer: Any = None, *, base: str = "saliency", n_samples: int = 25,
                 sigma: float = 0.15, variant: Variant = "smoothgrad", seed: int = 0,
                 base_options: dict[str, Any] | None = None, **options: Any):
        from gradsum.methods.registry import method_info

        if not isinstance(base, str):
            raise TypeError(f"base must be the name of a gradient method (e.g. 'saliency'); got {type(base).__name__}")
        info = method_info(base)
        if not issubclass(info.cls, GradientExplainer) or info.cls is SmoothGrad:
            raise ValueError(f"smoothgrad wraps a gradient method (saliency, inputxgradient, guided-backprop, "
                             f"integrated-gradients); got {base!r}")
        n_samples = check_int(n_samples, "n_samples")
        sigma = check_number(sigma, "sigma", low=0, meaning="noise level as a fraction of each image's value range")
        variant = check_choice(variant, "variant", ("smoothgrad", "smoothgrad_sq", "vargrad"))  # type: ignore[assignment]
        seed = check_seed(seed)
        if base_options is not None and not isinstance(base_options, dict):
            raise TypeError(f"base_options must be a dict of the {info.name} options, e.g. {{'steps': 16}}; "
                            f"got {type(base_options).__name__}")
        batch_size = options.pop("batch_size", "auto")
        super().__init__(model, layer=layer, batch_size=batch_size, **options)
        self.base = info.cls(model, layer=layer, batch_size=batch_size, **(base_options or {}))
        self.channel_reduce = options.get("channel_reduce") or self.base.channel_reduce
        self.n_samples, self.sigma, self.variant, self.seed = n_samples, sigma, variant, seed
        self.options.update(base=info.name, n_samples=n_samples, sigma=sigma, variant=variant, seed=seed)

    def draws(self, x: torch.Tensor) -> torch.Tensor:
        """The standard normal draws eps (n_samples, C, H, W), shared by every image of x:
        drawn on the CPU from a generator seeded with `seed`, in x's dtype, on x's device."""
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        return torch.randn((self.n_samples, *x.shape[1:]), generator=gen, dtype=x.dtype).to(x.device)

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        """The (B*n, C, H, W) noise this explainer adds (sample-major): row i*n + j is
        sigma * (max(x_i) - min(x_i)) * eps_j."""
        return (self._scale(x)[:, None] * self.draws(x)[None]).reshape(-1, *x.shape[1:])

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        return (self.sigma * (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))))[:, None, None, None]

    def input_attributions(self, x, bound, rows):
        b, n = x.shape[0], self.n_samples
        noisy = torch.addcmul(x[:, None], self._scale(x)[:, None], self.draws(x)[None]).reshape(b * n, *x.shape[1:])
        attr, cost = self.base.input_attributions(noisy, bound, rows.repeat_interleave(n))
        attr = attr.reshape(b, n, *x.shape[1:])
        if self.variant == "smoothgrad":
            out = attr.mean(dim=1)
        elif self.variant == "smoothgrad_sq":
            out = attr.pow(2).mean(dim=1)
        else:
            out = attr.var(dim=1, unbiased=False)
        return out, cost
