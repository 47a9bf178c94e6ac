"""Score-CAM and Ablation-CAM: CAM weights measured by perturbing, not by gradients.

Score-CAM (Wang et al. 2020) masks the input with each upsampled, min-max-scaled feature
map; Ablation-CAM (Desai & Ramaswamy 2020) removes one feature map at a time and runs only
the part of the network after the layer (`LayerTail`: a torch.fx split, or full forwards
with a substitution hook when the model cannot be split).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from gradsum.core.attribution import Attribution, Cost
from gradsum.core.batching import BatchSize, Progress
from gradsum.core.layers import AUTO, resolve_layers
from gradsum.core.targets import BoundTarget, Target
from gradsum.core.tokens import Reshape, TokenSpec, spatial_layout
from gradsum.methods.base import Explainer, upsample
from gradsum.methods.cam import (
    Fusion,
    check_fusion,
    forward_with_probe,
    fuse_layer_maps,
    layout_options,
)
from gradsum.methods.perturbation import (
    LayerTail,
    TailMode,
    check_batch_size,
    mask_target,
    minmax_masks,
    score_items,
    score_label,
)
from gradsum.methods.registry import register

__all__ = ["ScoreCAM", "AblationCAM", "ablation_value"]


def _clean_pass(model: nn.Module, x: torch.Tensor, layer: Any, target: Target, method: str, *,
                tokens: TokenSpec = None, reshape: Reshape | None = None,
                ) -> tuple[BoundTarget, torch.Tensor, torch.Tensor, list[str], list[torch.Tensor]]:
    """One forward with the layers captured: (bound target, output, scores, names, activations
    as (B,C,h,w) maps). Named layers need no autograd graph; "auto" needs one to check the
    found layer is intact."""
    layers = resolve_layers(model, layer)
    with torch.set_grad_enabled(layers == AUTO):
        probe, output, names = forward_with_probe(model, x, layers, tokens=tokens, reshape=reshape)
    acts = [probe.activation(n, spatial=True, method=method).detach() for n in names]
    output = output.detach()
    bound = target.bind(output)
    return bound, output, bound(output).detach(), names, acts


@register("scorecam", family="perturbation", passes="1 forward + K masked forwards (K = channels of the layer)",
          paper="Wang et al. 2020, Score-CAM: Score-Weighted Visual Explanations for CNNs")
class ScoreCAM(Explainer):
    """Score-CAM (Wang et al. 2020). Masks H_k = minmax(upsample(A_k)) (eps 1e-8);
    s_k = target(model(x * H_k)); M = ReLU(sum_k w_k A_k).

    Default (pytorch-grad-cam convention): w = softmax over k of s_k, s_k the user's target
    (the logit by default), masks upsampled with align_corners=True (as UpsamplingBilinear2d).
    baseline=True (the paper): w_k = p_k - p_0, p the class probability (raw output for
    regressors) of the masked input and of the baseline input (zeros), no softmax over k.
    Channels whose map is constant give an all-zero mask: their input (zeros) is evaluated
    once per image. `layer` may be a list (maps fused with `fusion`).
    """

    def __init__(self, model: nn.Module, layer: Any = AUTO, *, baseline: bool = False, fusion: Fusion = "mean",
                 align_corners: bool = True, batch_size: BatchSize = "auto", progress: Progress | None = None,
                 seed: int = 0, tokens: TokenSpec = None, reshape: Reshape | None = None):
        super().__init__(model, layer=layer)
        self.tokens, self.reshape, _ = layout_options({"tokens": tokens, "reshape": reshape})
        check_fusion(fusion)
        resolve_layers(model, layer)
        self.baseline, self.fusion, self.align_corners = bool(baseline), fusion, bool(align_corners)
        self.batch_size, self.progress, self.seed = check_batch_size(batch_size), progress, seed

    def _explain(self, x: torch.Tensor, target: Target) -> Attribution:
        bound, output, scores, names, acts = _clean_pass(self.model, x, self.layer, target, "scorecam",
                                                         tokens=self.tokens, reshape=self.reshape)
        scorer = mask_target(bound, output, "probability") if self.baseline else bound
        size = (x.shape[-2], x.shape[-1])
        batch = x.shape[0]
        layer_maps: dict[str, torch.Tensor] = {}
        cost = Cost(forward_passes=batch)
        for name, a in zip(names, acts, strict=True):
            flat = a.flatten(2)
            live = (flat.amax(dim=2) - flat.amin(dim=2)) > 0  # (B,K)
            rows_live, ch_live = live.nonzero(as_tuple=True)
            n_live = rows_live.shape[0]
            need_zero = self.baseline or not bool(live.all())
            rows = torch.cat([rows_live, torch.arange(batch, device=x.device)]) if need_zero else rows_live
            n = rows.shape[0]

            def make(start: int, stop: int, a=a, rows_live=rows_live, ch_live=ch_live, n_live=n_live) -> torch.Tensor:
                out = x.new_zeros((stop - start, *x.shape[1:]))
                end = min(stop, n_live)
                if end > start:
                    r, c = rows_live[start:end], ch_live[start:end]
                    masks = minmax_masks(a[r, c], size, eps=1e-8, align_corners=self.align_corners).to(x.dtype)
                    out[: end - start] = x[r] * masks[:, None]
                return out

            s = score_items(self.model, n, make, scorer, rows, batch_size=self.batch_size, device=x.device,
                            progress=self.progress)
            zero = s[n_live:] if need_zero else s.new_zeros(batch)
            table = zero[:, None].expand(live.shape).clone()
            table[rows_live, ch_live] = s[:n_live]
            weights = table - zero[:, None] if self.baseline else table.softmax(dim=1)
            layer_maps[name] = torch.einsum("bk,bkhw->bhw", weights, a.float()).clamp_min(0)
            cost = cost + Cost(forward_passes=n, masks=n, masks_per_block={name: n})
        maps = fuse_layer_maps([upsample(m, size) for m in layer_maps.values()], self.fusion)
        return Attribution(
            method=self.name, maps=maps, scores=scores, targets=bound.indices, cost=cost, layer_maps=layer_maps,
            settings={"layers": names, "baseline": self.baseline, "align_corners": self.align_corners,
                      "score": score_label(scorer), "target": bound.description, "seed": self.seed,
                      "fusion": self.fusion if len(names) > 1 else None},
        )


def ablation_value(acts: torch.Tensor) -> torch.Tensor:
    """Per image (B,): 0 when the layer's minimum is 0 (ReLU outputs), else min - 1e7
    (pytorch-grad-cam's convention for layers with negative values)."""
    lo = acts.flatten(1).amin(dim=1)
    return torch.where(lo == 0, torch.zeros_like(lo), lo - 1e7)


@register("ablationcam", family="perturbation",
          passes="1 forward + K partial forwards of the layers after the target layer",
          paper="Desai & Ramaswamy 2020, Ablation-CAM: Visual Explanations for Deep CNNs via Gradient-free Localization")
class AblationCAM(Explainer):
    """Ablation-CAM (Desai & Ramaswamy 2020): y_k = target with channel k of A replaced by
    the ablation value (0 if min(A) = 0, else min(A) - 1e7); w_k = (y - y_k) / y;
    M = ReLU(sum_k w_k A_k). Only the network after the layer runs per ablated channel
    (`tail`: "auto" = torch.fx split, falling back to full forwards with a substitution
    hook; "fx" requires the split; "hook" forces full forwards; foreign forward hooks on the
    model's layers keep the split and still fire, see `LayerTail`). Channels that are already
    all equal to the ablation value are skipped (y_k = y exactly). channels=r < 1 ablates
    only the ceil(r K) channels of largest mean activation per image (the others get w = 0).
    """

    def __init__(self, model: nn.Module, layer: Any = AUTO, *, channels: float = 1.0, tail: TailMode = "auto",
                 fusion: Fusion = "mean", batch_size: BatchSize = "auto", progress: Progress | None = None,
                 seed: int = 0, tokens: TokenSpec = None, reshape: Reshape | None = None):
        super().__init__(model, layer=layer)
        self.tokens, self.reshape, _ = layout_options({"tokens": tokens, "reshape": reshape})
        check_fusion(fusion)
        resolve_layers(model, layer)
        if isinstance(channels, bool) or not isinstance(channels, int | float) or not 0 < channels <= 1:
            raise ValueError(f"channels is the ratio of channels to ablate, in (0, 1]; got {channels!r}")
        if tail not in ("auto", "fx", "hook"):
            raise ValueError(f"tail must be 'auto', 'fx' or 'hook'; got {tail!r}")
        self.channels, self.tail, self.fusion = float(channels), tail, fusion
        self.batch_size, self.progress, self.seed = check_batch_size(batch_size), progress, seed
        self._splits: dict[str, Any] = {}

    def _explain(self, x: torch.Tensor, target: Target) -> Attribution:
        bound, output, scores, names, _ = _clean_pass(self.model, x, self.layer, target, "ablationcam",
                                                      tokens=self.tokens, reshape=self.reshape)
        modules = dict(self.model.named_modules())
        size = (x.shape[-2], x.shape[-1])
        batch = x.shape[0]
        y = scores.float()
        y_safe = torch.where(y.abs() < 1e-12, torch.full_like(y, 1e-12), y)
        layer_maps: dict[str, torch.Tensor] = {}
        paths: dict[str, str] = {}
        cost = Cost(forward_passes=batch)
        for name in names:
            tail = LayerTail(self.model, name, modules[name], x, mode=self.tail, split_cache=self._splits,
                             output=output)
            paths[name] = tail.path
            native = tail.activation  # the layer's own layout; a is its (B,K,h,w) map
            layout = spatial_layout(self.model, name, native, module=modules[name], input_size=size,
                                    tokens=self.tokens, reshape=self.reshape)
            a = layout.to_spatial(native)
            k = a.shape[1]
            value = ablation_value(a)  # (B,)
            flat = a.flatten(2)
            candidates = ~((flat == value[:, None, None]).all(dim=2))  # (B,K)
            if self.channels < 1:
                keep = max(1, math.ceil(self.channels * k))
                priority = flat.float().mean(dim=2).masked_fill(~candidates, float("-inf"))
                top = priority.topk(keep, dim=1).indices
                chosen = torch.zeros_like(candidates).scatter_(1, top, True)
                candidates = candidates & chosen
            rows, ch = candidates.nonzero(as_tuple=True)
            n = rows.shape[0]
            ablated = y[:, None].expand(batch, k).clone()
            if n > 0:
                def make(start: int, stop: int, a=a, rows=rows, ch=ch, value=value, layout=layout,
                         native=native) -> torch.Tensor:
                    r, c = rows[start:stop], ch[start:stop]
                    acts = a[r]  # advanced indexing copies
                    acts[torch.arange(r.shape[0], device=a.device), c] = value[r][:, None, None].to(a.dtype)
                    return layout.from_spatial(acts, native[r])

                ablated[rows, ch] = tail.scores(n, make, bound, rows, batch_size=self.batch_size,
                                                progress=self.progress)
            weights = (y[:, None] - ablated) / y_safe[:, None]
            layer_maps[name] = torch.einsum("bk,bkhw->bhw", weights, a.float()).clamp_min(0)
            cost = cost + Cost(forward_passes=batch + n, masks=n, masks_per_block={name: n})
        maps = fuse_layer_maps([upsample(m, size) for m in layer_maps.values()], self.fusion)
        return Attribution(
            method=self.name, maps=maps, scores=scores, targets=bound.indices, cost=cost, layer_maps=layer_maps,
            settings={"layers": names, "channels": self.channels, "tail": paths, "score": score_label(bound),
                      "target": bound.description, "seed": self.seed,
                      "fusion": self.fusion if len(names) > 1 else None},
        )
