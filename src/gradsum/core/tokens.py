"""Layer outputs as spatial maps: the one adapter between what a layer returns and the
(B,C,h,w) map every CAM-family method reads, and back.

Three layouts exist in the models gradsum explains:

- channels-first maps (B,C,h,w): convolutional networks; used as they are;
- channels-last maps (B,H,W,C): Swin stages, ConvNeXt-style blocks written with LayerNorm and
  Linear over the last dimension; read as ``t.permute(0, 3, 1, 2)``;
- token sequences (B,N,C): ViT/DeiT blocks. The first ``prefix`` tokens (class,
  distillation and register tokens) carry no position and are dropped; the remaining
  N - prefix tokens are the patch grid (h, w), row-major, as the patch embedding flattened it.

The layout is found from the model, never guessed from a shape alone: the number of prefix
tokens from the model's attributes (torchvision ``class_token``, timm ``num_prefix_tokens``,
``cls_token``/``dist_token``/``reg_token`` parameters); the grid from the patch embedding's
stride and the actual input size; channels-last from the modules that produce the output (a
LayerNorm or Linear over the last dimension, a trailing ``Permute``) checked against the
input's geometry. Anything else takes an explicit override: ``tokens="cls+4"`` (or a number of
prefix tokens) or ``reshape=callable`` mapping the output to (B,C,h,w).

    layout = spatial_layout(model, "blocks.11.norm1", output, input_size=(224, 224))
    maps = layout.to_spatial(output)          # (B,C,14,14)
    edited = layout.from_spatial(maps, output)  # back to (B,197,C), prefix tokens kept
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

__all__ = [
    "Layout",
    "TokenSpec",
    "Reshape",
    "prefix_tokens",
    "parse_tokens",
    "patch_stride",
    "token_grid",
    "spatial_layout",
    "is_attention_module",
    "LayoutError",
]

TokenSpec = int | str | None
Reshape = Callable[[torch.Tensor], torch.Tensor]
Kind = Literal["channels_first", "channels_last", "tokens", "custom"]

#: parameters that hold prefix tokens, (1, k, C) each
_PREFIX_PARAMETERS = ("cls_token", "class_token", "dist_token", "reg_token", "register_tokens")
#: names the override accepts in "cls+dist+4"
_PREFIX_NAMES = {"cls": 1, "class": 1, "dist": 1, "distillation": 1}
_OVERRIDE_HINT = "tokens='cls' (or 'cls+dist', 'cls+4' for 4 register tokens, 'none', or a number) or reshape=<callable>"


class LayoutError(ValueError):
    """A layer output whose spatial layout cannot be determined."""


@dataclass(frozen=True)
class Layout:
    """How one layer's output maps to (B,C,h,w): `kind`, the number of prefix tokens and
    the grid (tokens), or a user callable (custom)."""

    kind: Kind
    grid: tuple[int, int]
    prefix: int = 0
    reshape: Reshape | None = None

    def describe(self) -> str:
        h, w = self.grid
        if self.kind == "tokens":
            return f"tokens: {self.prefix} prefix + {h}x{w} patches"
        if self.kind == "channels_last":
            return f"channels-last {h}x{w}"
        if self.kind == "custom":
            return f"reshape= {h}x{w}"
        return f"{h}x{w}"

    def to_spatial(self, t: torch.Tensor) -> torch.Tensor:
        """The layer output (or a gradient with respect to it) as (B,C,h,w). A pure
        selection/permutation, so a gradient maps exactly as its activation does."""
        if self.kind == "channels_first":
            return t
        if self.kind == "channels_last":
            return t.permute(0, 3, 1, 2)
        if self.kind == "tokens":
            b, _, c = t.shape
            return t[:, self.prefix:, :].transpose(1, 2).reshape(b, c, *self.grid)
        out = self.reshape(t)  # type: ignore[misc]
        if not isinstance(out, torch.Tensor) or out.ndim != 4:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise LayoutError(f"reshape= must return a (B,C,h,w) tensor; it returned {got}")
        return out

    def from_spatial(self, maps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Put (n,C,h,w) maps back in the layer's own layout; the prefix tokens are taken from
        `like` (the original output rows, (n,N,C)). Inverse of `to_spatial`."""
        if self.kind == "channels_first":
            return maps
        if self.kind == "channels_last":
            return maps.permute(0, 2, 3, 1)
        if self.kind == "tokens":
            return torch.cat([like[:, : self.prefix, :], maps.flatten(2).transpose(1, 2)], dim=1)
        raise LayoutError(
            "this method writes edited maps back into the layer, which a reshape= callable cannot undo; "
            "use tokens= instead of reshape=, or tail='hook'"
        )


