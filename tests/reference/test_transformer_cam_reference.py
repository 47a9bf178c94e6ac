"""CAM methods on transformer layers equal pytorch-grad-cam with its documented reshape
transforms: on a ViT token layer, drop the class token and lay the patches on their grid; on a
Swin stage output (B,h,w,C), permute to (B,C,h,w). Compared after the peer's normalisation."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torchvision.models import VisionTransformer, swin_t

import gradsum as gs
from gradsum.methods.base import upsample

cam_lib = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

PEERS = {"gradcam": cam_lib.GradCAM, "gradcam++": cam_lib.GradCAMPlusPlus, "xgradcam": cam_lib.XGradCAM,
         "hirescam": cam_lib.HiResCAM, "layercam": cam_lib.LayerCAM}
TARGETS = [1, 3]


def _peer_minmax(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.flatten(1)
    flat = flat - flat.amin(dim=1, keepdim=True)
    flat = flat / (1e-7 + flat.amax(dim=1, keepdim=True))
    return flat.reshape(maps.shape)


def _vit_reshape(grid: tuple[int, int]):
    def reshape(t: torch.Tensor) -> torch.Tensor:  # the peer's documented ViT transform
        return t[:, 1:, :].reshape(t.shape[0], *grid, t.shape[2]).permute(0, 3, 1, 2)

    return reshape


def _swin_reshape(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 3, 1, 2)


def _vit() -> nn.Module:
    torch.manual_seed(0)
    model = VisionTransformer(image_size=48, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32,
                              mlp_dim=64, num_classes=5).double().eval()
    nn.init.normal_(model.heads.head.weight, std=0.3)
    return model


def _swin() -> nn.Module:
    torch.manual_seed(0)
    return swin_t(num_classes=5).double().eval()


CASES = {
    "vit": (_vit, "encoder.layers.encoder_layer_1.ln_1", (48, 48), _vit_reshape((6, 6))),
    "swin": (_swin, "features.5", (64, 96), _swin_reshape),
}


@pytest.fixture(scope="module")
def cases():
    gen = torch.Generator().manual_seed(2)
    out = {}
    for name, (build, layer, size, transform) in CASES.items():
        model = build()
        x = torch.rand(2, 3, *size, generator=gen, dtype=torch.float64)
        out[name] = (model, layer, x, transform, gs.explain(model, x, methods=list(PEERS), layer=layer,
                                                           target=TARGETS))
    return out


@pytest.mark.parametrize("method", list(PEERS))
@pytest.mark.parametrize("case", list(CASES))
def test_cam_on_transformer_layers_equals_pytorch_grad_cam(case, method, cases):
    model, layer, x, transform, ours_all = cases[case]
    ours = _peer_minmax(upsample(_peer_minmax(ours_all[method].layer_maps[layer]), tuple(x.shape[-2:])))
    peer_model = copy.deepcopy(model)
    module = dict(peer_model.named_modules())[layer]
    with PEERS[method](model=peer_model, target_layers=[module], reshape_transform=transform) as cam:
        theirs = torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in TARGETS])).double()
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max() <= 1e-4
    if method in ("gradcam", "layercam"):  # real maps, not two blanks that agree (Grad-CAM++ on a random Swin is)
        assert float(ours_all[method].maps.amax()) > 0
