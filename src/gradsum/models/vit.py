"""ViTTiny: a small Vision Transformer (Dosovitskiy et al. 2021) for gradsum's road scenes."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gradsum.models.normalize import Normalize

__all__ = ["ViTTiny", "Block", "Attention", "PatchEmbed"]

_STD = 0.02  # ViT / timm: truncated normal, std 0.02, cut at +-2 std
#: the defaults: the demo's 64x128 pothole scenes in 8x8 patches
IMG_SIZE: tuple[int, int] = (64, 128)
PATCH_SIZE: int = 8


def _trunc_normal(t: torch.Tensor) -> None:
    nn.init.trunc_normal_(t, std=_STD, a=-2 * _STD, b=2 * _STD)


class _Linear(nn.Linear):
    """nn.Linear initialised as in ViT/timm: weights trunc-normal(0.02), zero bias. The init is
    its ``reset_parameters``, so re-initialising a model layer by layer (``gs.train.fit(...,
    reinit=True)``) gives the ViT initialisation again, not PyTorch's default."""

    def reset_parameters(self) -> None:
        _trunc_normal(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise ValueError(f"ViTTiny {name} must be a positive int or (height, width); got {value!r}")
    return int(pair[0]), int(pair[1])


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> D-dim tokens: ``proj`` is a Conv2d with kernel = stride
    = p; (B,3,H,W) -> (B, H/p * W/p, D), row-major over the (H/p, W/p) grid."""

    def __init__(self, img_size: tuple[int, int], patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.img_size = img_size
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size[0] // patch_size, img_size[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.dynamic_img_size = True  # other sizes divisible by the patch are accepted
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention: ``qkv`` (Linear D -> 3D), per head softmax(q k^T / sqrt(d)) v
    with F.scaled_dot_product_attention, then ``proj`` (Linear D -> D).

    ``fused_attn = False`` computes the same thing step by step, the attention probabilities
    passing through ``attn_drop`` (an identity here) as a (B, heads, N, N) tensor, so that a
    forward hook there can read them (as in timm's Attention)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"ViTTiny dim {dim} must be divisible by heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.fused_attn = True
        self.qkv = _Linear(dim, 3 * dim)
        self.attn_drop = nn.Identity()
        self.proj = _Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = self.attn_drop((q * self.scale @ k.transpose(-2, -1)).softmax(dim=-1))
            x = attn @ v
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)); the MLP is
    ``fc1`` (D -> ratio*D), GELU ``act``, ``fc2`` (ratio*D -> D)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(OrderedDict(fc1=_Linear(dim, hidden), act=nn.GELU(), fc2=_Linear(hidden, dim)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTTiny(nn.Module):
    """A small Vision Transformer: Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words:
    Transformers for Image Recognition at Scale" (ICLR 2021), at the size of gradsum's road
    scenes.

    Input (B,3,H,W) in [0,1], H and W multiples of the patch size p = 8. A fixed ``normalize``
    maps pixels to [-1,1] ((x - 0.5) / 0.5, as PilotNet); ``patch_embed.proj`` (Conv2d, kernel
    = stride = 8, PyTorch's default init as in timm) gives H/8 x W/8 patch tokens of dimension
    D; a learned class token ``cls_token`` (1,1,D) is
    prepended and the learned position embedding ``pos_embed`` (1, 1 + grid, D) added; then
    `depth` pre-norm ``blocks`` (x + attn(norm1(x)); x + mlp(norm2(x))), the final ``norm``
    and the linear ``head`` on the class token give `num_classes` logits.

    Defaults: D = 64, depth 4, 4 heads, MLP ratio 2, 2 classes, img_size (64, 128) (the demo's
    pothole scenes: an 8 x 16 patch grid). The position embedding is learned for `img_size`
    and bilinearly interpolated for any other size divisible by 8 (non-square too); other
    sizes raise a ValueError naming the size. Initialisation as in ViT/timm: Linear weights
    and both embeddings truncated normal (std 0.02), zero biases, LayerNorm weight 1 / bias 0
    (the head is not zero, so gradients flow at random initialisation).

    Structure and names follow timm so that gradsum finds the parts: ``num_prefix_tokens = 1``,
    ``patch_size = 8``, ``blocks.<i>.norm1`` / ``.attn.qkv`` / ``.attn.proj`` / ``.norm2`` /
    ``.mlp.fc1`` / ``.mlp.fc2``, ``norm``, ``head``; ``default_layer`` = the last block's
    ``norm1`` (the tokens entering the last attention, where patch tokens still receive
    gradient: after the last block only the class token reaches the head).

    Training (``gs.train.fit``, AdamW, batch 32, 64x128 pothole scenes, 2 CPU cores): like
    ViTs generally it needs more data than a CNN. 3000 scenes x 12 epochs at lr 1e-3 reach
    0.89-0.96 validation accuracy in about 90 s (seeds 0-2; the loss stays flat for 2-6 epochs,
    then drops); 600 scenes x 5 epochs (enough for `PotholeNet`) stay at chance.
    """

    num_prefix_tokens: int = 1

    def __init__(
        self,
        num_classes: int = 2,
        img_size: int | tuple[int, int] = IMG_SIZE,
        patch_size: int = PATCH_SIZE,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("patch_size", patch_size), ("dim", dim),
                            ("depth", depth), ("heads", heads), ("in_chans", in_chans)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ViTTiny {name} must be a positive integer, got {value!r}")
        if not mlp_ratio > 0:
            raise ValueError(f"ViTTiny mlp_ratio must be > 0, got {mlp_ratio!r}")
        size = _pair(img_size, "img_size")
        if size[0] % patch_size or size[1] % patch_size:
            raise ValueError(f"ViTTiny img_size {size[0]}x{size[1]} must be a multiple of patch_size {patch_size}")
        self.num_classes = num_classes
        self.img_size = size
        self.patch_size = patch_size
        self.embed_dim = self.num_features = dim
        self.default_layer = f"blocks.{depth - 1}.norm1"
        self.normalize = Normalize(0.5, 0.5)
        self.patch_embed = PatchEmbed(size, patch_size, in_chans, dim)
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.empty(1, 1 + self.patch_embed.num_patches, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = _Linear(dim, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise the class token and position embedding (trunc normal, std 0.02); the
        layers inside re-initialise themselves with their own ``reset_parameters``."""
        _trunc_normal(self.cls_token)
        _trunc_normal(self.pos_embed)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """The (h, w) patch grid of an H x W input; ValueError when H or W is not a multiple
        of the patch size."""
        p = self.patch_size
        if height % p or width % p or height < p or width < p:
            raise ValueError(
                f"ViTTiny takes images whose height and width are multiples of its patch size {p}; "
                f"got {height}x{width}. Resize or crop to e.g. {max(p, height // p * p)}x{max(p, width // p * p)}"
            )
        return height // p, width // p

    def _pos_embed(self, h: int, w: int) -> torch.Tensor:
        """The position embedding for an h x w grid: the learned one, bilinearly interpolated
        when the grid differs from the one it was learned for."""
        gh, gw = self.patch_embed.grid_size
        if (h, w) == (gh, gw):
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        patch_pos = patch_pos.reshape(1, gh, gw, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=(h, w), mode="bilinear", align_corners=False)
        return torch.cat([cls_pos, patch_pos.flatten(2).transpose(1, 2)], dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) pixels in [0,1] -> (B, 1 + H/8 * W/8, D) normalised tokens, class token first."""
        if x.dim() != 4:
            raise ValueError(f"ViTTiny takes a (B,C,H,W) batch; got shape {tuple(x.shape)}")
        h, w = self.grid(x.shape[-2], x.shape[-1])
        tokens = self.patch_embed(self.normalize(x))
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self._pos_embed(h, w)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits from the class token."""
        return self.head(tokens[:, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
