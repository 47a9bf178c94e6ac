"""ViTTiny (the built-in patch-8 ViT) and the zoo's vision transformers (torchvision, timm)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradsum as gs
import gradsum.models as M
from gradsum.core.layers import resolve_layer
from gradsum.data.samples import Sample
from gradsum.models.card import attach_card
from gradsum.models.vit import ViTTiny
from gradsum.models.zoo import _fixed_input_size

needs_timm = pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="timm is not installed")


def _vit(**kwargs: object) -> ViTTiny:
    torch.manual_seed(0)
    return ViTTiny(**kwargs).eval()  # type: ignore[arg-type]


# --- ViTTiny: structure, shapes, sizes ------------------------------------------------------------

def test_structure_is_timm_like() -> None:
    model = M.build("vit-tiny")
    assert isinstance(model, M.ViTTiny) and not model.training
    assert M.BUILTIN_MODELS["vit-tiny"] is ViTTiny
    proj = model.patch_embed.proj
    assert isinstance(proj, nn.Conv2d) and proj.kernel_size == (8, 8) and proj.stride == (8, 8)
    assert model.patch_size == 8 and model.num_prefix_tokens == 1
    assert model.cls_token.shape == (1, 1, 64) and model.pos_embed.shape == (1, 1 + 8 * 16, 64)
    assert isinstance(model.blocks, nn.ModuleList) and len(model.blocks) == 4
    block = model.blocks[3]
    assert isinstance(block.norm1, nn.LayerNorm) and isinstance(block.norm2, nn.LayerNorm)
    assert isinstance(block.attn.qkv, nn.Linear) and block.attn.qkv.out_features == 3 * 64
    assert isinstance(block.attn.proj, nn.Linear) and block.attn.num_heads == 4
    assert [type(m) for m in block.mlp.children()][1] is nn.GELU and block.mlp.fc1.out_features == 128
    assert isinstance(model.norm, nn.LayerNorm) and model.head.out_features == 2
    assert M.default_layer_for(model) == "blocks.3.norm1"
    assert M.default_layer_for(ViTTiny(depth=2)) == "blocks.1.norm1"
    assert resolve_layer(model, "blocks.3.norm1")[1] is block.norm1
    assert M.card_of(model).spec == "vit-tiny" and M.card_of(model).num_classes == 2
    assert _fixed_input_size(model) is None  # any multiple of the patch size


@pytest.mark.parametrize("size", [(64, 128), (48, 96), (64, 64), (32, 200), (8, 8)])
def test_output_shapes_and_token_grid(size: tuple[int, int]) -> None:
    model = _vit(num_classes=3)
    seen: list[torch.Size] = []
    hook = model.blocks[3].norm1.register_forward_hook(lambda _m, _i, o: seen.append(o.shape))
    with torch.no_grad():
        out = model(torch.rand(2, 3, *size))
    hook.remove()
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    assert seen == [torch.Size([2, 1 + (size[0] // 8) * (size[1] // 8), 64])]


@pytest.mark.parametrize("size", [(50, 100), (64, 130), (4, 64)])
def test_size_not_divisible_by_patch_names_it(size: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match=rf"patch size 8; got {size[0]}x{size[1]}"):
        _vit()(torch.rand(1, 3, *size))
    with pytest.raises(ValueError, match="img_size 60x128 must be a multiple of patch_size 8"):
        ViTTiny(img_size=(60, 128))
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        ViTTiny(depth=0)


def test_position_embedding_interpolation() -> None:
    model = _vit()
    assert model._pos_embed(8, 16) is model.pos_embed  # the learned grid: no resampling
    with torch.no_grad():
        model.pos_embed[:, 1:] = 0.7
        model.pos_embed[:, 0] = -3.0
    pos = model._pos_embed(4, 6)  # non-square, smaller
    assert pos.shape == (1, 1 + 24, 64)
    torch.testing.assert_close(pos[:, 0], model.pos_embed[:, 0])  # class token's position kept
    torch.testing.assert_close(pos[:, 1:], torch.full_like(pos[:, 1:], 0.7))  # constant stays constant
    with torch.no_grad():
        model.pos_embed.normal_()
    grid = model.pos_embed[:, 1:].reshape(1, 8, 16, 64).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(12, 20), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
    torch.testing.assert_close(model._pos_embed(12, 20)[:, 1:], expected)
    # the embedding learned at another size is used as-is at that size
    small = _vit(img_size=(32, 48))
    assert small.pos_embed.shape == (1, 1 + 4 * 6, 64) and small(torch.rand(1, 3, 32, 48)).shape == (1, 2)


def test_fused_and_eager_attention_agree_and_expose_probabilities() -> None:
    model = _vit()
    x = torch.rand(3, 3, 64, 128)
    with torch.no_grad():
        fused = model(x)
        probs: list[torch.Tensor] = []
        hook = model.blocks[0].attn.attn_drop.register_forward_hook(lambda _m, _i, o: probs.append(o))
        for block in model.blocks:
            block.attn.fused_attn = False
        eager = model(x)
        hook.remove()
    torch.testing.assert_close(eager, fused, atol=1e-5, rtol=1e-5)
    assert probs[0].shape == (3, 4, 129, 129)
    torch.testing.assert_close(probs[0].sum(-1), torch.ones(3, 4, 129))


# --- initialisation and gradients ---------------------------------------------------------------

def _check_vit_init(model: ViTTiny) -> None:
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            w = module.weight.detach()
            assert w.abs().max() <= 0.04 + 1e-6 and 0.01 < float(w.std()) < 0.025, name
            assert torch.count_nonzero(module.bias) == 0, name
        elif isinstance(module, nn.LayerNorm):
            assert torch.equal(module.weight, torch.ones_like(module.weight)), name
            assert torch.count_nonzero(module.bias) == 0, name
    for p in (model.cls_token, model.pos_embed):
        assert p.abs().max() <= 0.04 + 1e-6 and float(p.detach().std()) > 0.005


def test_initialisation_as_vit_and_kept_by_layerwise_reinit() -> None:
    model = _vit()
    _check_vit_init(model)
    assert torch.count_nonzero(model.head.weight) == model.head.weight.numel()  # not a zero head
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    for module in model.modules():  # what gs.train.fit(..., reinit=True) does
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
    _check_vit_init(model)


def test_gradients_reach_patch_tokens_at_init() -> None:
    model = _vit()
    x = torch.rand(2, 3, 64, 128)
    captured: list[torch.Tensor] = []
    hook = resolve_layer(model, M.default_layer_for(model))[1].register_forward_hook(
        lambda _m, _i, o: captured.append(o))
    try:
        logits = model(x)
    finally:
        hook.remove()
    (grad,) = torch.autograd.grad(logits[:, 1].sum(), captured[0])
    per_token = grad.abs().sum(-1)  # (B, 1 + 128)
    assert per_token.shape == (2, 129)
    assert bool((per_token[:, 1:] > 0).all())  # every patch token receives gradient
    assert all(p.grad is None for p in model.parameters())


# --- checkpoints ---------------------------------------------------------------------------------

def test_save_and_rebuild_from_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = M.build("vit-tiny", num_classes=3)
    path = M.save(model, tmp_path / "vit.pt")
    again = M.build(weights=path)
    assert isinstance(again, ViTTiny) and M.card_of(again).spec == "vit-tiny"
    assert M.card_of(again).num_classes == 3
    x = torch.rand(2, 3, 48, 96)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)
    assert again.state_dict().keys() == model.state_dict().keys()


def test_trainer_checkpoint_at_another_img_size_rebuilds(tmp_path: Path) -> None:
    """A ViTTiny built for 48x96 (the quick demo's scenes) and trained there: its checkpoint
    (card input_size 48x96, position embedding of 6x12 patches) rebuilds from the file alone."""
    model = attach_card(M.ViTTiny(img_size=(48, 96)), M.ModelCard(spec="vit-tiny", num_classes=2))
    data = gs.data.RoadScenes(8, size=(48, 96), seed=0, task="pothole")
    history = gs.train.fit(model, data, task="classification", epochs=1, batch_size=4, out=tmp_path / "run",
                           progress=False)
    again = M.build(weights=history.checkpoints[-1])
    assert isinstance(again, ViTTiny) and again.img_size == (48, 96) and again.pos_embed.shape == (1, 73, 64)
    x = torch.rand(2, 3, 48, 96)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)


# --- training ------------------------------------------------------------------------------------

def _square_scenes(n: int, seed: int) -> list[Sample]:
    """32x32 grey images; every other one (target 1) has a bright 8x8 square somewhere."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        img = torch.full((3, 32, 32), 0.3) + 0.05 * torch.rand(3, 32, 32, generator=g)
        r, c = (int(v) for v in torch.randint(0, 25, (2,), generator=g))
        if i % 2:
            img[:, r:r + 8, c:c + 8] = 0.9
        out.append(Sample(image=img, id=f"s{i}", target=i % 2))
    return out


def test_short_fit_learns_to_find_the_square() -> None:
    model = M.ViTTiny(img_size=(32, 32), dim=32, depth=2, heads=2)
    history = gs.train.fit(model, _square_scenes(128, 0), _square_scenes(64, 1), task="classification",
                           epochs=6, batch_size=16, lr=2e-3, seed=0, progress=False, reinit=True)
    assert history.epochs[0]["val_accuracy"] < 0.9 <= history.final["val_accuracy"]
    assert history.final["train_loss"] < 0.5 * history.epochs[0]["train_loss"]


@pytest.mark.slow
def test_learns_potholes_with_the_documented_recipe() -> None:
    """The recipe in ViTTiny's docstring: 3000 scenes x 12 epochs, AdamW lr 1e-3, batch 32
    (measured 0.89 / 0.96 / 0.92 validation accuracy over three seeds/lrs, ~90 s on 2 cores)."""
    cached = gs.train.CachedDataset
    train = cached(gs.data.RoadScenes(3000, size=(64, 128), seed=1, task="pothole"))
    val = cached(gs.data.RoadScenes(120, size=(64, 128), seed=2000, task="pothole"))
    history = gs.train.fit(M.build("vit-tiny"), train, val, task="classification", epochs=12, batch_size=32,
                           lr=1e-3, seed=0, progress=False, reinit=True)
    assert history.final["val_accuracy"] >= 0.8


# --- zoo: torchvision and timm transformers -----------------------------------------------------

def test_torchvision_vit_b_16_builds_wrapped_with_default_layer() -> None:
    model = M.build("torchvision:vit_b_16", num_classes=3)
    assert isinstance(model, M.Prepared) and model.mean_std is not None
    assert model.mean_std[0] == pytest.approx(list(M.IMAGENET_MEAN))
    assert M.card_of(model).input_size == (224, 224) and M.card_of(model).num_classes == 3
    layer = M.default_layer_for(model)
    assert layer == "model.encoder.layers.encoder_layer_11.ln_1"
    assert resolve_layer(model, layer)[1] is model.model.encoder.layers.encoder_layer_11.ln_1


def test_torchvision_swin_t_default_layer_is_the_spatial_map() -> None:
    model = M.build("torchvision:swin_t", num_classes=2)
    assert isinstance(model, M.Prepared) and model.mean_std is not None
    assert M.card_of(model).input_size is None  # any size
    layer = M.default_layer_for(model)
    assert layer == "model.permute"
    shapes: list[torch.Size] = []
    hook = resolve_layer(model, layer)[1].register_forward_hook(lambda _m, _i, o: shapes.append(o.shape))
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 96))
    hook.remove()
    assert out.shape == (1, 2) and shapes == [torch.Size([1, 768, 2, 3])]  # (B, C, h, w), stride 32


