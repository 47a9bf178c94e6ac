"""Sanity checks (Adebayo et al. 2018) on a small CNN trained here on sklearn digits."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradsum.data.samples import Sample
from gradsum.metrics import sanity


def _digits(n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16
    imgs = F.interpolate(imgs, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1)
    imgs = imgs.expand(-1, 3, -1, -1).contiguous()
    y = torch.tensor(d.target)
    return (imgs, y) if n is None else (imgs[:n], y[:n])


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 16, 3, padding=1), act1=nn.ReLU(),
            conv2=nn.Conv2d(16, 16, 3, padding=1), act2=nn.ReLU(), pool1=nn.MaxPool2d(2),
            conv3=nn.Conv2d(16, 32, 3, padding=1), act3=nn.ReLU(),
            conv4=nn.Conv2d(32, 32, 3, padding=1), act4=nn.ReLU(), pool2=nn.MaxPool2d(2),
            flatten=nn.Flatten(), fc1=nn.Linear(32 * 64, 32), act5=nn.ReLU(), fc2=nn.Linear(32, 10),
        )
    )


@pytest.fixture(scope="module")
def trained():
    """4-conv CNN, 3 epochs of Adam on 1200 digits (32x32): ~85% held-out accuracy."""
    imgs, y = _digits()
    model = _net(1)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        perm = torch.randperm(1200, generator=g)
        for i in range(0, 1200, 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            F.cross_entropy(model(imgs[idx]), y[idx]).backward()
            opt.step()
    opt.zero_grad(set_to_none=True)
    for p in model.parameters():
        p.grad = None
    model.eval()
    with torch.no_grad():
        acc = (model(imgs[1200:]).argmax(1) == y[1200:]).float().mean().item()
    assert acc > 0.75
    return model, imgs[1200:1232]


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_cascading_randomisation_gradcam_and_gradient_decorrelate_guided_backprop_does_not(trained):
    model, x = trained
    before = _snapshot(model)
    res = sanity.model_randomization(model, x, ["gradcam", "saliency", "guided-backprop"], layer="act4", seed=0)
    verdict = res.verdict().set_index("method")
    print("\n" + res.curves("spearman_abs").round(3).to_string())
    for measure in ("spearman_abs", "spearman", "ssim", "hog"):
        print(res.verdict(measure=measure).round(3).to_string())
    assert verdict.loc["gradcam", "similarity"] < 0.3 and verdict.loc["gradcam", "passes"]
    assert verdict.loc["saliency", "similarity"] < 0.3 and verdict.loc["saliency", "passes"]
    assert verdict.loc["guided-backprop", "similarity"] > 0.3 and not verdict.loc["guided-backprop", "passes"]
    # curves: one row per randomisation step, output layer first, cumulative
    curves = res.curves()
    assert [layer for _, layer in curves.index] == ["fc2", "fc1", "conv4", "conv3", "conv2", "conv1"]
    assert set(res.frame["measure"]) == {"spearman_abs", "spearman", "ssim", "hog"}
    # the model is exactly as before
    after = _snapshot(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not model.training and all(p.grad is None for p in model.parameters())


def test_independent_randomisation_and_plot(trained):
    import matplotlib

    matplotlib.use("Agg")
    model, x = trained
    res = sanity.model_randomization(model, x[:8], ["gradcam"], layer="act4", mode="independent", measures=("spearman_abs", "ssim"))
    assert res.settings["mode"] == "independent" and len(res.curves()) == 6
    fig = res.plot()
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "spearman_abs"
    # independent: randomising only conv1 changes Grad-CAM less than randomising everything
    per_layer = res.curves()["gradcam"]
    assert per_layer.loc[(6, "conv1")] > -1.0


def test_same_random_weights_in_both_modes_and_global_rng_untouched():
    model = _net(0)
    state = torch.random.get_rng_state()
    with sanity.randomized_layers(model, ["fc2"], seed=3, order=sanity.randomizable_layers(model)):
        w_cascade = model.fc2.weight.clone()
    with sanity.randomized_layers(model, ["fc2", "fc1"], seed=3, order=sanity.randomizable_layers(model)):
        w_both = model.fc2.weight.clone()
    assert torch.equal(w_cascade, w_both)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_weights_restored_when_explainer_raises():
    model = _net(0)
    before = _snapshot(model)
    calls = {"n": 0}

    def factory(m):
        def exp(x, target):
            calls["n"] += 1
            if calls["n"] > 1:  # the original maps work, the first randomised step fails
                assert not torch.equal(m.fc2.weight, before["fc2.weight"])
                raise RuntimeError("boom")
            return torch.rand(x.shape[0], x.shape[2], x.shape[3])

        return exp

    with pytest.raises(RuntimeError, match="boom"):
        sanity.model_randomization(model, torch.rand(2, 3, 32, 32), {"broken": factory}, measures=("spearman_abs",))
    after = _snapshot(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_similarity_measures_hand_checks():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 32, 32, generator=g)
    same = sanity.similarity(a, 2 * a + 1)  # monotone transform: ranks and min-max maps agree
    for measure in ("spearman", "spearman_abs", "ssim", "hog"):
        assert same[measure].tolist() == pytest.approx([1.0] * 3, abs=1e-6), measure
    neg = sanity.similarity(a, -a, ("spearman", "spearman_abs"))
    assert neg["spearman"].tolist() == pytest.approx([-1.0] * 3) and neg["spearman_abs"].tolist() == pytest.approx([1.0] * 3)
    zero = sanity.similarity(a, torch.zeros_like(a), ("spearman_abs",))
    assert zero["spearman_abs"].tolist() == [0.0, 0.0, 0.0]  # a constant map keeps no ranking
    with pytest.raises(ValueError, match="unknown similarity"):
        sanity.similarity(a, a, ("pearson",))


def test_data_randomisation_with_the_trainer():
    imgs, y = _digits(256)
    train = [Sample(image=imgs[i], id=str(i), target=int(y[i])) for i in range(256)]
    permuted = sanity.PermutedLabels(train, seed=0)
    labels = [permuted[i].target for i in range(256)]
    assert sorted(labels) == sorted(int(t) for t in y) and labels != [int(t) for t in y]
    assert torch.equal(permuted[5].image, train[5].image)
    model = _net(0)
    from gradsum.train import fit

    fit(model, train, task="classification", epochs=1, seed=0, progress=False)
    randomized = sanity.train_on_permuted_labels(lambda: _net(0), train, epochs=1, seed=0)
    res = sanity.data_randomization(model.eval(), randomized, imgs[:8], ["gradcam", "saliency"], layer="act4", measures=("spearman_abs", "ssim"))
    verdict = res.verdict()
    assert list(verdict["method"]) == ["gradcam", "saliency"] and res.settings["mode"] == "data"
    assert verdict["similarity"].between(-1, 1).all()
    assert set(res.frame["layer"]) == {"permuted labels"}


def test_target_is_fixed_on_the_original_model():
    from gradsum.core.targets import ClassTarget, RegressionTarget

    model = _net(0).eval()
    x = torch.rand(4, 3, 32, 32)
    fixed = sanity._fixed_target(model, x, None)
    assert isinstance(fixed, ClassTarget) and torch.equal(fixed.index, model(x).argmax(1))
    reg = RegressionTarget(0, sign=-1)
    assert sanity._fixed_target(model, x, reg) is reg  # a regression target keeps its sign
