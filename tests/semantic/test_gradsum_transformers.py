"""GradSUM on transformers: a ViT with Grad-CAM on its token layer and the attention methods,
and a Swin with Grad-CAM on a channels-last stage, profile like any CNN."""
from __future__ import annotations

import pytest
import torch
from torchvision.models import swin_t

import gradsum as gs


@pytest.fixture(scope="module")
def scenes():
    return gs.data.RoadScenes(3, size=(64, 128), seed=5, task="pothole")


def _shares_sum_to_100(profile, methods):
    rows = profile.images[(profile.images["level"] == "label")]
    assert set(rows["method"]) == set(methods)
    totals = rows.groupby(["image_id", "method"])["share"].sum()
    assert ((totals - 100).abs() < 1e-3).all()


def test_gradsum_on_a_vit_with_attention_methods(scenes):
    torch.manual_seed(0)
    vit = gs.models.ViTTiny(num_classes=2)
    methods = ["gradcam", "attention", "attention-rollout", "gae", "legrad"]
    profile = gs.gradsum(vit, scenes, method=methods, target=0, baseline=1)
    _shares_sum_to_100(profile, methods)
    assert set(profile.baseline["method"]) == set(methods)


def test_gradsum_on_a_swin_stage(scenes):
    torch.manual_seed(0)
    swin = swin_t(num_classes=2).eval()
    profile = gs.gradsum(swin, scenes, method="gradcam", layer="features.5", target=0)
    _shares_sum_to_100(profile, ["gradcam"])
