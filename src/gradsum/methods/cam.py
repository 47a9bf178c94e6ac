"""The CAM family: every method is a pure function of a layer's activations A (B,K,h,w)
(token and channels-last layers laid out by `gradsum.core.tokens`) and the gradients g = dy/dA, computed from ONE forward and ONE partial backward
(`torch.autograd.grad` with respect to the captured layers only — no parameter gradients).
Several CAM methods and several layers share that single pass (`compute_cams`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from gradsum.core.attribution import Attribution, Cost
from gradsum.core.layers import AUTO, resolve_layers
from gradsum.core.normalize import minmax
from gradsum.core.probe import Probe
from gradsum.core.targets import BoundTarget, Target
from gradsum.core.tokens import Reshape, TokenSpec, parse_tokens
from gradsum.core.truncate import Truncation, truncation
from gradsum.methods.base import Explainer, upsample, zero_gradient_images
from gradsum.methods.registry import register

__all__ = [
    "CAM_FUNCTIONS",
    "CamFunction",
    "compute_cams",
    "fuse_layer_maps",
    "eigen_projection",
    "CAMExplainer",
    "CAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "XGradCAM",
    "HiResCAM",
    "GradCAMElementWise",
    "LayerCAM",
    "EigenCAM",
    "EigenGradCAM",
    "LayerVisualization",
]

Fusion = Literal["mean", "max", "layercam"]


@dataclass
class CamContext:
    """What a CAM function may need beyond A and g."""

    model: nn.Module
    layer: str
    target: BoundTarget
    options: dict[str, Any]


@dataclass(frozen=True)
class CamFunction:
    fn: Callable[[torch.Tensor, torch.Tensor | None, CamContext], torch.Tensor]
    needs_gradients: bool


CAM_FUNCTIONS: dict[str, CamFunction] = {}


def _cam_function(name: str, needs_gradients: bool = True):
    def decorate(fn: Callable[[torch.Tensor, torch.Tensor | None, CamContext], torch.Tensor]):
        CAM_FUNCTIONS[name] = CamFunction(fn, needs_gradients)
        return fn

    return decorate


def _weighted_sum(weights: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    """sum_k w_k A_k for weights (B,K) -> (B,h,w)."""
    return torch.einsum("bk,bkhw->bhw", weights, acts)


@_cam_function("gradcam")
def gradcam_map(acts: torch.Tensor, grads: torch.Tensor, ctx: CamContext) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017): w_k = mean_ij g_kij; M = ReLU(sum_k w_k A_k)."""
    return _weighted_sum(grads.mean(dim=(2, 3)), acts).clamp_min(0)


