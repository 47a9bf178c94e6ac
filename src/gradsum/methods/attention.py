"""The attention family: maps read from a vision transformer's attention probabilities.

Every method reads the post-softmax attention A_l (B, heads, N, N) of each block l through
`gradsum.core.attention.attention_probabilities` (the fused kernels are replaced by their
eager equivalent during the call only). Tokens are laid out by `gradsum.core.tokens`: the first
`prefix` tokens (class, distillation, register tokens) are dropped, the rest is the (h, w)
patch grid; maps are upsampled bilinearly to the input size.

- ``attention``: the last block's attention from the class token to the patches,
  heads fused by ``head_fusion``.
- ``attention-rollout`` (Abnar & Zuidema 2020): Â_l = (A_l + I)/2, row-normalised,
  R = Â_L ... Â_s; the class token's row. Class-agnostic.
- ``gae`` (Chefer et al. 2021b): R = I; R <- R + mean_h[(dy/dA_l ⊙ A_l)^+] R; the class
  token's row. Class-specific.
- ``legrad`` (Bousselham et al. 2024): mean over blocks of mean_{h,q} ReLU(ds^l/dA_l), s^l the
  target read from the tokens after block l through the model's final norm and head.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from gradsum.core.attention import attention_probabilities
from gradsum.core.attribution import Attribution, Cost
from gradsum.core.targets import BoundTarget, Target
from gradsum.core.tokens import parse_tokens, token_grid
from gradsum.methods._args import check_choice, check_flag, check_int, check_number
from gradsum.methods.base import Explainer, upsample, zero_gradient_images
from gradsum.methods.registry import register

__all__ = [
    "AttentionExplainer",
    "RawAttention",
    "AttentionRollout",
    "GAE",
    "LeGrad",
    "fuse_heads",
    "rollout",
    "gae_relevance",
    "legrad_relevance",
    "transformer_blocks",
    "score_projection_for",
]

HeadFusion = Literal["mean", "max", "min"]
Pool = Literal["mean", "model"]
_HEAD_FUSIONS = ("mean", "max", "min")
_POOLS = ("mean", "model")


# --- the formulas -------------------------------------------------------------------------------

def fuse_heads(a: torch.Tensor, how: HeadFusion = "mean") -> torch.Tensor:
    """(B, heads, N, N) -> (B, N, N): mean, max or min over the heads."""
    if how == "mean":
        return a.mean(dim=1)
    if how == "max":
        return a.amax(dim=1)
    if how == "min":
        return a.amin(dim=1)
    raise ValueError(f"unknown head_fusion {how!r}; use 'mean', 'max' or 'min'")


def _zero_setting(gradients: list[torch.Tensor]) -> dict[str, list[int]]:
    """{"zero_gradients": [...]} when some image's gradients are zero at every block, else {}."""
    images = zero_gradient_images(gradients)
    return {"zero_gradients": images} if images else {}


def _discard_lowest(fused: torch.Tensor, ratio: float) -> torch.Tensor:
    """Zero the int(N*N*ratio) smallest entries of each image's (N, N) matrix, never entry
    [0, 0] (the class token's attention to itself) -- the semantics of the widely used rollout
    implementation (jacobgil/vit-explain), per image."""
    flat = fused.flatten(1)
    k = int(flat.shape[1] * ratio)
    if k == 0:
        return fused
    lowest = flat.topk(k, dim=1, largest=False).indices
    kept = flat[:, :1]
    flat = flat.scatter(1, lowest, 0.0)
    flat = torch.cat([kept, flat[:, 1:]], dim=1)
    return flat.reshape(fused.shape)


