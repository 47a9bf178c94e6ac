"""core/tokens.py: token and channels-last layers read as (B,C,h,w) maps, found from the model."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torchvision.models import VisionTransformer, convnext_tiny, swin_t

import gradsum as gs
from gradsum.core.probe import Probe
from gradsum.core.tokens import LayoutError, parse_tokens, prefix_tokens, spatial_layout, token_grid
from gradsum.methods.base import ZeroMapWarning

timm = pytest.importorskip("timm")


def _tv_vit(image_size: int = 32) -> nn.Module:
    torch.manual_seed(0)
    model = VisionTransformer(image_size=image_size, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                              mlp_dim=32, num_classes=5).eval()
    nn.init.normal_(model.heads.head.weight, std=0.5)  # torchvision zero-initialises the head
    return model


def _timm_vit(**kwargs) -> nn.Module:
    torch.manual_seed(0)
    options = {"pretrained": False, "img_size": 32, "patch_size": 8, "depth": 2, "num_classes": 5,
               "embed_dim": 16, "num_heads": 2, **kwargs}
    return timm.create_model(kwargs.pop("name", "vit_tiny_patch16_224"), **options).eval()


def _map_shape(model: nn.Module, x: torch.Tensor, **options) -> tuple[int, int]:
    attr = gs.explainer("gradcam", model, **options)(x)
    (layer_map,) = attr.layer_maps.values()
    return tuple(layer_map.shape[-2:])


@pytest.mark.parametrize("spec,prefix", [("cls", 1), ("cls+dist", 2), ("cls+4", 5), ("none", 0), (3, 3),
                                         ("CLS + 4", 5)])
def test_parse_tokens(spec, prefix):
    assert parse_tokens(spec) == prefix


@pytest.mark.parametrize("bad", ["cls+x", -1, 1.5, True])
def test_parse_tokens_refuses_nonsense(bad):
    with pytest.raises(ValueError, match="tokens"):
        parse_tokens(bad)


def test_prefix_tokens_found_from_the_model():
    assert prefix_tokens(_tv_vit()) == 1
    assert prefix_tokens(_timm_vit()) == 1
    assert prefix_tokens(_timm_vit(reg_tokens=4)) == 5
    assert prefix_tokens(_timm_vit(class_token=False, global_pool="avg")) == 0
    assert prefix_tokens(timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, img_size=32,
                                           patch_size=8, depth=1)) == 2
    assert prefix_tokens(nn.Sequential(nn.Conv2d(3, 4, 3))) is None
    assert prefix_tokens(gs.models.Prepared(_tv_vit(), mean=[0.5] * 3, std=[0.2] * 3)) == 1  # through a wrapper


@pytest.mark.parametrize("kwargs,prefix", [({}, 1), ({"reg_tokens": 4}, 5), ({"no_embed_class": True}, 1),
                                           ({"class_token": False, "global_pool": "avg"}, 0)])
def test_timm_token_layers_give_the_patch_grid(kwargs, prefix):
    model = _timm_vit(**kwargs)
    x = torch.rand(2, 3, 32, 32)
    assert _map_shape(model, x) == (4, 4)
    attr = gs.explainer("gradcam", model)(x)
    assert attr.settings["layers"] == ["blocks.1.norm1"]
    assert attr.settings["layout"]["blocks.1.norm1"] == f"tokens: {prefix} prefix + 4x4 patches"


def test_distilled_deit_gives_the_patch_grid():
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, img_size=32, patch_size=8,
                              depth=2, num_classes=5).eval()
    attr = gs.explainer("gradcam", model)(torch.rand(1, 3, 32, 32))
    assert attr.settings["layout"]["blocks.1.norm1"] == "tokens: 2 prefix + 4x4 patches"


def test_non_square_input_grid_from_the_patch_stride():
    model = _timm_vit(dynamic_img_size=True)
    assert _map_shape(model, torch.rand(1, 3, 32, 64)) == (4, 8)
    assert _map_shape(model, torch.rand(1, 3, 48, 16)) == (6, 2)


def test_auto_on_a_vit_is_the_norm_before_the_last_attention_never_the_patch_embedding():
    model = _tv_vit()
    attr = gs.explainer("gradcam", model)(torch.rand(2, 3, 32, 32))
    assert attr.settings["layers"] == ["encoder.layers.encoder_layer_1.ln_1"]
    assert attr.layer_maps["encoder.layers.encoder_layer_1.ln_1"].shape == (2, 4, 4)
    assert float(attr.maps.abs().amax()) > 0


def test_zero_initialised_head_warns_that_the_gradients_are_zero():
    model = _tv_vit()
    nn.init.zeros_(model.heads.head.weight)
    with pytest.warns(ZeroMapWarning, match="gradients at 'encoder.layers.encoder_layer_1.ln_1' are all exactly zero"):
        attr = gs.explainer("gradcam", model)(torch.rand(2, 3, 32, 32))
    assert attr.settings["zero_gradients"] == [0, 1]


def test_swin_stage_output_is_channels_last_and_never_read_as_channels_first():
    torch.manual_seed(0)
    model = swin_t(num_classes=5).eval()
    x = torch.rand(1, 3, 64, 96)
    attr = gs.explainer("gradcam", model, layer="features.5")(x)
    assert attr.settings["layout"]["features.5"] == "channels-last 4x6"
    assert attr.layer_maps["features.5"].shape == (1, 4, 6)
    assert gs.explainer("gradcam", model)(x).settings["layers"] == ["permute"]  # (B,C,h,w) after the final norm


def test_convnext_blocks_stay_channels_first():
    """ConvNeXt blocks use LayerNorm/Linear over a permuted last dim but end with a Permute back."""
    torch.manual_seed(0)
    model = convnext_tiny(num_classes=5).eval()
    probe = Probe(model, [("features.1", model.features[1]), ("features.0", model.features[0])])
    with probe, torch.no_grad():
        model(torch.rand(1, 3, 64, 64))
    assert probe.layout("features.1").kind == "channels_first"
    assert probe.layout("features.0").kind == "channels_first"  # LayerNorm2d


def test_square_ambiguous_shape_decided_by_structure():
    """(B,8,8,8) reads either way by geometry; the module (LayerNorm over the last dim) decides."""
    ln = nn.LayerNorm(8)
    conv = nn.Conv2d(3, 8, 3, padding=1)
    out = torch.rand(1, 8, 8, 8)
    assert spatial_layout(ln, "ln", out, module=ln, input_size=(32, 32)).kind == "channels_last"
    assert spatial_layout(conv, "conv", out, module=conv, input_size=(32, 32)).kind == "channels_first"


def test_tokens_override_for_a_model_that_hides_its_prefix():
    class Hidden(nn.Module):  # 3 prefix tokens under a name gradsum does not know
        def __init__(self):
            super().__init__()
            self.embed = nn.Conv2d(3, 8, 8, stride=8)
            self.extra = nn.Parameter(torch.randn(1, 3, 8))
            self.mix = nn.Linear(8, 8)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            t = self.embed(x).flatten(2).transpose(1, 2)
            t = torch.cat([self.extra.expand(len(x), -1, -1), t], dim=1)
            t = self.mix(t)
            return self.head(t.mean(dim=1))

    model = Hidden().eval()
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match=r"19 tokens of layer 'mix' \(shape \(1, 19, 8\)\).*tokens='cls'"):
        gs.explainer("gradcam", model, layer="mix")(x)
    assert _map_shape(model, x, layer="mix", tokens=3) == (4, 4)
    reshaped = _map_shape(model, x, layer="mix", reshape=lambda t: t[:, 3:].transpose(1, 2).reshape(len(t), 8, 4, 4))
    assert reshaped == (4, 4)


def test_token_grid_error_names_shape_and_override():
    with pytest.raises(LayoutError, match="cannot lay out the 10 tokens.*tokens="):
        token_grid(_tv_vit(), 10, (32, 32))


def test_bad_layout_options_fail_early():
    with pytest.raises(ValueError, match="reshape= must be a callable"):
        gs.explainer("gradcam", _tv_vit(), reshape=3)
    with pytest.raises(ValueError, match="unknown part"):
        gs.explainer("scorecam", _tv_vit(), tokens="cls+x")


CAM_FAMILY = ["gradcam", "gradcam++", "xgradcam", "hirescam", "gradcam-elementwise", "layercam", "eigencam",
              "eigengradcam", "layer-visualization", "scorecam", "ablationcam", "sise", "adasise"]


@pytest.mark.parametrize("method", CAM_FAMILY)
def test_every_cam_family_method_runs_on_a_token_layer(method):
    model = _timm_vit(dynamic_img_size=True)
    x = torch.rand(2, 3, 32, 48)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZeroMapWarning)
        attr = gs.explainer(method, model)(x)
        single = gs.explainer(method, model)(x[1:])
    assert attr.maps.shape == (2, 32, 48)
    assert torch.isfinite(attr.maps).all()
    assert torch.allclose(attr.maps[1], single.maps[0], atol=1e-4, rtol=1e-3)  # independent of the batch


def test_ablation_cam_tail_on_tokens_equals_full_forwards():
    model = _tv_vit()
    x = torch.rand(2, 3, 32, 32)
    layer = "encoder.layers.encoder_layer_1.ln_1"
    fx = gs.explainer("ablationcam", model, layer=layer, tail="fx")(x)
    hook = gs.explainer("ablationcam", model, layer=layer, tail="hook")(x)
    assert fx.settings["tail"][layer] == "fx"
    assert torch.allclose(fx.maps, hook.maps, atol=1e-4, rtol=1e-4)
