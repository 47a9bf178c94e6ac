"""A user's ViT from the command line: train vit-tiny, then explain, profile and evaluate it with
Grad-CAM on its token layer and the attention methods, from the checkpoint alone."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gradsum.cli import app

runner = CliRunner()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("vit")
    _ok(["train", "--model", "vit-tiny", "--data", "roads:16:task=pothole,size=64x128", "--task", "classification",
         "--epochs", "1", "--out", str(root / "run")])
    return root, root / "run" / "checkpoints" / "epoch_001.pt"


def test_explain_a_vit_checkpoint_with_attention_methods(checkpoint):
    root, ckpt = checkpoint
    _ok(["data", "synth", "--n", "2", "--size", "64x128", "--out", str(root / "imgs")])
    images = sorted(str(p) for p in (root / "imgs").rglob("*leftImg8bit.png"))
    out = _ok(["explain", *images, "--weights", str(ckpt), "--method", "gradcam,attention-rollout,gae,legrad",
               "--out", str(root / "ex")])
    assert out.splitlines()[0].startswith("model: vit-tiny")
    assert "wrote 4 methods x 2 images" in out
    import numpy as np

    maps = np.load(root / "ex" / "maps.npz")
    assert any("gae" in k for k in maps.files)
    assert all(maps[k].shape[-2:] == (64, 128) for k in maps.files if k != "ids")


def test_profile_and_evaluate_a_vit(checkpoint):
    root, ckpt = checkpoint
    _ok(["profile", "--weights", str(ckpt), "--data", "roads:6:task=pothole,size=64x128",
         "--method", "gradcam,attention-rollout", "--baseline", "1", "--out", str(root / "prof")])
    manifest = json.loads((root / "prof" / "manifest.json").read_text())
    assert "attention-rollout" in json.dumps(manifest)
    out = _ok(["evaluate", "--weights", str(ckpt), "--data", "roads:10:task=pothole,size=64x128",
               "--methods", "attention-rollout,legrad,random", "--target", "1", "--only-with-boxes",
               "--max-images", "2", "--out", str(root / "ev")])
    assert "legrad" in out and "random" in out
