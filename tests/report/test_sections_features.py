"""The report sections "What the layers see" and "How models break" render the surveys the
library computes (gradsum.features.layer_survey, gradsum.adversarial.attack_survey)."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

import gradsum as gs
import gradsum.report.sections_features as sections
from gradsum.adversarial import AttackBudget, attack_survey
from gradsum.features import FeatureBudget, layer_survey
from gradsum.report import ReportSpec, render_report
from gradsum.report.sections_features import adversarial_section, features_section

SIZE = (16, 32)


def net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveMaxPool2d((2, 2)), nn.Flatten(), nn.Linear(24, 2)).eval()


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def scenes() -> gs.data.RoadScenes:
    return gs.data.RoadScenes(16, size=SIZE, seed=5, task="pothole")


@pytest.fixture(scope="module")
def layers(scenes):
    return layer_survey(net(0), scenes, budget=FeatureBudget(images=12, channels=2, patches=2, side=16), seed=3)


@pytest.fixture(scope="module")
def attacks(scenes):
    budget = AttackBudget(attack_images=6, pgd_steps=1, universal_images=5, universal_passes=1, deepfool_iter=3,
                          fool_steps=5)
    return attack_survey({"no shortcut": net(1), "shortcut": net(2)}, scenes, budget=budget, seed=0)


def test_features_section_renders_the_survey(tmp_path, layers):
    spec = ReportSpec("test")
    features_section(tmp_path, spec, dataclasses.replace(layers, patch_attributions=None), name="tiny net")
    section = spec.data["sections"][-1]
    assert (section["id"], section["title"]) == ("features", "What the layers see")
    assert "tiny net" in section["text"][0] and "12 held-out scenes" in section["text"][0]
    figures = [f["path"] for f in section["figures"]]
    assert figures == ["figures/features_filters.png", "figures/features_actmax.png", "figures/features_patches.png"]
    for path in figures:
        assert (tmp_path / path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"patches of {layers.last}" in section["figures"][2]["caption"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "tables/features_channels.parquet"), layers.table())
    spec.save(tmp_path)
    html = render_report(tmp_path).read_text()
    assert "What the layers see" in html and html.count("data:image/png;base64,") == 3


def test_features_section_draws_patch_attributions_when_the_survey_has_them(tmp_path, layers):
    assert layers.patch_attributions is not None and layers.patch_method == "guided-backprop"
    spec = ReportSpec("test")
    features_section(tmp_path, spec, layers, name="tiny net")
    figures = spec.data["sections"][-1]["figures"]
    assert [f["path"] for f in figures[-2:]] == ["figures/features_patches.png", "figures/features_patch_attributions.png"]
    assert "Guided backprop of the patches above" in figures[-1]["caption"]
    assert (tmp_path / figures[-1]["path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_adversarial_section_renders_the_survey(tmp_path, attacks):
    spec = ReportSpec("test")
    adversarial_section(tmp_path, spec, attacks)
    section = spec.data["sections"][-1]
    assert (section["id"], section["title"]) == ("adversarial", "How models break")
    assert "(no shortcut, shortcut)" in section["text"][0]
    assert {f["path"] for f in section["figures"]} == {
        "figures/adv_fooling.png", "figures/adv_accuracy.png", "figures/adv_universal.png", "figures/adv_transfer.png"}
    for f in section["figures"]:
        assert (tmp_path / f["path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for table, frame in (("adv_fooling", attacks.fooling_table()), ("adv_accuracy", attacks.accuracy_table()),
                         ("adv_accuracy_wide", attacks.accuracy_wide()), ("adv_universal", attacks.universal_table()),
                         ("adv_transfer", attacks.transfer_table())):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / f"tables/{table}.parquet"), frame)
    status = section["text"][-1]
    assert "computed on 5 scenes" in status and "5 other scenes" in status
    spec.save(tmp_path)
    html = render_report(tmp_path).read_text()
    assert "How models break" in html and "Transfer matrix" in html


def test_sections_refuse_what_is_not_a_survey(tmp_path, layers, attacks, scenes):
    with pytest.raises(TypeError, match="layer_survey"):
        features_section(tmp_path, ReportSpec("t"), net(0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="attack_survey"):
        adversarial_section(tmp_path, ReportSpec("t"), layers)  # type: ignore[arg-type]


def test_the_report_module_only_renders():
    """No runtime import of the analyses (only type hints): the sections cannot run a model."""
    tree = ast.parse(Path(sections.__file__).read_text())
    hints = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
             for n in ast.walk(node)}
    imported = [n.module if isinstance(n, ast.ImportFrom) else a.name for n in ast.walk(tree)
                if isinstance(n, ast.Import | ast.ImportFrom) and id(n) not in hints
                for a in (n.names if isinstance(n, ast.Import) else [None])]
    assert imported and not [m for m in imported if m and m.startswith(("gradsum.adversarial", "gradsum.features",
                                                                         "gradsum.methods", "gradsum.metrics",
                                                                         "concurrent"))]
