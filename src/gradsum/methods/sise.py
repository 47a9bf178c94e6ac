"""SISE and Ada-SISE: semantic input sampling with block-wise fusion.

SISE (Sattarzadeh et al. 2021):
1. blocks: the input of each spatial downsampling plus the last conv output (VGG: each
   MaxPool output; torchvision ResNet: relu (stem), layer1..layer4), from the model's
   `sise_blocks` attribute when it declares one, else detected from one forward;
2. one forward + one `torch.autograd.grad`: alpha_k = spatial mean of dy/dA_k per block;
3. keep feature maps with alpha_k > 0 and alpha_k > mu * max(alpha) (mu = 0);
4. masks: bilinear upsample, min-max per map (eps 1e-6);
5. s_k = p_c(x * mask_k) through the batched engine;
6. V = sum_k s_k mask_k / (sum_ij mask_k + eps), min-max;
7. fusion shallow -> deep: E = V_1; E = (E + V_l) * sigmoid(T (V_l - theta_l)), T = 100,
   theta_l = Otsu threshold of V_l (256 bins), raised to 1.5 theta when fewer than 10% of
   the pixels exceed 1.5 theta; gate="hard" uses 1[V_l > theta_l]. Final min-max.

Ada-SISE (Sudhakar et al. 2021) replaces step 3 per block: sort the positive alphas and
keep the upper class of the split maximising the between-class variance
w0 w1 (m0 - m1)^2, computed exactly over the 1-D set (no histogram); fewer than two
positive alphas: keep them all.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from gradsum.core.attribution import Attribution, Cost
from gradsum.core.batching import BatchSize, Progress
from gradsum.core.layers import AUTO, resolve_layers
from gradsum.core.normalize import minmax
from gradsum.core.probe import Probe
from gradsum.core.targets import Target
from gradsum.core.tokens import Reshape, TokenSpec, prefix_tokens
from gradsum.methods.base import Explainer
from gradsum.methods.cam import layout_options
from gradsum.methods.perturbation import (
    ScoreMode,
    check_batch_size,
    mask_target,
    minmax_masks,
    score_items,
    score_label,
)
from gradsum.methods.registry import register

__all__ = ["SISE", "AdaSISE", "detect_blocks", "otsu_threshold", "fuse_blocks", "adaptive_selection",
           "threshold_selection"]

Gate = Literal["soft", "hard"]
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_MASK_EPS = 1e-6


def _declared_blocks(model: nn.Module) -> list[str] | None:
    for prefix, module in model.named_modules():
        declared = getattr(module, "sise_blocks", None)
        if isinstance(declared, list | tuple) and declared and all(isinstance(b, str) for b in declared):
            return [f"{prefix}.{b}" if prefix else b for b in declared]
    return None


def _vgg_pools(model: nn.Module) -> list[str] | None:
    for prefix, module in model.named_modules():
        if prefix.split(".")[-1] == "features" and isinstance(module, nn.Sequential):
            pools = [f"{prefix}.{n}" for n, m in module.named_children() if isinstance(m, nn.MaxPool2d)]
            convs = any(isinstance(m, nn.Conv2d) for m in module.children())
            if pools and convs:
                return pools
    return None


def _spatial(t: Any) -> tuple[int, int] | None:
    return (t.shape[-2], t.shape[-1]) if isinstance(t, torch.Tensor) and t.ndim == 4 else None


def _shape_blocks(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Blocks from the shapes seen in one forward: the (outermost) producer of the input of
    every leaf that reduces the spatial size, one per resolution (the shallowest name),
    plus the outermost producer of the last conv's output."""
    calls: list[tuple[str, nn.Module, Any, Any]] = []
    producer: dict[int, str] = {}
    keep: list[Any] = []

    def hook_for(name: str):
        def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
            first = inputs[0] if inputs else None
            calls.append((name, module, first, output))
            if isinstance(output, torch.Tensor):
                producer[id(output)] = name
                keep.append(output)

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    order: dict[str, int] = {}
    for i, (name, *_rest) in enumerate(calls):
        order[name] = i
    candidates: dict[tuple[int, int], str] = {}
    for _name, module, inp, out in calls:
        si, so = _spatial(inp), _spatial(out)
        if len(list(module.children())) or si is None or so is None or not (so[0] < si[0] or so[1] < si[1]):
            continue
        src = producer.get(id(inp))
        if src is None or si[0] * si[1] <= 1:
            continue
        best = candidates.get(si)
        if best is None or src.count(".") < best.count("."):
            candidates[si] = src
    last_conv = [i for i, (_n, m, _i, o) in enumerate(calls) if isinstance(m, nn.Conv2d) and _spatial(o)]
    if last_conv:
        size = _spatial(calls[last_conv[-1]][3])
        tail = [o for _n, m, _i, o in calls[last_conv[-1]:] if _spatial(o) == size and not isinstance(m, _POOLS)]
        last = producer.get(id(tail[-1])) if tail else None
        if last is not None and size is not None and size[0] * size[1] > 1:
            candidates[size] = last
    blocks = sorted(set(candidates.values()), key=lambda n: order.get(n, 0))
    if not blocks:
        raise ValueError(
            f"could not find SISE blocks in {type(model).__name__}: no layer outputs a spatial map larger than 1x1; "
            "pass layer=[...] with the names of the blocks to fuse"
        )
    return blocks


