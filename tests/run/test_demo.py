"""`gradsum demo` end to end on a tiny configuration: every stage runs, the report has every
section, and it renders in headless Chromium with all images decoded."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from browser import needs_chromium, open_page
from gradsum.core.devices import resolve_device
from gradsum.run.demo import DemoConfig, run_demo

TINY = DemoConfig(steer_train=48, steer_epochs=2, pothole_train=48, pothole_epochs=1, vit_train=48, vit_epochs=1,
                  test=16, baseline=1,
                  gallery=2, eval_images=2, sanity_images=2,
                  method_options={"integrated-gradients": {"steps": 4}},
                  eval_options={"integrated-gradients": {"steps": 4}, "rise": {"n_masks": 50},
                                "extremal": {"iterations": 5}})


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    report = run_demo(out, TINY, echo=lambda _: None)
    return out, report


def test_demo_writes_every_stage(demo_run):
    out, report = demo_run
    assert report == out / "report.html"
    steering = pd.read_parquet(out / "tables/steering_per_epoch.parquet")
    assert steering["epoch"].tolist() == [1, 2] and (steering["mse"] >= 0).all()
    assert (steering["autonomy_percent"] <= 100).all() and (steering["interventions"] >= 0).all()
    spec = json.loads((out / "report.json").read_text())
    ids = [s["id"] for s in spec["sections"]]
    for expected in ("data", "models", "heatmaps", "pothole_gradsum", "comparison", "epochs", "images", "evaluation",
                     "sanity", "vit", "vit_evaluation"):
        assert expected in ids
    assert len(list((out / "models" / "pilotnet" / "checkpoints").glob("epoch_*.pt"))) == 2
    profile = pd.read_parquet(out / "tables" / "pothole_profile_images.parquet")
    assert set(profile["model"]) == {"no shortcut", "shortcut"} and profile["method"].nunique() == 8
    epochs = pd.read_parquet(out / "tables" / "steering_epochs.parquet")
    assert sorted(epochs["epoch"].unique()) == [1, 2]
    bench = pd.read_parquet(out / "tables" / "benchmark.parquet")
    assert {"gradcam", "integrated-gradients"} <= set(bench["method"])
    verdict = next(s for s in spec["sections"] if s["id"] == "pothole_gradsum")["verdict"]
    assert verdict
    verdicts = pd.read_parquet(out / "tables" / "vit_verdicts.parquet")
    assert set(zip(verdicts["model"], verdicts["method"], strict=True)) == {
        ("CNN", "gradcam"), ("ViT", "gradcam"), ("ViT", "attention-rollout"), ("ViT", "gae"), ("ViT", "legrad")}
    vit_bench = pd.read_parquet(out / "tables" / "vit_benchmark.parquet")
    assert {"attention", "attention-rollout", "gae", "legrad", "gradcam", "random"} == set(vit_bench["method"])
    assert (out / "models" / "vit_shortcut" / "checkpoints" / "epoch_001.pt").exists()
    config = json.loads((out / "demo_config.json").read_text())
    assert config["device"] == "auto" and config["runtime"]["device"] == str(resolve_device("auto"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_demo_on_an_absent_device_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "demo"
    with pytest.raises(ValueError, match="no CUDA device is available here") as info:
        run_demo(out, DemoConfig(device="cuda:1"), echo=lambda _: None)
    assert "\n" not in str(info.value) and not out.exists()


def test_against_random_is_paired_per_image():
    from gradsum.run.demo_vit import _against_random

    rows = []
    for i in range(6):
        noise = 0.01 * (i % 3)
        rows += [("good", i, "deletion", 0.2 + noise), ("random", i, "deletion", 0.4 + noise + 0.05 * (i % 2)),
                 ("same", i, "deletion", 0.4 + noise + 0.05 * ((i + 1) % 2)),
                 ("good", i, "ebpg", 0.3), ("random", i, "ebpg", 0.1 + noise), ("same", i, "ebpg", 0.1 + noise)]
    text = _against_random(pd.DataFrame(rows, columns=["method", "sample", "metric", "value"]))
    assert "good on deletion and EBPG" in text
    assert "same: not distinguishable from the random map" in text


@needs_chromium
def test_demo_report_renders_in_chromium(demo_run):
    out, report = demo_run
    errors, images, headings = open_page(report)
    assert errors == []
    assert len(images) >= 10 and all(done and width > 0 for done, width in images)
    for heading in ("Data", "Models and training", "Heatmaps", "GradSUM profile", "Model and method comparison",
                    "CNN versus ViT: can attention maps be used?"):
        assert heading in headings
