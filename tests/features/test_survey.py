"""gradsum.features.layer_survey: what a conv net's layers respond to, as one result."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

import gradsum as gs
from gradsum.core.threads import one_intra_op_thread
from gradsum.data.subsets import dataset_images
from gradsum.features import (
    FeatureBudget,
    LayerSurvey,
    activation_layers,
    layer_survey,
    patch_attributions,
)
from gradsum.features.survey import channel_statistics

SIZE = (16, 32)
BUDGET = FeatureBudget(images=12, channels=2, patches=2, side=16)


def tiny_cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 4, 3, padding=1), bn1=nn.BatchNorm2d(4), act1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(4, 6, 3, padding=1), act2=nn.ReLU(), pool2=nn.AdaptiveMaxPool2d((2, 2)),
        flatten=nn.Flatten(), fc=nn.Linear(24, 2))).eval()


def _state(model: nn.Module) -> tuple:
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            [p.grad for p in model.parameters()], len(model._forward_hooks))


@pytest.fixture(scope="module")
def scenes() -> gs.data.RoadScenes:
    return gs.data.RoadScenes(16, size=SIZE, seed=5, task="pothole")


@pytest.fixture(scope="module")
def survey(scenes) -> tuple[nn.Module, LayerSurvey]:
    model = tiny_cnn(0)
    return model, layer_survey(model, scenes, budget=BUDGET, seed=3)


def test_activation_layers_follow_each_conv():
    assert activation_layers(tiny_cnn(0)) == ["act1", "act2"]
    assert activation_layers(gs.models.build("potholenet")) == ["features.act1", "features.act2", "features.act3"]
    # a conv without an activation after it stands for itself; the last is capped to max_layers
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.GELU(),
                        nn.Conv2d(4, 4, 3), nn.ReLU())
    assert activation_layers(net) == ["0", "2", "4", "6"]
    assert activation_layers(net, max_layers=2) == ["0", "6"]
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        activation_layers(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))


def test_channel_statistics_match_a_direct_forward(scenes):
    model = tiny_cnn(0)
    x, _, _ = dataset_images(scenes, 12)
    stats = channel_statistics(model, ["act1", "act2"], x, border=2, batch_size=5)
    with torch.no_grad():
        a1 = model.act1(model.bn1(model.conv1(x)))
        a2 = model.act2(model.conv2(model.pool1(a1)))
    for name, a in (("act1", a1), ("act2", a2)):
        per_image = a[..., 2:-2, 2:-2].mean(dim=(2, 3))           # (N, C), border 2 cropped
        mean, best = stats[name]
        torch.testing.assert_close(mean, per_image.mean(0))
        torch.testing.assert_close(best, per_image.max(0).values)


def test_layer_survey_holds_what_the_section_draws(survey, scenes):
    model, s = survey
    assert s.layer_names == ["act1", "act2"] and s.last == "act2"
    assert (s.n_images, s.side, s.preset, s.steps, s.seed) == (12, 16, "keras", 30, 3)
    assert s.filters.layer == "conv1"
    for lc in s.layers:
        # the chosen channels are the most active on the data, in ascending order
        assert lc.chosen == sorted(lc.mean.argsort(descending=True)[:2].tolist())
        assert lc.maxima.images.shape == (2, 3, 16, 16) and lc.maxima.labels == [f"{lc.layer}:{c}" for c in lc.chosen]
        assert (lc.best >= lc.mean).all()
    assert s.patches.layer == "act2" and s.patches.channels == s.layers[-1].chosen
    assert s.patches.values.shape == (2, 2) and s.patches.images_seen == 12
    # the guided-backprop image of each patch's unit, cropped like the patch
    assert s.patch_method == "guided-backprop" and s.patch_attributions.shape == s.patches.crops.shape
    x, _, _ = dataset_images(scenes, 12)
    torch.testing.assert_close(s.patch_attributions, patch_attributions(model, s.patches, x, "guided-backprop"))
    assert bool((s.patch_attributions != 0).any())

    table = s.table()
    assert list(table.columns) == ["layer", "channel", "channels_in_layer", "data_mean", "data_best", "optimised",
                                   "ratio_to_best_scene"]
    assert list(table["layer"]) == ["act1", "act1", "act2", "act2"]
    assert list(table["channels_in_layer"]) == [4, 4, 6, 6]
    last = s.layers[-1]
    assert table["optimised"].iloc[2:].tolist() == pytest.approx(last.maxima.values.tolist())
    assert table["data_best"].iloc[2:].tolist() == pytest.approx(last.best[last.chosen].tolist())
    assert (table["ratio_to_best_scene"] == table["optimised"] / table["data_best"]).all()
    assert (table["optimised"] > table["data_best"]).all()   # the ascent beats every scene


def test_layer_survey_keeps_state_threads_and_is_deterministic(scenes, survey):
    model = tiny_cnn(0)
    model.train()
    before = _state(model)
    torch.set_num_threads(2)
    again = layer_survey(model, scenes, budget=BUDGET, seed=3)
    assert _state(model) == before and torch.get_num_threads() == 2
    _, first = survey
    torch.testing.assert_close(again.layers[0].maxima.images, first.layers[0].maxima.images, rtol=0, atol=0)
    assert again.table().equals(first.table())
    torch.testing.assert_close(again.patch_attributions, first.patch_attributions, rtol=0, atol=0)
    other = layer_survey(model, scenes, budget=BUDGET, seed=4, patch_method=None)
    assert not torch.equal(other.layers[0].maxima.images, first.layers[0].maxima.images)
    assert other.patch_attributions is None and other.patch_method is None


def test_layer_survey_bad_input(scenes):
    with pytest.raises(TypeError, match="FeatureBudget"):
        layer_survey(tiny_cnn(0), scenes, budget={"images": 4})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        layer_survey(tiny_cnn(0), gs.data.RoadScenes(0, size=SIZE), budget=BUDGET)
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        layer_survey(nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 32, 2)), scenes, budget=BUDGET)


def test_dataset_images_and_one_thread(scenes):
    x, labels, ids = dataset_images(scenes, 5)
    assert x.shape == (5, 3, *SIZE) and x.dtype == torch.float32
    assert labels is not None and labels.tolist() == [scenes[i].target for i in range(5)]
    assert ids == [scenes[i].id for i in range(5)]
    t, none, tids = dataset_images(torch.rand(7, 3, 4, 4), 3)
    assert t.shape == (3, 3, 4, 4) and none is None and tids == ["0", "1", "2"]
    _, steering, _ = dataset_images(gs.data.RoadScenes(3, size=SIZE, task="steering"))
    assert steering is None                           # float targets are not class labels
    with pytest.raises(ValueError, match=r"\(N,C,H,W\)"):
        dataset_images(torch.rand(3, 4, 4))
    with pytest.raises(TypeError, match="indexable"):
        dataset_images(iter([1, 2]))
    torch.set_num_threads(2)
    with pytest.raises(RuntimeError), one_intra_op_thread() as before:
        assert before == 2 and torch.get_num_threads() == 1
        raise RuntimeError
    assert torch.get_num_threads() == 2