def _token_blocks(model: nn.Module, x: torch.Tensor, count: int = 4) -> list[str] | None:
    """On a transformer, whose blocks all share one resolution: the inputs of the attention of
    `count` evenly spaced blocks ending with the last (`Probe.pre_attention_norms`); None for
    a model without token layers."""
    if prefix_tokens(model) is None:
        return None
    probe = Probe(model, AUTO)
    with probe, torch.no_grad():
        model(x[:1])
    norms = probe.pre_attention_norms()
    if not norms:
        return None
    picks = sorted({round((len(norms) - 1) * (i + 1) / count) for i in range(count)})
    return [norms[i] for i in picks]


def detect_blocks(model: nn.Module, x: torch.Tensor) -> list[str]:
    """The SISE blocks of `model` (shallow -> deep): its `sise_blocks` attribute (also on a
    wrapped submodule), the MaxPool outputs of a VGG-style `features` Sequential, the inputs
    of the attention of 4 evenly spaced blocks of a vision transformer, or the shape rule on
    one forward of x[:1] (ResNet: relu, layer1, ..., layer4)."""
    return _declared_blocks(model) or _vgg_pools(model) or _token_blocks(model, x) or _shape_blocks(model, x)


def threshold_selection(alpha: torch.Tensor, mu: float = 0.0) -> torch.Tensor:
    """SISE step 3: keep (B,K) = alpha > 0 and alpha > mu * max_k alpha."""
    top = alpha.amax(dim=1, keepdim=True)
    return (alpha > 0) & (alpha > mu * top)


def adaptive_selection(alpha: torch.Tensor) -> torch.Tensor:
    """Ada-SISE step 3 (B,K) -> keep (B,K): among the positive alphas, sorted, the split
    after the j-th value maximising w0 w1 (m0 - m1)^2 (w = class fractions, m = class
    means; splits only between distinct values) — keep the upper class. Fewer than two
    positive (or all equal) values: keep every positive one."""
    a = alpha.double()
    pos = a > 0
    n = pos.sum(dim=1, keepdim=True)  # (B,1)
    v, _ = torch.where(pos, a, torch.full_like(a, float("inf"))).sort(dim=1)
    k = a.shape[1]
    if k < 2:
        return pos
    finite = torch.where(torch.isfinite(v), v, torch.zeros_like(v))
    csum = finite.cumsum(dim=1)
    j = torch.arange(1, k, device=a.device, dtype=a.dtype)[None]  # size of the lower class
    total = csum.gather(1, (n - 1).clamp_min(0))
    lower = csum[:, :-1]
    nn_ = n.to(a.dtype)
    upper_count = (nn_ - j).clamp_min(1)
    m0 = lower / j
    m1 = (total - lower) / upper_count
    tau = (j / nn_.clamp_min(1)) * ((nn_ - j) / nn_.clamp_min(1)) * (m0 - m1) ** 2
    valid = (j < nn_) & (v[:, :-1] < v[:, 1:])
    tau = torch.where(valid, tau, torch.full_like(tau, -1.0))
    best = tau.argmax(dim=1, keepdim=True)
    has_split = valid.any(dim=1, keepdim=True)
    threshold = v.gather(1, best)  # the largest value of the lower class
    return pos & (~has_split | (a > threshold))