def prefix_tokens(model: nn.Module) -> int | None:
    """Prefix tokens (class, distillation, register) of a token model, found from its
    structure — timm's ``num_prefix_tokens``, else the sizes of its ``cls_token`` /
    ``class_token`` / ``dist_token`` / ``reg_token`` / ``register_tokens`` parameters (each
    (1,k,C)) — through any wrapper; None when the model has none of them."""
    for module in model.modules():
        n = getattr(module, "num_prefix_tokens", None)
        if isinstance(n, int) and not isinstance(n, bool):
            return n
    count = None
    for module in model.modules():
        for name, p in module._parameters.items():
            if name in _PREFIX_PARAMETERS and p is not None and p.ndim == 3:
                count = (count or 0) + int(p.shape[1])
        if count is not None:
            return count
    return None


def parse_tokens(tokens: TokenSpec) -> int | None:
    """The number of prefix tokens an override names: an int, 'none', 'cls', 'cls+dist',
    'cls+4' (class token + 4 registers); None for no override."""
    if tokens is None:
        return None
    if isinstance(tokens, bool) or not isinstance(tokens, int | str):
        raise ValueError(f"tokens must be a number of prefix tokens or a string like 'cls+4'; got {tokens!r}")
    if isinstance(tokens, int):
        if tokens < 0:
            raise ValueError(f"tokens (the number of prefix tokens) must be >= 0; got {tokens}")
        return tokens
    text = tokens.strip().lower()
    if text in ("none", "0", ""):
        return 0
    total = 0
    for part in text.split("+"):
        part = part.strip()
        if part in _PREFIX_NAMES:
            total += _PREFIX_NAMES[part]
        elif part.isdigit():
            total += int(part)
        else:
            raise ValueError(
                f"tokens={tokens!r}: unknown part {part!r}; write the prefix tokens as 'cls', 'cls+dist', "
                "'cls+4' (4 register tokens), 'none' or a number"
            )
    return total


def patch_stride(model: nn.Module) -> int | None:
    """The stride of the patch embedding: the first Conv2d whose kernel equals its stride (> 1)."""
    for module in model.modules():
        if (isinstance(module, nn.Conv2d) and module.kernel_size == module.stride and module.stride[0] > 1
                and module.stride[0] == module.stride[1]):
            return int(module.stride[0])
    return None


