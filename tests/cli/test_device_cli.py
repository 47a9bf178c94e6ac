"""--device on `gradsum train`, `features` (maps, maximize, patches), `attack` (fgsm, pgd,
deepfool, universal, fool) and `demo`: an absent device is one line, exit 2, resolved before
the model or the data are read and before anything is written; --device cpu runs and is
recorded in the run's JSON; on a CUDA machine train and attack fgsm run on the GPU."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from gradsum.cli import app

runner = CliRunner()

# a model and a data SPEC that do not exist: the device must be refused before either is read
BAD = ["--model", "no-such-model", "--data", "no-such-kind:1"]
COMMANDS = {
    "train": ["train", *BAD, "--task", "regression", "--epochs", "1"],
    "features maps": ["features", "maps", *BAD, "--layer", "x"],
    "features maximize": ["features", "maximize", "--model", "no-such-model", "--layer", "x"],
    "features patches": ["features", "patches", *BAD, "--layer", "x"],
    "attack fgsm": ["attack", "fgsm", *BAD],
    "attack pgd": ["attack", "pgd", *BAD],
    "attack deepfool": ["attack", "deepfool", *BAD],
    "attack universal": ["attack", "universal", *BAD],
    "attack fool": ["attack", "fool", "--model", "no-such-model", "--target", "1"],
    "demo": ["demo"],
}


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


ABSENT = [
    pytest.param("cuda", "no CUDA device is available here",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")),
    pytest.param("cuda:7", "no CUDA device is available here",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")),
    pytest.param("mps", "MPS is not available here",
                 marks=pytest.mark.skipif(_mps_available(), reason="MPS is present")),
    pytest.param("tpu", "is not a device name", id="tpu"),
]


@pytest.mark.parametrize(("device", "message"), ABSENT)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_absent_device_is_one_line_exit_2_nothing_written(tmp_path: Path, command: str, device: str,
                                                          message: str) -> None:
    out = tmp_path / "out"
    r = runner.invoke(app, [*COMMANDS[command], "--out", str(out), "--device", device])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradsum: error: --device"), r.output
    assert message in lines[0] and repr(device) in lines[0]
    assert not out.exists()


def test_every_model_command_documents_device() -> None:
    for command in COMMANDS.values():
        words = [w for w in command[:2] if not w.startswith("-")]
        r = runner.invoke(app, [*words, "--help"])
        assert r.exit_code == 0 and "--device" in r.output, words


DIGITS = ["--model", "digitsnet", "--data", "digits:size=16,split=test,test_fraction=0.05"]  # 90 images
TRAIN = ["train", *DIGITS, "--task", "classification", "--epochs", "1", "--batch-size", "16", "--no-progress"]


def test_train_on_cpu_records_the_device_and_equals_auto_on_a_cpu_machine(tmp_path: Path) -> None:
    devices = ["cpu"] if torch.cuda.is_available() or _mps_available() else ["cpu", "auto"]
    metrics = []
    for device in devices:
        out = tmp_path / device
        r = runner.invoke(app, [*TRAIN, "--out", str(out), "--device", device])
        assert r.exit_code == 0, r.output
        run = json.loads((out / "run.json").read_text())
        assert run["runtime"]["device"] == "cpu" and run["runtime"]["torch"] == torch.__version__
        assert "name" in run["runtime"] and "cuda" in run["runtime"]
        ckpt = torch.load(out / "checkpoints" / "epoch_001.pt", weights_only=True)
        assert all(t.device.type == "cpu" for t in ckpt["state_dict"].values())
        metrics.append(pd.read_csv(out / "metrics.csv").drop(columns=["seconds"]))
    for other in metrics[1:]:
        pd.testing.assert_frame_equal(metrics[0], other)


def test_attacks_on_cpu_record_the_device(tmp_path: Path) -> None:
    r = runner.invoke(app, ["attack", "fgsm", *DIGITS, "--limit", "4", "--out", str(tmp_path), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "fgsm.json").read_text())["runtime"]["device"] == "cpu"
    # (pgd and deepfool share fgsm's setup and report; their own tests run them on the default device)
    r = runner.invoke(app, ["attack", "universal", *DIGITS, "--limit", "2", "--delta", "0.5", "--max-passes", "1",
                            "--out", str(tmp_path), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "universal.json").read_text())["runtime"]["device"] == "cpu"
    r = runner.invoke(app, ["attack", "fool", "--model", "digitsnet", "--target", "1", "--size", "16", "--n", "1",
                            "--max-steps", "2", "--out", str(tmp_path), "--device", "cpu"])
    assert r.exit_code == 0, r.output


def test_features_on_cpu(tmp_path: Path) -> None:
    r = runner.invoke(app, ["features", "maps", *DIGITS, "--layer", "features.act1", "--out", str(tmp_path),
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["features", "maximize", "--model", "digitsnet", "--layer", "features.act1", "--channels",
                            "0-1", "--size", "16", "--preset", "keras", "--steps", "2", "--out", str(tmp_path),
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["features", "patches", *DIGITS, "--layer", "features.act1", "--limit", "8", "--k", "2",
                            "--out", str(tmp_path), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert len(pd.read_parquet(next(tmp_path.glob("patches_*.parquet")))) > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_train_and_fgsm_on_cuda(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = runner.invoke(app, [*TRAIN, "--out", str(out), "--device", "cuda"])
    assert r.exit_code == 0, r.output
    runtime = json.loads((out / "run.json").read_text())["runtime"]
    assert runtime["device"].startswith("cuda") and runtime["name"] == torch.cuda.get_device_name(0)
    ckpt = out / "checkpoints" / "epoch_001.pt"
    assert all(t.device.type == "cpu" for t in torch.load(ckpt, weights_only=True)["state_dict"].values())
    r = runner.invoke(app, ["attack", "fgsm", "--weights", str(ckpt), "--data", DIGITS[-1],
                            "--limit", "8", "--out", str(tmp_path / "attack"), "--device", "cuda:0"])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "attack" / "fgsm.json").read_text())
    assert summary["runtime"]["device"] == "cuda:0" and summary["images"] == 8
    assert (pd.read_csv(tmp_path / "attack" / "fgsm.csv")["linf"] <= 8 / 255 + 1e-6).all()