def otsu_threshold(values: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Otsu's threshold per row of values (B,N) in [0,1], on `bins` bins over [0,1];
    returns the centre of the last bin of the lower class (scikit-image's convention)."""
    idx = (values * bins).long().clamp(0, bins - 1)
    hist = torch.zeros(values.shape[0], bins, device=values.device, dtype=torch.float64)
    hist.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
    centers = (torch.arange(bins, device=values.device, dtype=torch.float64) + 0.5) / bins
    w1 = hist.cumsum(dim=1)
    w2 = hist.flip(1).cumsum(dim=1).flip(1)
    m1 = (hist * centers).cumsum(dim=1) / w1
    m2 = (hist * centers).flip(1).cumsum(dim=1).flip(1) / w2
    var = w1[:, :-1] * w2[:, 1:] * (m1[:, :-1] - m2[:, 1:]) ** 2
    var = torch.nan_to_num(var, nan=-1.0)
    return centers[var.argmax(dim=1)].to(values.dtype)


def fuse_blocks(maps: list[torch.Tensor], present: list[torch.Tensor] | None = None, *, gate: Gate = "soft",
                temperature: float = 100.0) -> torch.Tensor:
    """SISE step 7 on min-max block maps (each (B,H,W) in [0,1], shallow -> deep).
    present[l] (B,) bool: whether block l had any mask for that image (blocks without one
    are skipped). Returns the min-max fused map."""
    if gate not in ("soft", "hard"):
        raise ValueError(f"gate must be 'soft' or 'hard'; got {gate!r}")
    present = present or [torch.ones(m.shape[0], dtype=torch.bool, device=m.device) for m in maps]
    fused = maps[0]
    for v, has in zip(maps[1:], present[1:], strict=True):
        flat = v.flatten(1)
        theta = otsu_threshold(flat)
        few = (flat > 1.5 * theta[:, None]).float().mean(dim=1) < 0.1
        theta = torch.where(few, 1.5 * theta, theta)[:, None, None]
        g = torch.sigmoid(temperature * (v - theta)) if gate == "soft" else (v > theta).to(v.dtype)
        fused = torch.where(has[:, None, None], (fused + v) * g, fused)
    return minmax(fused)


class _SISEBase(Explainer):
    def __init__(self, model: nn.Module, layer: Any = AUTO, *, gate: Gate = "soft", temperature: float = 100.0,
                 score: ScoreMode = "probability", seed: int = 0, batch_size: BatchSize = "auto",
                 progress: Progress | None = None, tokens: TokenSpec = None, reshape: Reshape | None = None):
        super().__init__(model, layer=layer)
        self.tokens, self.reshape, _ = layout_options({"tokens": tokens, "reshape": reshape})
        if layer != AUTO and layer is not None:
            resolve_layers(model, layer)
        if gate not in ("soft", "hard"):
            raise ValueError(f"gate must be 'soft' or 'hard'; got {gate!r}")
        if score not in ("probability", "target"):
            raise ValueError(f"score must be 'probability' or 'target'; got {score!r}")
        self.gate, self.temperature, self.score, self.seed = gate, float(temperature), score, seed
        self.batch_size, self.progress = check_batch_size(batch_size), progress
        self._blocks: dict[tuple[int, ...], list[str]] = {}

    def select(self, alpha: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def blocks(self, x: torch.Tensor) -> list[str]:
        """The blocks explained for inputs shaped like x (cached per input shape)."""
        if self.layer != AUTO and self.layer is not None:
            return [n for n, _ in resolve_layers(self.model, self.layer)]  # type: ignore[union-attr]
        key = tuple(x.shape[1:])
        if key not in self._blocks:
            self._blocks[key] = detect_blocks(self.model, x)
        return self._blocks[key]

    def _explain(self, x: torch.Tensor, target: Target) -> Attribution:
        names = self.blocks(x)
        probe = Probe(self.model, resolve_layers(self.model, names),  # type: ignore[arg-type]
                      tokens=self.tokens, reshape=self.reshape)
        with probe:
            output = self.model(x)
        bound = target.bind(output)
        scores = bound(output)
        acts = [probe.activation(n, spatial=True, method=self.name) for n in names]
        grads = probe.gradients(scores, names, spatial=True)
        output = output.detach()
        scorer = mask_target(bound, output, self.score)
        batch, size = x.shape[0], (x.shape[-2], x.shape[-1])
        cost = Cost(forward_passes=batch, backward_passes=batch)
        block_maps: dict[str, torch.Tensor] = {}
        present: list[torch.Tensor] = []
        selected: dict[str, torch.Tensor] = {}
        for name, a, g in zip(names, acts, grads, strict=True):
            a = a.detach()
            keep = self.select(g.detach().mean(dim=(2, 3)))
            selected[name] = keep
            rows, ch = keep.nonzero(as_tuple=True)
            n = rows.shape[0]
            v = torch.zeros(batch, size[0] * size[1], device=x.device)
            if n > 0:
                def masks_of(start: int, stop: int, a=a, rows=rows, ch=ch) -> torch.Tensor:
                    return minmax_masks(a[rows[start:stop], ch[start:stop]], size, eps=_MASK_EPS)

                def make(start: int, stop: int, rows=rows, masks_of=masks_of) -> torch.Tensor:
                    return x[rows[start:stop]] * masks_of(start, stop)[:, None].to(x.dtype)

                s = score_items(self.model, n, make, scorer, rows, batch_size=self.batch_size, device=x.device,
                                progress=self.progress)
                step = max(1, 2**24 // (size[0] * size[1]))
                for start in range(0, n, step):
                    stop = min(n, start + step)
                    m = masks_of(start, stop).flatten(1)
                    w = s[start:stop] / (m.sum(dim=1) + _MASK_EPS)
                    v.index_add_(0, rows[start:stop], w[:, None] * m)
            block_maps[name] = minmax(v.reshape(batch, *size))
            present.append(keep.any(dim=1))
            cost = cost + Cost(forward_passes=n, masks=n, masks_per_block={name: n})
        maps = fuse_blocks(list(block_maps.values()), present, gate=self.gate, temperature=self.temperature)
        return Attribution(
            method=self.name, maps=maps, scores=scores.detach(), targets=bound.indices, cost=cost,
            layer_maps=block_maps,
            settings={"blocks": names, "selected": selected, "gate": self.gate, "temperature": self.temperature,
                      "score": score_label(scorer), "target": bound.description, "seed": self.seed,
                      **self._extra_settings()},
        )

    def _extra_settings(self) -> dict[str, Any]:
        return {}


@register("sise", family="perturbation", passes="1 forward + 1 backward + one masked forward per kept feature map",
          paper="Sattarzadeh et al. 2021, Explaining CNNs through Attribution-Based Input Sampling and "
                "Block-Wise Feature Aggregation (SISE)")
class SISE(_SISEBase):
    """SISE (Sattarzadeh et al. 2021); see the module docstring for the seven steps.
    layer: "auto" (declared or detected blocks) or a list of block names (shallow -> deep).
    mu: keep feature maps with alpha_k > mu * max(alpha) (default 0). `layer_maps` holds
    each block's min-max visualisation map V (input resolution); `settings["selected"]`
    the kept channels (B,K) per block; `cost.masks_per_block` the masks evaluated per block
    (summed over the batch). SISE draws no random numbers; `seed` is recorded only."""

    def __init__(self, model: nn.Module, layer: Any = AUTO, *, mu: float = 0.0, **options: Any):
        super().__init__(model, layer, **options)
        if not 0 <= mu < 1:
            raise ValueError(f"mu must be in [0, 1); got {mu!r}")
        self.mu = float(mu)

    def select(self, alpha: torch.Tensor) -> torch.Tensor:
        return threshold_selection(alpha, self.mu)

    def _extra_settings(self) -> dict[str, Any]:
        return {"mu": self.mu}


@register("adasise", family="perturbation",
          passes="1 forward + 1 backward + one masked forward per kept feature map (about 2/3 of SISE's)",
          paper="Sudhakar et al. 2021, Ada-SISE: Adaptive Semantic Input Sampling for Efficient Explanation of CNNs")
class AdaSISE(_SISEBase):
    """Ada-SISE (Sudhakar et al. 2021): SISE with the adaptive, exact 1-D between-class
    variance split of the positive average gradients in each block (`adaptive_selection`)."""

    def select(self, alpha: torch.Tensor) -> torch.Tensor:
        return adaptive_selection(alpha)