@_cam_function("gradcam++")
def gradcam_pp_map(acts: torch.Tensor, grads: torch.Tensor, ctx: CamContext) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018), with exp(S) dropped (a positive constant):
    alpha = g^2 / (2 g^2 + sum_ab A_k * g^3 + eps), 0 where g = 0; w_k = sum_ij alpha ReLU(g)."""
    g2 = grads.pow(2)
    g3 = g2 * grads
    sum_a = acts.sum(dim=(2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + sum_a * g3 + 1e-6)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    weights = (alpha * grads.clamp_min(0)).sum(dim=(2, 3))
    return _weighted_sum(weights, acts).clamp_min(0)


@_cam_function("xgradcam")
def xgradcam_map(acts: torch.Tensor, grads: torch.Tensor, ctx: CamContext) -> torch.Tensor:
    """XGrad-CAM (Fu et al. 2020): w_k = sum_ij A_kij / (sum A_k + eps) * g_kij; M = ReLU(sum w_k A_k)."""
    sum_a = acts.sum(dim=(2, 3), keepdim=True)
    weights = (grads * acts / (sum_a + 1e-7)).sum(dim=(2, 3))
    return _weighted_sum(weights, acts).clamp_min(0)


@_cam_function("hirescam")
def hirescam_map(acts: torch.Tensor, grads: torch.Tensor, ctx: CamContext) -> torch.Tensor:
    """HiResCAM (Draelos & Carin 2020): M = ReLU(sum_k g_k * A_k), element-wise."""
    return (grads * acts).sum(dim=1).clamp_min(0)


@_cam_function("gradcam-elementwise")
def gradcam_elementwise_map(acts: torch.Tensor, grads: torch.Tensor, ctx: CamContext) -> torch.Tensor:
    """Element-wise Grad-CAM: M = sum_k ReLU(g_k * A_k)."""
    return (grads * acts).clamp_min(0).sum(dim=1)


@_cam_function("layercam")
def layercam_map(acts: torch.Tensor, grads: torch.Tensor, ctx: CamContext) -> torch.Tensor:
    """LayerCAM (Jiang et al. 2021): M = ReLU(sum_k ReLU(g_k) * A_k)."""
    return (grads.clamp_min(0) * acts).sum(dim=1).clamp_min(0)


def eigen_projection(acts: torch.Tensor, sign: str = "activation") -> torch.Tensor:
    """Projection of each position's channel vector on the first principal component.

    R = A reshaped (B, hw, K) minus its channel means; v = first right singular vector of R;
    P = R v reshaped (B,h,w). An SVD's sign is arbitrary: sign="activation" (default) flips
    P so that it correlates positively with sum_k A_k; sign="none" keeps the solver's sign
    (like the peer library, whose sign depends on the LAPACK build).
    """
    b, k, h, w = acts.shape
    r = acts.reshape(b, k, h * w).transpose(1, 2).double()
    r = r - r.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(r, full_matrices=False)
    proj = (r @ vh[:, 0, :, None])[..., 0]
    if sign == "activation":
        total = acts.sum(dim=1).reshape(b, h * w).double()
        agreement = (proj * (total - total.mean(dim=1, keepdim=True))).sum(dim=1)
        proj = torch.where(agreement[:, None] < 0, -proj, proj)
    elif sign != "none":
        raise ValueError(f"eigen sign must be 'activation' or 'none'; got {sign!r}")
    return proj.reshape(b, h, w).to(acts.dtype)


@_cam_function("eigencam", needs_gradients=False)
def eigencam_map(acts: torch.Tensor, grads: torch.Tensor | None, ctx: CamContext) -> torch.Tensor:
    """Eigen-CAM (Muhammad & Yeasin 2020): ReLU of the first-principal-component projection of A."""
    return eigen_projection(acts, ctx.options.get("eigen_sign", "activation")).clamp_min(0)


@_cam_function("eigengradcam")
def eigengradcam_map(acts: torch.Tensor, grads: torch.Tensor, ctx: CamContext) -> torch.Tensor:
    """Eigen-Grad-CAM: Eigen-CAM on the class-weighted activations A * g."""
    return eigen_projection(acts * grads, ctx.options.get("eigen_sign", "activation")).clamp_min(0)


@_cam_function("layer-visualization", needs_gradients=False)
def layer_visualization_map(acts: torch.Tensor, grads: torch.Tensor | None, ctx: CamContext) -> torch.Tensor:
    """Sum of a layer's feature maps, sum_k A_k (class-agnostic "what the layer responds to")."""
    return acts.sum(dim=1)


def _linear_head(ctx: CamContext, acts: torch.Tensor) -> nn.Linear:
    """The nn.Linear whose input, on this very forward, was the global average pool of
    `acts` (seen by the pre-hooks `compute_cams` puts on every Linear when cam is asked)."""
    pooled = acts.mean(dim=(2, 3))
    for head, seen in reversed(ctx.options.get("_linear_inputs", [])):
        if seen.shape == pooled.shape and torch.allclose(seen, pooled, rtol=1e-4, atol=1e-6):
            return head
    raise ValueError(
        f"cam needs the layer '{ctx.layer}' to be followed by global average pooling and a linear "
        f"layer, but no nn.Linear of {type(ctx.model).__name__} receives the spatial mean of its output; "
        "use 'gradcam', which equals CAM on such models and works on any model"
    )