def rollout(attentions: list[torch.Tensor], head_fusion: HeadFusion = "mean",
            discard_ratio: float = 0.0) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020) of blocks in order: (B, N, N) product
    Â_L ... Â_1 with Â = (fuse(A) + I)/2 divided by its row sums (the /2 cancels in the row
    normalisation and is not computed); fuse(A) first loses its `discard_ratio` lowest entries
    (see `_discard_lowest`). Few, whole-stack operations: on a shared CPU each parallel
    operation costs a scheduling slot, whatever its size."""
    if not attentions:
        raise ValueError("rollout needs at least one attention map")
    fused = [fuse_heads(a, head_fusion) for a in attentions]
    if discard_ratio > 0:
        fused = [_discard_lowest(f, discard_ratio) for f in fused]
    steps = torch.stack(fused)  # (L, B, N, N)
    steps.diagonal(dim1=-2, dim2=-1).add_(1.0)
    steps = steps / steps.sum(dim=-1, keepdim=True)
    result = steps[0]
    for step in steps[1:]:
        result = step @ result
    return result


def gae_relevance(attentions: list[torch.Tensor], gradients: list[torch.Tensor]) -> torch.Tensor:
    """Generic Attention-model Explainability (Chefer et al. 2021b, eq. 5-6) for self-attention:
    R = I; for each block R <- R + mean_h[(dy/dA ⊙ A)^+] R. Returns R (B, N, N)."""
    relevance = None
    for a, g in zip(attentions, gradients, strict=True):
        cam = (g * a).clamp_(min=0).mean(dim=1)
        if relevance is None:
            relevance = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device).expand_as(cam)
        relevance = torch.baddbmm(relevance, cam, relevance)  # R + cam @ R
    if relevance is None:
        raise ValueError("gae needs at least one attention map")
    return relevance


def legrad_relevance(gradients: list[torch.Tensor]) -> torch.Tensor:
    """LeGrad (Bousselham et al. 2024): mean over blocks of mean over heads and query tokens of
    ReLU(ds^l/dA_l), each gradient (B, heads, N, N). Returns (B, N), one value per key token."""
    if not gradients:
        raise ValueError("legrad needs at least one block")
    return torch.stack([g.clamp_min(0).mean(dim=(1, 2)) for g in gradients]).mean(dim=0)


# --- the model's parts --------------------------------------------------------------------------

def _is_attention(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) or hasattr(module, "fused_attn") or (
        "attention" in type(module).__name__.lower()
    )


def transformer_blocks(model: nn.Module) -> tuple[str, list[nn.Module]]:
    """(name, blocks) of the model's transformer blocks: the longest ModuleList/Sequential
    whose every entry holds an attention module (torchvision ``encoder.layers``, timm and
    gradsum's vit-tiny ``blocks``). ValueError when there is none."""
    best: tuple[str, list[nn.Module]] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList | nn.Sequential) and len(module) > 0:
            children = list(module)
            longer = best is None or len(children) > len(best[1])
            if longer and all(any(_is_attention(m) for m in child.modules()) for child in children):
                best = (name, children)
    if best is None:
        raise ValueError(
            f"legrad needs the transformer blocks of {type(model).__name__} (a ModuleList/Sequential whose "
            "every entry holds an attention module, like timm's 'blocks' or torchvision's 'encoder.layers'); "
            "none was found"
        )
    return best


def _module_or_identity(module: nn.Module, name: str) -> nn.Module:
    found = getattr(module, name, None)
    return found if isinstance(found, nn.Module) else nn.Identity()


