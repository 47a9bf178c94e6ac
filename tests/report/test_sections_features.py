"""The report sections "What the layers see" and "How models break" on tiny models and scenes."""
from __future__ import annotations

from collections import OrderedDict

import pandas as pd
import pytest
import torch
from torch import nn

import gradsum as gs
from gradsum.report import ReportSpec, render_report
from gradsum.report.sections_features import (
    AttackBudget,
    FeatureBudget,
    activation_layers,
    adversarial_section,
    features_section,
)

SIZE = (16, 32)
FEATURES = FeatureBudget(images=12, channels=2, patches=2, side=16)
ATTACKS = AttackBudget(attack_images=6, pgd_steps=1, universal_images=5, universal_passes=1, deepfool_iter=3,
                       fool_steps=5)


def tiny_cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 4, 3, padding=1), bn1=nn.BatchNorm2d(4), act1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(4, 6, 3, padding=1), act2=nn.ReLU(), pool2=nn.AdaptiveMaxPool2d((2, 2)),
        flatten=nn.Flatten(), fc=nn.Linear(24, 2),
    )).eval()


@pytest.fixture(scope="module")
def scenes() -> gs.data.RoadScenes:
    return gs.data.RoadScenes(16, size=SIZE, seed=5, task="pothole")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _state(model: nn.Module) -> tuple:
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            [p.grad for p in model.parameters()])


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


def test_features_section_writes_figures_table_and_section(tmp_path, scenes):
    model = tiny_cnn(0)
    model.train()
    before = _state(model)
    spec = ReportSpec("test")
    features_section(tmp_path, spec, model, scenes, seed=3, name="tiny net", budget=FEATURES)
    assert _state(model) == before
    assert torch.get_num_threads() == 1
    section = spec.data["sections"][-1]
    assert (section["id"], section["title"]) == ("features", "What the layers see")
    figures = [f["path"] for f in section["figures"]]
    assert figures == ["figures/features_filters.png", "figures/features_actmax.png", "figures/features_patches.png"]
    for path in figures:
        assert (tmp_path / path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any("act2" in f["caption"] for f in section["figures"])
    table = pd.read_parquet(tmp_path / "tables/features_channels.parquet")
    assert list(dict.fromkeys(table["layer"])) == ["act1", "act2"]
    assert len(table) == 4 and table["channel"].between(0, 5).all()
    # the channels shown are those most active on the data, and their optimised images beat the best scene
    assert (table["optimised"] > table["data_best"]).all()
    spec.save(tmp_path)
    html = render_report(tmp_path).read_text()
    assert "What the layers see" in html and html.count("data:image/png;base64,") == 3


def test_adversarial_section_writes_tables_and_figures(tmp_path, scenes):
    models = {"no shortcut": tiny_cnn(1), "shortcut": tiny_cnn(2)}
    before = {m: _state(model) for m, model in models.items()}
    torch.set_num_threads(2)
    spec = ReportSpec("test")
    adversarial_section(tmp_path, spec, models, scenes, seed=0, budget=ATTACKS)
    assert torch.get_num_threads() == 2
    assert {m: _state(model) for m, model in models.items()} == before
    section = spec.data["sections"][-1]
    assert (section["id"], section["title"]) == ("adversarial", "How models break")
    for f in section["figures"]:
        assert (tmp_path / f["path"]).is_file()
    assert {f["path"] for f in section["figures"]} == {
        "figures/adv_fooling.png", "figures/adv_accuracy.png", "figures/adv_universal.png", "figures/adv_transfer.png"}

    acc = pd.read_parquet(tmp_path / "tables/adv_accuracy.parquet")
    assert set(acc["attack"]) == {"clean", "FGSM", "PGD"}
    assert sorted(set(acc.loc[acc["attack"] == "PGD", "eps_255"])) == [1, 2, 4, 8]
    assert len(acc) == 2 * (1 + 2 * 4) and acc["accuracy"].between(0, 1).all()
    wide = pd.read_parquet(tmp_path / "tables/adv_accuracy_wide.parquet")
    assert list(wide.columns[:3]) == ["model", "attack", "clean (%)"] and len(wide) == 4

    fool = pd.read_parquet(tmp_path / "tables/adv_fooling.parquet")
    assert list(fool["model"]) == list(models)
    assert ((fool["p_final"] >= 0.99) == fool["reached_0.99"]).all()
    assert (fool["steps"] <= ATTACKS.fool_steps).all() and (fool["linf_255"] <= fool["steps"] + 1e-3).all()

    uni = pd.read_parquet(tmp_path / "tables/adv_universal.parquet")
    assert (uni["linf_255"] <= uni["xi_255"] + 1e-4).all()
    assert (uni["reached"] == (uni["fooling_rate_fit"] >= uni["target_rate"])).all()
    transfer = pd.read_parquet(tmp_path / "tables/adv_transfer.parquet")
    assert list(transfer["source"]) == list(models) and list(transfer.columns[1:]) == list(models)
    for _, row in uni.iterrows():  # the diagonal is the held-out fooling rate of the model's own perturbation
        assert transfer.set_index("source").loc[row["model"], row["model"]] == pytest.approx(row["fooling_rate_heldout"])

    spec.save(tmp_path)
    html = render_report(tmp_path).read_text()
    assert "How models break" in html and "Transfer matrix" in html


def test_adversarial_section_is_deterministic(tmp_path, scenes):
    models = {"a": tiny_cnn(1), "b": tiny_cnn(2)}
    for run in ("one", "two"):
        adversarial_section(tmp_path / run, ReportSpec("t"), models, scenes, seed=4, budget=ATTACKS)
    for table in ("adv_accuracy", "adv_fooling", "adv_universal", "adv_transfer"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "one/tables" / f"{table}.parquet"),
                                      pd.read_parquet(tmp_path / "two/tables" / f"{table}.parquet"))


def test_same_model_twice_runs_sequentially_and_keeps_its_state(tmp_path, scenes):
    model = tiny_cnn(1)
    model.train()
    before = _state(model)
    torch.set_num_threads(2)
    adversarial_section(tmp_path, ReportSpec("t"), {"a": model, "b": model}, scenes, budget=ATTACKS)
    assert _state(model) == before and torch.get_num_threads() == 2
    transfer = pd.read_parquet(tmp_path / "tables/adv_transfer.parquet").set_index("source")
    assert transfer.loc["a", "a"] == transfer.loc["a", "b"]  # one model: its own perturbation, same rate


def test_adversarial_section_bad_input(tmp_path, scenes):
    with pytest.raises(ValueError, match="non-empty dict"):
        adversarial_section(tmp_path, ReportSpec("t"), {}, scenes, budget=ATTACKS)
    steering = gs.data.RoadScenes(12, size=SIZE, task="steering")
    with pytest.raises(ValueError, match="int targets"):
        adversarial_section(tmp_path, ReportSpec("t"), {"a": tiny_cnn(1)}, steering, budget=ATTACKS)
    with pytest.raises(ValueError, match="at least 10"):
        adversarial_section(tmp_path, ReportSpec("t"), {"a": tiny_cnn(1)},
                            gs.data.RoadScenes(6, size=SIZE, task="pothole"), budget=ATTACKS)