@_cam_function("cam", needs_gradients=False)
def cam_map(acts: torch.Tensor, grads: torch.Tensor | None, ctx: CamContext) -> torch.Tensor:
    """CAM (Zhou et al. 2016): M = ReLU(sum_k w[c,k] A_k) with w the weights of the linear
    layer after global average pooling and c the explained class (output index x sign
    for regressors). Probability targets are explained through their class's logit."""
    head = _linear_head(ctx, acts)
    if ctx.target.indices is None:
        raise ValueError("cam needs a class or output index target, not a callable target")
    weights = head.weight[ctx.target.indices.to(head.weight.device)].to(acts.dtype)
    sign = ctx.target.sign
    if isinstance(sign, torch.Tensor):  # one sign per image (RegressionTarget(sign="prediction"))
        sign = sign.to(acts.dtype)[:, None, None]
    return (sign * _weighted_sum(weights, acts)).clamp_min(0)


def fuse_layer_maps(maps: Sequence[torch.Tensor], fusion: Fusion = "mean") -> torch.Tensor:
    """Fuse per-layer maps (each (B,H,W), ordered shallow -> deep, already upsampled).

    mean: mean of the per-layer min-max maps (the peer library's convention); max: their
    element-wise maximum; layercam: shallow layers scaled by tanh(2 M / max M) (Jiang et al.
    2021), the deepest min-max scaled, fused by element-wise maximum. Result in [0,1].
    """
    if len(maps) == 1:
        return maps[0]
    if fusion == "mean":
        return torch.stack([minmax(m.clamp_min(0)) for m in maps]).mean(dim=0)
    if fusion == "max":
        return torch.stack([minmax(m.clamp_min(0)) for m in maps]).amax(dim=0)
    if fusion == "layercam":
        scaled = []
        for m in maps[:-1]:
            peak = m.clamp_min(0).flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
            scaled.append(torch.tanh(2 * m.clamp_min(0) / peak))
        scaled.append(minmax(maps[-1].clamp_min(0)))
        return torch.stack(scaled).amax(dim=0)
    raise ValueError(f"unknown fusion {fusion!r}; use 'mean', 'max' or 'layercam'")


def check_fusion(fusion: str) -> None:
    """How several layers' maps are fused: 'mean', 'max' or 'layercam' (see `fuse_layer_maps`)."""
    if fusion not in ("mean", "max", "layercam"):
        raise ValueError(f"unknown fusion {fusion!r}; use 'mean', 'max' or 'layercam'")


def forward_with_probe(
    model: nn.Module, x: torch.Tensor, layers: list[tuple[str, nn.Module]] | str, *,
    tokens: TokenSpec = None, reshape: Reshape | None = None,
) -> tuple[Probe, torch.Tensor, list[str]]:
    """One forward with the probe attached; resolves 'auto' on this very forward (re-running
    with the found layer only if its output was modified in place afterwards). `tokens` /
    `reshape` override how token layers are laid out (`gradsum.core.tokens`)."""
    probe = Probe(model, layers, tokens=tokens, reshape=reshape)
    with probe:
        xin = x.detach().requires_grad_(True) if probe.auto else x
        output = model(xin)
    if not probe.auto:
        return probe, output, [n for n, _ in layers]  # type: ignore[union-attr]
    name, intact = probe.resolve_auto(output if isinstance(output, torch.Tensor) else None)
    if intact:
        return probe, output, [name]
    return forward_with_probe(model, x, resolve_layers(model, name), tokens=tokens,  # type: ignore[arg-type]
                              reshape=reshape)


def layout_options(options: dict[str, Any]) -> tuple[TokenSpec, Reshape | None, dict[str, Any]]:
    """Split the token-layout options (tokens=, reshape=) from a method's other options,
    checking them early."""
    rest = dict(options)
    tokens, reshape = rest.pop("tokens", None), rest.pop("reshape", None)
    parse_tokens(tokens)
    if reshape is not None and not callable(reshape):
        raise ValueError(f"reshape= must be a callable mapping the layer output to (B,C,h,w); got {reshape!r}")
    return tokens, reshape, rest