def _grids(n: int, size: tuple[int, int], stride: int | None) -> list[tuple[int, int]]:
    """Grids of n cells for an image of `size`. With a patch embedding of stride s: the grid at
    s, or at a multiple of s (tokens merged after the embedding), floor or ceil division.
    Without one: a factorisation of n with equal strides along both axes."""
    H, W = size
    found: list[tuple[int, int]] = []
    if stride:
        for step in (stride * k for k in range(1, 9)):
            for h in (H // step, math.ceil(H / step)):
                for w in (W // step, math.ceil(W / step)):
                    if h * w == n and (h, w) not in found:
                        found.append((h, w))
            if found:
                return found
        return found
    for h in range(1, n + 1):
        if n % h == 0:
            w = n // h
            if h <= H and w <= W and _consistent((h, w), size):
                found.append((h, w))
    found.sort(key=lambda g: abs(math.log((H / g[0]) / (W / g[1]))))
    return found


def _consistent(grid: tuple[int, int], size: tuple[int, int], tolerance: float = 1.5) -> bool:
    """Whether a grid could be the image seen at one stride along both axes."""
    (h, w), (H, W) = grid, size
    if h < 1 or w < 1 or h > H or w > W:
        return False
    sh, sw = H / h, W / w
    return max(sh, sw) / min(sh, sw) <= tolerance


def token_grid(model: nn.Module, n_tokens: int, input_size: tuple[int, int], tokens: TokenSpec = None,
               *, what: str = "the layer") -> tuple[int, tuple[int, int]]:
    """(prefix, (h, w)) for a (B, n_tokens, C) sequence of `model` on images of `input_size`.
    The prefix comes from `tokens` when given, else from the model (`prefix_tokens`, 0 when
    it has none); the grid from the patch stride. LayoutError naming the override otherwise."""
    override = parse_tokens(tokens)
    prefix = override if override is not None else (prefix_tokens(model) or 0)
    n = n_tokens - prefix
    grids = _grids(n, input_size, patch_stride(model)) if n > 0 else []
    if not grids:
        source = "as given by tokens=" if override is not None else "found in the model"
        raise LayoutError(
            f"cannot lay out the {n_tokens} tokens of {what} as a patch grid for a "
            f"{input_size[0]}x{input_size[1]} input with {prefix} prefix token(s) ({source}); "
            f"tell gradsum the layout with {_OVERRIDE_HINT}"
        )
    return prefix, grids[0]


# --- channels-first or channels-last -------------------------------------------------------------

def _permute_dims(module: nn.Module) -> tuple[int, ...] | None:
    dims = getattr(module, "dims", None)
    if type(module).__name__ == "Permute" and isinstance(dims, list | tuple) and len(dims) == 4:
        return tuple(int(d) for d in dims)
    return None


def _structural_layout(module: nn.Module, shape: tuple[int, ...]) -> str | None:
    """'first' / 'last' from the last module inside `module` (itself included) that fixes the
    channel axis of a 4-D output: Conv2d / BatchNorm2d / GroupNorm / LayerNorm2d -> first;
    LayerNorm / Linear over the last dim -> last; a Permute(0,3,1,2) -> first, (0,2,3,1) -> last.
    Checked against the shape (the channel count must sit on that axis)."""
    verdict: tuple[str, int | None] | None = None
    for m in module.modules():
        dims = _permute_dims(m)
        if dims == (0, 3, 1, 2):
            verdict = ("first", None)
        elif dims == (0, 2, 3, 1):
            verdict = ("last", None)
        elif isinstance(m, nn.LayerNorm):
            channels_first = type(m).__name__.lower().endswith("2d")
            verdict = ("first" if channels_first else "last", m.normalized_shape[-1])
        elif isinstance(m, nn.Conv2d):
            verdict = ("first", m.out_channels)
        elif isinstance(m, nn.BatchNorm2d | nn.InstanceNorm2d):
            verdict = ("first", m.num_features)
        elif isinstance(m, nn.GroupNorm):
            verdict = ("first", m.num_channels)
        elif isinstance(m, nn.Linear):
            verdict = ("last", m.out_features)
    if verdict is None:
        return None
    side, channels = verdict
    axis = 1 if side == "first" else 3
    if channels is not None and shape[axis] != channels:
        return None
    return side


def _four_d_layout(module: nn.Module | None, shape: tuple[int, ...], input_size: tuple[int, int] | None) -> str:
    """'first' or 'last' for a 4-D output: the geometry decides when exactly one reading is a
    grid of the input at one stride; else the module structure; else channels-first."""
    if input_size is not None:
        first = _consistent((shape[2], shape[3]), input_size)
        last = _consistent((shape[1], shape[2]), input_size)
        if first != last:
            return "first" if first else "last"
    structural = _structural_layout(module, shape) if module is not None else None
    return structural or "first"


def spatial_layout(model: nn.Module, name: str, output: torch.Tensor, *, module: nn.Module | None = None,
                   input_size: tuple[int, int] | None = None, tokens: TokenSpec = None,
                   reshape: Reshape | None = None) -> Layout:
    """The `Layout` of layer `name`'s output: custom when `reshape` is given; channels-first or
    channels-last for 4-D outputs; tokens for 3-D outputs (needs `input_size`). LayoutError
    (a ValueError) naming the layer, the shape and the override when none applies."""
    shape = tuple(output.shape)
    if reshape is not None:
        if not callable(reshape):
            raise ValueError(f"reshape= must be a callable mapping the layer output to (B,C,h,w); got {reshape!r}")
        spatial = Layout("custom", (0, 0), reshape=reshape).to_spatial(output[:1].detach())
        return Layout("custom", (int(spatial.shape[-2]), int(spatial.shape[-1])), reshape=reshape)
    if output.ndim == 4:
        if tokens is not None:
            raise ValueError(f"tokens= applies to token layers (B,N,C); layer '{name}' gives {shape}")
        if _four_d_layout(module, shape, input_size) == "last":
            return Layout("channels_last", (shape[1], shape[2]))
        return Layout("channels_first", (shape[2], shape[3]))
    if output.ndim == 3:
        if input_size is None:
            raise LayoutError(f"layer '{name}' gives tokens {shape}; the input size is needed to lay them out")
        prefix, grid = token_grid(model, shape[1], input_size, tokens, what=f"layer '{name}' (shape {shape})")
        return Layout("tokens", grid, prefix=prefix)
    raise LayoutError(
        f"layer '{name}' gives shape {shape}, which is neither a spatial map (B,C,h,w), a channels-last map "
        f"(B,h,w,C) nor a token sequence (B,N,C); pick another layer or give reshape=<callable> returning (B,C,h,w)"
    )


def is_attention_module(module: nn.Module) -> bool:
    """A self-attention module: nn.MultiheadAttention, or any module named *Attention* with a
    `qkv` (or q/k/v) projection (timm, gradsum's vit-tiny, Swin's window attention)."""
    if isinstance(module, nn.MultiheadAttention):
        return True
    if "attention" not in type(module).__name__.lower():
        return False
    return isinstance(getattr(module, "qkv", None), nn.Module) or all(
        isinstance(getattr(module, n, None), nn.Module) for n in ("query", "key", "value")
    ) or all(isinstance(getattr(module, n, None), nn.Module) for n in ("q", "k", "v"))
