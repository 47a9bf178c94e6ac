"""Targets, layer resolution, normalisation and the batched engine."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import gradsum as gs
from gradsum.core.batching import batched_scores
from gradsum.core.layers import resolve_layer, resolve_layers
from gradsum.core.normalize import normalize_maps
from gradsum.core.targets import resolve_target


def test_class_target_default_is_argmax_logit():
    out = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 1.0]])
    bound = resolve_target(None).bind(out)
    assert bound.indices.tolist() == [1, 0]
    assert bound(out).tolist() == [2.0, 3.0]


def test_class_target_scores_probability_and_log_probability():
    out = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    p = gs.ProbabilityTarget(1).bind(out)(out)
    torch.testing.assert_close(p, out.softmax(1)[:, 1])
    lp = gs.LogProbabilityTarget([0, 1]).bind(out)(out)
    torch.testing.assert_close(lp, out.log_softmax(1)[[0, 1], [0, 1]])


def test_per_sample_targets_and_rows():
    out = torch.arange(12.0).reshape(3, 4)
    bound = resolve_target([3, 0, 2]).bind(out)
    assert bound(out).tolist() == [3.0, 4.0, 10.0]
    # rows: perturbed copies of samples 2, 2, 0 scored with their sample's target
    perturbed = torch.ones(3, 4) * torch.tensor([[1.0], [2.0], [3.0]])
    assert bound(perturbed, torch.tensor([2, 2, 0])).tolist() == [1.0, 2.0, 3.0]


def test_target_list_length_must_match_batch():
    out = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="got 2 targets for a batch of 3"):
        resolve_target([1, 2]).bind(out)


def test_target_out_of_range_says_how_many_outputs():
    with pytest.raises(ValueError, match="model has 4 outputs"):
        resolve_target(7).bind(torch.zeros(2, 4))


def test_regression_target_default_and_sign():
    out = torch.tensor([[0.5], [-0.25]])
    assert resolve_target(None).bind(out)(out).tolist() == [0.5, -0.25]
    assert gs.RegressionTarget(sign=-1).bind(out)(out).tolist() == [-0.5, 0.25]
    with pytest.raises(ValueError, match="sign must be"):
        gs.RegressionTarget(sign=2)


def test_segmentation_and_callable_targets():
    out = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    scores = gs.SegmentationTarget(1, mask).bind(out)(out)
    assert scores.tolist() == [4.0 + 7.0, 16.0 + 19.0]
    total = resolve_target(lambda o: o.sum(dim=(1, 2, 3))).bind(out)(out)
    assert total.shape == (2,)
    with pytest.raises(ValueError, match="one score per image"):
        resolve_target(lambda o: o.sum()).bind(out)


def test_bad_target_types():
    with pytest.raises(TypeError):
        resolve_target(True)
    with pytest.raises(TypeError, match="RegressionTarget"):
        resolve_target(torch.tensor([0.5]))


def test_resolve_layer_by_name_module_list_and_typo(inplace_cnn):
    assert resolve_layer(inplace_cnn, "conv2")[1] is inplace_cnn.conv2
    assert resolve_layer(inplace_cnn, inplace_cnn.conv3)[0] == "conv3"
    assert [n for n, _ in resolve_layers(inplace_cnn, ["conv2", "conv3"])] == ["conv2", "conv3"]
    assert resolve_layers(inplace_cnn, "auto") == "auto"
    with pytest.raises(ValueError, match="closest names: conv3"):
        resolve_layer(inplace_cnn, "cnov3")
    with pytest.raises(ValueError, match="not a module of the model"):
        resolve_layer(inplace_cnn, nn.Conv2d(1, 1, 1))


@pytest.mark.parametrize("mode", ["minmax", "relu-minmax", "maxabs", "sum"])
def test_normalisation_never_nan_on_constant_maps(mode):
    maps = torch.stack([torch.full((4, 4), 3.0), torch.zeros(4, 4), torch.randn(4, 4)])
    out = normalize_maps(maps, mode)
    assert torch.isfinite(out).all()
    assert (out[1] == 0).all()  # an all-zero map stays zero under every mode
    if mode in ("minmax", "relu-minmax"):
        assert (out[0] == 0).all()  # a constant map carries no ranking: zeros


def test_minmax_and_maxabs_values():
    m = torch.tensor([[[-1.0, 0.0], [1.0, 3.0]]])
    assert normalize_maps(m, "minmax").flatten().tolist() == [0.0, 0.25, 0.5, 1.0]
    assert normalize_maps(m, "maxabs").flatten().tolist() == pytest.approx([-1 / 3, 0.0, 1 / 3, 1.0])
    assert normalize_maps(m, "relu-minmax").flatten().tolist() == pytest.approx([0.0, 0.0, 1 / 3, 1.0])
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalize_maps(m, "zscore")


def test_batched_scores_chunks_and_progress():
    model = nn.Linear(3, 2)
    inputs = torch.randn(10, 3)
    seen = []
    out = batched_scores(model, 10, lambda a, b: inputs[a:b], lambda o, a, b: o[:, 0], batch_size=4,
                         progress=lambda done, total: seen.append((done, total)))
    torch.testing.assert_close(out, model(inputs)[:, 0].detach())
    assert seen == [(4, 10), (8, 10), (10, 10)]


def test_batched_scores_halves_on_out_of_memory():
    calls = []

    def flaky(x):
        calls.append(x.shape[0])
        if x.shape[0] > 8:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 GB")
        return x.sum(dim=1)

    data = torch.arange(40.0).reshape(20, 2)
    out = batched_scores(flaky, 20, lambda a, b: data[a:b], lambda o, a, b: o, batch_size="auto", device="cpu")
    torch.testing.assert_close(out, data.sum(1))
    assert calls == [20, 10, 5, 5, 5, 5]  # 20 and 10 fail, then chunks of 5


def test_batched_scores_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        batched_scores(nn.Identity(), 2, lambda a, b: torch.zeros(b - a, 1), lambda o, a, b: o, batch_size=0)
    with pytest.raises(ValueError, match="one per input"):
        batched_scores(nn.Identity(), 2, lambda a, b: torch.zeros(b - a, 1), lambda o, a, b: o[:1], batch_size=2)


def test_regression_target_with_the_sign_of_each_prediction():
    out = torch.tensor([[0.5], [-0.25], [0.0]])
    bound = gs.RegressionTarget(sign="prediction").bind(out)
    assert bound(out).tolist() == [0.5, 0.25, 0.0]
    perturbed = torch.tensor([[1.0], [1.0]])
    assert bound(perturbed, torch.tensor([1, 0])).tolist() == [-1.0, 1.0]  # row 0 copies image 1 (negative)
    assert bound.select(torch.tensor([1, 1])).sign.tolist() == [-1.0, -1.0]