def _check_before_neuron(cut: Truncation, layers: list[tuple[str, nn.Module]], ran: set[str] | None,
                         label: str, auto: bool) -> None:
    """A CAM of a NeuronTarget reads a layer that runs before the neuron's layer (the model is
    truncated there): not that layer itself, not one after it, not one containing it."""
    for name, module in layers:
        if module is cut.module:
            which = f"layer='auto' chose the neuron's own layer '{name}'" if auto else \
                f"layer '{name}' is the neuron's own layer"
            raise ValueError(
                f"{label}: {which}; a CAM of a NeuronTarget of layer '{cut.name}' needs a layer that runs "
                "before it (give layer= an earlier layer)"
            )
        if ran is not None and name not in ran:
            raise ValueError(
                f"{label}: layer '{name}' does not run before the neuron's layer '{cut.name}' (the forward of a "
                "NeuronTarget stops there, so a later layer, or one containing it, never runs); give layer= a "
                f"layer that runs before '{cut.name}'"
            )


def compute_cams(
    model: nn.Module,
    x: torch.Tensor,
    target: Target,
    methods: Sequence[str],
    layer: Any = AUTO,
    *,
    fusion: Fusion = "mean",
    options: dict[str, Any] | None = None,
) -> dict[str, Attribution]:
    """Every CAM method in `methods` from ONE forward and (when any needs gradients) ONE
    partial backward over all layers. The model must already be in the state to explain
    in (see `preserved_state`); `Explainer.__call__` and `gs.explain` take care of that."""
    unknown = [m for m in methods if m not in CAM_FUNCTIONS]
    if unknown:
        raise ValueError(f"not CAM-family methods: {unknown}; CAM methods are {sorted(CAM_FUNCTIONS)}")
    tokens, reshape, options = layout_options(options or {})
    layers = resolve_layers(model, layer)
    cut = truncation(model)
    label = ", ".join(methods)
    if cut is not None and "cam" in methods:
        raise ValueError(
            f"cam reads the weights of the linear head after global pooling, which the model truncated at the "
            f"neuron's layer '{cut.name}' (a NeuronTarget) does not run; use gradcam"
        )
    if cut is not None and layers != AUTO:
        _check_before_neuron(cut, layers, None, label, auto=False)  # type: ignore[arg-type]
    linear_inputs: list[tuple[nn.Linear, torch.Tensor]] = []
    handles = []
    if "cam" in methods:  # CAM reads the head's weights: record what each Linear receives
        for module in model.modules():
            if isinstance(module, nn.Linear):
                handles.append(module.register_forward_pre_hook(
                    lambda mod, inp: linear_inputs.append((mod, inp[0].detach()))
                ))
    try:
        probe, output, names = forward_with_probe(model, x, layers, tokens=tokens, reshape=reshape)
    finally:
        for handle in handles:
            handle.remove()
    if cut is not None:
        modules = dict(model.named_modules())
        _check_before_neuron(cut, [(n, modules.get(n)) for n in names], set(probe.captured) | set(probe.non_tensor),
                             label, auto=layers == AUTO)  # type: ignore[misc]
    bound = target.bind(output)
    scores = bound(output)
    acts = [probe.activation(n, spatial=True, method=label) for n in names]
    needs_grad = any(CAM_FUNCTIONS[m].needs_gradients for m in methods)
    grads: list[torch.Tensor | None] = (
        probe.gradients(scores, names, spatial=True) if needs_grad else [None] * len(names)  # type: ignore[assignment]
    )
    zero_gradients = zero_gradient_images(grads)
    batch = x.shape[0]
    cost = Cost(forward_passes=batch, backward_passes=batch if needs_grad else 0)
    size = (x.shape[-2], x.shape[-1])
    results: dict[str, Attribution] = {}
    with torch.no_grad():
        acts = [a.detach() for a in acts]
        grads = [g.detach() if g is not None else None for g in grads]
        for method in methods:
            fn = CAM_FUNCTIONS[method].fn
            layer_maps = {
                n: fn(a, g, CamContext(model, n, bound, {**options, "_linear_inputs": linear_inputs}))
                for n, a, g in zip(names, acts, grads, strict=True)
            }
            upsampled = [upsample(m, size) for m in layer_maps.values()]
            results[method] = Attribution(
                method=method,
                maps=fuse_layer_maps(upsampled, fusion),
                scores=scores.detach(),
                targets=bound.indices,
                cost=cost,
                layer_maps=layer_maps,
                settings={"layers": names, "fusion": fusion if len(names) > 1 else None,
                          "layout": {n: probe.layout(n).describe() for n in names},
                          "target": bound.description, "shared_pass": len(methods) > 1, **options,
                          **({"zero_gradients": zero_gradients}
                             if zero_gradients and CAM_FUNCTIONS[method].needs_gradients else {})},
            )
    return results