@needs_timm
def test_timm_deit_distilled_builds_from_spec() -> None:
    model = M.build("timm:deit_tiny_distilled_patch16_224", num_classes=2)
    inner = model.model
    assert type(inner).__module__.startswith("timm.") and inner.num_prefix_tokens == 2
    card = M.card_of(model)
    assert card.input_size == (224, 224) and card.num_classes == 2
    assert card.normalization_source == "timm's pretrained config"
    assert M.default_layer_for(model) == "model.blocks.11.norm1"
    assert inner.head.out_features == inner.head_dist.out_features == 2


@needs_timm
@pytest.mark.parametrize(
    ("name", "kwargs", "size", "prefix"),
    [
        ("vit_tiny_patch16_224", {"depth": 2}, (224, 224), 1),
        ("deit_tiny_distilled_patch16_224", {"depth": 3}, (224, 224), 2),
        ("vit_small_patch14_reg4_dinov2", {"depth": 2, "embed_dim": 48, "num_heads": 2, "img_size": 70}, (70, 70), 5),
        ("deit_tiny_patch16_224", {"depth": 1, "img_size": (64, 128)}, (64, 128), 1),
    ],
)
def test_timm_vits_input_size_and_default_layer(name: str, kwargs: dict, size: tuple[int, int], prefix: int) -> None:
    import timm

    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    assert _fixed_input_size(model) == size
    depth = kwargs["depth"]
    assert M.default_layer_for(model) == f"blocks.{depth - 1}.norm1"
    wrapped = M.with_normalization(model)
    assert M.default_layer_for(wrapped) == f"model.blocks.{depth - 1}.norm1"
    assert model.num_prefix_tokens == prefix
    shapes: list[torch.Size] = []
    hook = resolve_layer(model, M.default_layer_for(model))[1].register_forward_hook(
        lambda _m, _i, o: shapes.append(o.shape))
    with torch.no_grad():
        model(torch.rand(1, 3, *size))
    hook.remove()
    patch = model.patch_embed.patch_size[0]
    assert shapes[0][1] == prefix + (size[0] // patch) * (size[1] // patch)


@needs_timm
def test_timm_swin_default_layer_is_the_final_norm() -> None:
    import timm

    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, depths=(1, 1, 1, 1),
                              embed_dim=24, num_heads=(1, 1, 1, 1))
    assert M.default_layer_for(model) == "norm" and _fixed_input_size(model) == (224, 224)


@needs_timm
def test_timm_unknown_vit_suggests() -> None:
    with pytest.raises(ValueError, match="unknown timm model 'vit_tiny_patch16_22'.*vit_tiny_patch16_224"):
        M.build("timm:vit_tiny_patch16_22")