def score_projection_for(model: nn.Module, pool: Pool = "mean") -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The map from the tokens after a block (B, N, C) to the model's outputs, made of the
    model's final norm and head; None for an unknown structure.

    pool="mean" (LeGrad's convention, as in the authors' code and torchcam): the norm of the
    mean of all tokens, then the head -- torchvision: heads(encoder.ln(t.mean(1))); timm-style
    (blocks, norm, fc_norm, head[, head_dist]): head(fc_norm(norm(t.mean(1)))).
    pool="model": the model's own readout -- torchvision: heads(encoder.ln(t)[:, 0]); timm-style:
    forward_head(norm(t)) (timm's global_pool; the class token for vit-tiny)."""
    for module in model.modules():
        encoder, heads = getattr(module, "encoder", None), getattr(module, "heads", None)
        if isinstance(heads, nn.Module) and isinstance(getattr(encoder, "ln", None), nn.Module):
            ln = encoder.ln
            if pool == "mean":
                return lambda t, ln=ln, heads=heads: heads(ln(t.mean(dim=1)))
            return lambda t, ln=ln, heads=heads: heads(ln(t)[:, 0])
        head = getattr(module, "head", None)
        if isinstance(getattr(module, "blocks", None), nn.Module) and isinstance(head, nn.Module):
            norm = _module_or_identity(module, "norm")
            if pool == "model":
                forward_head = getattr(module, "forward_head", None)
                if forward_head is None:
                    return None
                return lambda t, norm=norm, fh=forward_head: fh(norm(t))
            fc_norm = _module_or_identity(module, "fc_norm")
            head_dist = getattr(module, "head_dist", None)

            def mean_readout(t: torch.Tensor, norm=norm, fc_norm=fc_norm, head=head, head_dist=head_dist):
                pooled = fc_norm(norm(t.mean(dim=1)))
                if isinstance(head_dist, nn.Module):  # DeiT distilled: the mean of both heads
                    return (head(pooled) + head_dist(pooled)) / 2
                return head(pooled)

            return mean_readout
    return None


def _has_class_token(model: nn.Module) -> bool:
    """False when the model declares that it has no class token (timm class_token=False sets
    cls_token = None); True otherwise (the first prefix token is the class token)."""
    declared_none = False
    for module in model.modules():
        for attr in ("cls_token", "class_token"):
            if hasattr(module, attr):
                if isinstance(getattr(module, attr), torch.Tensor):
                    return True
                declared_none = True
    return not declared_none


# --- the explainers -----------------------------------------------------------------------------

def _reject_unknown(name: str, unknown: dict[str, Any], known: tuple[str, ...]) -> None:
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise TypeError(f"{name} got unknown option(s) {', '.join(hints)}; it takes {', '.join(known)}")


def _self_attentions(captured: list[torch.Tensor], batch: int, model: nn.Module, method: str) -> list[torch.Tensor]:
    """The captured self-attention maps (B, heads, N, N) over the whole token sequence."""
    selected = [a for a in captured if a.ndim == 4 and a.shape[-1] == a.shape[-2]]
    if not selected:
        raise ValueError(
            f"{method}: no self-attention was found in the forward pass of {type(model).__name__} "
            f"({len(captured)} other attention call(s)); attention methods need a ViT/DeiT-style transformer whose "
            "attention runs through nn.MultiheadAttention or F.scaled_dot_product_attention"
        )
    n = selected[-1].shape[-1]
    for a in selected:
        if a.shape[0] != batch or a.shape[-1] != n:
            raise ValueError(
                f"{method}: an attention of shape {tuple(a.shape)} does not span the {n} tokens of a batch of "
                f"{batch} images (windowed attention, as in Swin?); attention methods need global self-attention "
                "over all tokens (ViT/DeiT)"
            )
    return selected


class AttentionExplainer(Explainer):
    """Base of the attention family. Options common to all: ``tokens`` (override of the prefix
    tokens, e.g. "cls+4"; default: found from the model). `layer` is not used (the methods read
    every block's attention); it is accepted so that ``gs.explain`` can pass one layer to all."""

    option_names: tuple[str, ...] = ("tokens",)
    needs_class_token: bool = True

    def __init__(self, model: nn.Module, layer: Any = None, *, tokens: int | str | None = None, **options: Any):
        _reject_unknown(self.name, options, self.option_names)
        super().__init__(model, layer=layer)
        parse_tokens(tokens)
        self.tokens = tokens
        if self.needs_class_token and tokens is None and not _has_class_token(model):
            raise ValueError(self._no_class_token("no class token"))

    def _no_class_token(self, what: str) -> str:
        return (f"{self.name} reads the class token's row of the attention, but {type(self.model).__name__} has "
                f"{what}; use legrad, which needs none, or tokens='cls' if the first token is a class token")

    def _start(self, start_block: Any) -> int:
        return check_int(start_block, "start_block", minimum=0)

    def _used(self, attentions: list[Any], start_block: int) -> list[Any]:
        if start_block >= len(attentions):
            raise ValueError(
                f"{self.name}: start_block={start_block} but {type(self.model).__name__} has {len(attentions)} "
                f"attention block(s); use start_block in [0, {len(attentions) - 1}]"
            )
        return attentions[start_block:]

    def _layout(self, n_tokens: int, x: torch.Tensor) -> tuple[int, tuple[int, int]]:
        try:
            prefix, grid = token_grid(self.model, n_tokens, (x.shape[-2], x.shape[-1]), self.tokens)
        except ValueError as error:
            raise ValueError(f"{self.name}: the attention of {type(self.model).__name__} spans {n_tokens} tokens; "
                             f"{error}") from error
        if self.needs_class_token and prefix < 1:
            raise ValueError(self._no_class_token("no prefix token"))
        return prefix, grid

    def _result(self, token_map: torch.Tensor, x: torch.Tensor, layout: tuple[int, tuple[int, int]],
                bound: BoundTarget, scores: torch.Tensor, cost: Cost, settings: dict[str, Any]) -> Attribution:
        """(B, N) relevance per key token -> Attribution with the patch grid upsampled."""
        prefix, (h, w) = layout
        patches = token_map[:, prefix:].reshape(token_map.shape[0], h, w).detach()
        return Attribution(
            method=self.name,
            maps=upsample(patches, (x.shape[-2], x.shape[-1])),
            scores=scores.detach(),
            targets=bound.indices,
            cost=cost,
            layer_maps={"attention": patches},
            settings={"target": bound.description, "prefix_tokens": prefix, "grid": (h, w),
                      "tokens": self.tokens, **settings},
        )


@register("attention", family="attention", passes="1 forward",
          paper="raw attention of the last block (Dosovitskiy et al. 2021; Abnar & Zuidema 2020)")
class RawAttention(AttentionExplainer):
    """The last block's attention from the class token to the patch tokens, heads fused by
    ``head_fusion`` ("mean", "max" or "min"). Class-agnostic: the target only sets `scores`."""

    option_names = ("tokens", "head_fusion")

    def __init__(self, model: nn.Module, layer: Any = None, *, head_fusion: HeadFusion = "mean",
                 tokens: int | str | None = None, **options: Any):
        super().__init__(model, layer, tokens=tokens, **options)
        self.head_fusion = check_choice(head_fusion, "head_fusion", _HEAD_FUSIONS)

    def _explain(self, x: torch.Tensor, target: Target) -> Attribution:
        with torch.no_grad(), attention_probabilities(self.model) as captured:
            output = self.model(x)
        attentions = _self_attentions(captured, x.shape[0], self.model, self.name)
        layout = self._layout(attentions[-1].shape[-1], x)
        bound = target.bind(output)
        row = fuse_heads(attentions[-1], self.head_fusion)[:, 0, :]  # type: ignore[arg-type]
        return self._result(row, x, layout, bound, bound(output), Cost(forward_passes=x.shape[0]),
                            {"head_fusion": self.head_fusion, "blocks": len(attentions)})


@register("attention-rollout", family="attention", passes="1 forward",
          paper="Abnar & Zuidema 2020, Quantifying Attention Flow in Transformers")
class AttentionRollout(AttentionExplainer):
    """Attention rollout (Abnar & Zuidema 2020): per block the heads are fused by
    ``head_fusion``; with ``discard_ratio`` r > 0 the int(N*N*r) lowest entries of each image's
    fused N x N matrix are set to 0 (never the class token's attention to itself), as in the
    widely used implementation (jacobgil/vit-explain); then Â = (A + I)/2, each row divided by
    its sum, and R = Â_L ... Â_s over the blocks from ``start_block``. The map is the class
    token's row of R over the patch tokens. Class-agnostic; one forward, no backward."""

    option_names = ("tokens", "head_fusion", "discard_ratio", "start_block")

    def __init__(self, model: nn.Module, layer: Any = None, *, head_fusion: HeadFusion = "mean",
                 discard_ratio: float = 0.0, start_block: int = 0, tokens: int | str | None = None,
                 **options: Any):
        super().__init__(model, layer, tokens=tokens, **options)
        self.head_fusion = check_choice(head_fusion, "head_fusion", _HEAD_FUSIONS)
        self.discard_ratio = check_number(discard_ratio, "discard_ratio", low=0, high=1, high_open=True,
                                          meaning="the fraction of the lowest attentions dropped")
        self.start_block = self._start(start_block)

    def _explain(self, x: torch.Tensor, target: Target) -> Attribution:
        with torch.no_grad(), attention_probabilities(self.model) as captured:
            output = self.model(x)
        attentions = _self_attentions(captured, x.shape[0], self.model, self.name)
        layout = self._layout(attentions[-1].shape[-1], x)
        bound = target.bind(output)
        with torch.no_grad():
            used = self._used(attentions, self.start_block)
            row = rollout(used, self.head_fusion, self.discard_ratio)[:, 0, :]  # type: ignore[arg-type]
        return self._result(row, x, layout, bound, bound(output), Cost(forward_passes=x.shape[0]),
                            {"head_fusion": self.head_fusion, "discard_ratio": self.discard_ratio,
                             "start_block": self.start_block, "blocks": len(used)})


@register("gae", family="attention", passes="1 forward + 1 backward",
          paper="Chefer et al. 2021, Generic Attention-model Explainability for Interpreting Bi-Modal and "
                "Encoder-Decoder Transformers")
class GAE(AttentionExplainer):
    """Generic Attention-model Explainability (Chefer et al. 2021b) for a ViT: R = I, then for
    each block from ``start_block`` R <- R + mean_h[(dy/dA ⊙ A)^+] R, with dy/dA the gradient of
    the target with respect to the block's attention probabilities (all from one backward).
    The map is the class token's row of R over the patch tokens. Class-specific."""

    option_names = ("tokens", "start_block")

    def __init__(self, model: nn.Module, layer: Any = None, *, start_block: int = 0,
                 tokens: int | str | None = None, **options: Any):
        super().__init__(model, layer, tokens=tokens, **options)
        self.start_block = self._start(start_block)

    def _explain(self, x: torch.Tensor, target: Target) -> Attribution:
        with attention_probabilities(self.model) as captured:
            output = self.model(x)
        attentions = _self_attentions(captured, x.shape[0], self.model, self.name)
        layout = self._layout(attentions[-1].shape[-1], x)
        bound = target.bind(output)
        scores = bound(output)
        used = self._used(attentions, self.start_block)
        gradients = torch.autograd.grad(scores.sum(), used, allow_unused=True)
        batch = x.shape[0]
        with torch.no_grad():
            gradients = [torch.zeros_like(a) if g is None else g for a, g in zip(used, gradients, strict=True)]
            row = gae_relevance([a.detach() for a in used], gradients)[:, 0, :]
        return self._result(row, x, layout, bound, scores, Cost(forward_passes=batch, backward_passes=batch),
                            {"start_block": self.start_block, "blocks": len(used), **_zero_setting(gradients)})


@register("legrad", family="attention", passes="1 forward + 1 backward (all blocks at once)",
          paper="Bousselham et al. 2024, LeGrad: An Explainability Method for Vision Transformers via Feature "
                "Formation Sensitivity")
class LeGrad(AttentionExplainer):
    """LeGrad (Bousselham et al. 2024, arXiv 2404.03214): for each block l from
    ``start_block``, s^l = target(projection(tokens after block l)) and
    map_l = mean over heads and query tokens of ReLU(ds^l/dA_l), prefix keys dropped; the map
    is the mean of map_l over the blocks.

    projection: ``score_projection(tokens) -> outputs`` when given, else the model's final norm
    and head (`score_projection_for`; ``pool="mean"``: norm of the mean of all tokens, LeGrad's
    and torchcam's convention; ``pool="model"``: the model's own readout, the class token).

    One backward for all blocks (``one_pass=True``): during the forward each block's input is
    detached (its values unchanged), so the only path from A_l to sum_l s^l runs through block
    l and d(sum_m s^m)/dA_l = ds^l/dA_l exactly. ``one_pass=False`` does one backward per block
    on the undetached graph (same numbers, for checking)."""

    option_names = ("tokens", "start_block", "score_projection", "pool", "one_pass")
    needs_class_token = False

    def __init__(self, model: nn.Module, layer: Any = None, *, start_block: int = 0,
                 score_projection: Callable[[torch.Tensor], torch.Tensor] | None = None, pool: Pool = "mean",
                 one_pass: bool = True, tokens: int | str | None = None, **options: Any):
        super().__init__(model, layer, tokens=tokens, **options)
        self.start_block = self._start(start_block)
        if score_projection is not None and not callable(score_projection):
            raise TypeError(
                f"score_projection must be a callable tokens (B,N,C) -> outputs; got {type(score_projection).__name__}"
            )
        self.pool = check_choice(pool, "pool", _POOLS)
        self.one_pass = check_flag(one_pass, "one_pass")
        self.projection_given = score_projection is not None
        self.projection = score_projection or score_projection_for(model, self.pool)  # type: ignore[arg-type]
        if self.projection is None:
            raise ValueError(
                f"legrad needs to read the target from the tokens after each block, but gradsum does not know the "
                f"final norm and head of {type(model).__name__} (it knows torchvision VisionTransformer and timm-style "
                "models with blocks, norm and head); pass score_projection=lambda tokens: <the model's outputs>"
            )
        self.blocks_name, self.blocks = transformer_blocks(model)

    def _explain(self, x: torch.Tensor, target: Target) -> Attribution:
        starts: list[int] = []
        ends: list[int] = []
        tokens: list[torch.Tensor] = []
        handles = []
        capture = attention_probabilities(self.model)
        captured = capture.captured

        def before(module: nn.Module, args: tuple) -> tuple | None:
            starts.append(len(captured))
            if self.one_pass and args and isinstance(args[0], torch.Tensor):
                return (args[0].detach(), *args[1:])
            return None

        def after(module: nn.Module, args: tuple, output: Any) -> None:
            ends.append(len(captured))
            tokens.append(output)

        try:
            for block in self.blocks:
                handles.append(block.register_forward_pre_hook(before))
                handles.append(block.register_forward_hook(after))
            with capture:
                output = self.model(x)
        finally:
            for handle in handles:
                handle.remove()
        attentions = self._block_attentions(captured, starts, ends, tokens, x.shape[0])
        layout = self._layout(attentions[-1].shape[-1], x)
        bound = target.bind(output)
        scores = bound(output)
        used = self._used(list(range(len(attentions))), self.start_block)
        block_scores = [self._block_score(bound, tokens[i], output) for i in used]
        maps = [attentions[i] for i in used]
        batch = x.shape[0]
        if self.one_pass:
            gradients = list(torch.autograd.grad(torch.stack(block_scores).sum(), maps, allow_unused=True))
            backward = batch
        else:
            gradients = [torch.autograd.grad(s.sum(), a, retain_graph=True, allow_unused=True)[0]
                         for s, a in zip(block_scores, maps, strict=True)]
            backward = batch * len(maps)
        with torch.no_grad():
            gradients = [torch.zeros_like(a) if g is None else g for a, g in zip(maps, gradients, strict=True)]
            relevance = legrad_relevance(gradients)
            zero = _zero_setting(gradients)
        return self._result(relevance, x, layout, bound, scores, Cost(forward_passes=batch, backward_passes=backward),
                            {"start_block": self.start_block, "blocks": len(maps), "pool": self.pool,
                             "score_projection": "given" if self.projection_given else "model",
                             "one_pass": self.one_pass, "blocks_module": self.blocks_name, **zero})

    def _block_attentions(self, captured: list[torch.Tensor], starts: list[int], ends: list[int],
                          tokens: list[Any], batch: int) -> list[torch.Tensor]:
        """The one self-attention map of each block, in block order."""
        if len(starts) != len(self.blocks) or len(ends) != len(self.blocks):
            raise ValueError(
                f"legrad: the {len(self.blocks)} blocks of '{self.blocks_name}' were called {len(ends)} time(s) in "
                "one forward; each must run exactly once"
            )
        out = []
        for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
            inside = _self_attentions(captured[start:end], batch, self.model, self.name) if end > start else []
            if len(inside) != 1:
                raise ValueError(
                    f"legrad: block '{self.blocks_name}.{i}' computed {len(inside)} self-attention maps; "
                    "it needs exactly one per block"
                )
            if not isinstance(tokens[i], torch.Tensor) or tokens[i].ndim != 3 or tokens[i].shape[1] != inside[0].shape[-1]:
                got = tuple(tokens[i].shape) if isinstance(tokens[i], torch.Tensor) else type(tokens[i]).__name__
                raise ValueError(
                    f"legrad: block '{self.blocks_name}.{i}' returns {got}; expected tokens (B, {inside[0].shape[-1]}, C)"
                )
            out.append(inside[0])
        return out

    def _block_score(self, bound: BoundTarget, block_tokens: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        projected = self.projection(block_tokens)  # type: ignore[misc]
        if not isinstance(projected, torch.Tensor) or projected.shape != output.shape:
            got = tuple(projected.shape) if isinstance(projected, torch.Tensor) else type(projected).__name__
            raise ValueError(
                f"legrad: the score projection maps the tokens {tuple(block_tokens.shape)} to {got}, but the model's "
                f"output is {tuple(output.shape)}; give score_projection=<callable tokens -> outputs of that shape>"
            )
        return bound(projected)