class CAMExplainer(Explainer):
    """A CAM-family explainer: `layer` is a name, a module, a list of them (fused with
    `fusion`) or "auto" (the last layer with a spatial output, found on the real forward)."""

    cam_method: str = "gradcam"

    #: options the CAM functions read (EigenCAM's sign convention); anything else is a mistake
    known_options = ("eigen_sign", "tokens", "reshape")

    def __init__(self, model: nn.Module, layer: Any = AUTO, *, fusion: Fusion = "mean", **options: Any):
        unknown = sorted(set(options) - set(self.known_options))
        if unknown:
            raise TypeError(
                f"{self.cam_method} got unknown option(s) {unknown}; it takes layer=, fusion= "
                f"('mean', 'max', 'layercam') and {', '.join(o + '=' for o in self.known_options)}"
            )
        super().__init__(model, layer=layer, **options)
        layout_options(options)
        check_fusion(fusion)
        self.fusion = fusion
        resolve_layers(model, layer)  # fail early on a misspelt layer

    def _explain(self, x: torch.Tensor, target: Target) -> Attribution:
        return compute_cams(
            self.model, x, target, [self.cam_method], self.layer, fusion=self.fusion, options=self.options
        )[self.cam_method]


def _cam_class(method: str, class_name: str, paper: str, passes: str = "1 forward + 1 partial backward"):
    cls = type(class_name, (CAMExplainer,), {"cam_method": method, "__doc__": CAM_FUNCTIONS[method].fn.__doc__})
    return register(method, family="cam", passes=passes, paper=paper, signed=method == "layer-visualization")(cls)


CAM = _cam_class("cam", "CAM", "Zhou et al. 2016, Learning Deep Features for Discriminative Localization", "1 forward")
GradCAM = _cam_class("gradcam", "GradCAM", "Selvaraju et al. 2017, Grad-CAM")
GradCAMPlusPlus = _cam_class("gradcam++", "GradCAMPlusPlus", "Chattopadhay et al. 2018, Grad-CAM++")
XGradCAM = _cam_class("xgradcam", "XGradCAM", "Fu et al. 2020, Axiom-based Grad-CAM")
HiResCAM = _cam_class("hirescam", "HiResCAM", "Draelos & Carin 2020, HiResCAM")
GradCAMElementWise = _cam_class("gradcam-elementwise", "GradCAMElementWise", "element-wise Grad-CAM (pytorch-grad-cam)")
LayerCAM = _cam_class("layercam", "LayerCAM", "Jiang et al. 2021, LayerCAM")
EigenCAM = _cam_class("eigencam", "EigenCAM", "Muhammad & Yeasin 2020, Eigen-CAM", "1 forward")
EigenGradCAM = _cam_class("eigengradcam", "EigenGradCAM", "Eigen-CAM on A*g (pytorch-grad-cam)")
LayerVisualization = _cam_class(
    "layer-visualization", "LayerVisualization", "sum of feature maps (layer visualisation)", "1 forward"
)
