"""`gradsum train` end to end on tiny data, and its one-line user errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import gradsum.models as M
from gradsum.cli import app


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_train_pilotnet_on_roads(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = _run("train", "--model", "pilotnet", "--data", "roads:20:seed=5", "--task", "regression",
               "--epochs", "2", "--batch-size", "8", "--out", str(out), "--no-progress", "--augment", "flip")
    assert res.exit_code == 0, res.output
    assert "best epoch" in res.output
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch_001.pt", "epoch_002.pt"]
    assert (out / "metrics.csv").read_text().splitlines()[0].startswith("epoch,train_loss,train_mae")
    assert (out / "loss.png").is_file() and (out / "history.json").is_file()
    run = json.loads((out / "run.json").read_text())
    assert run["n_train"] == 16 and run["n_val"] == 4 and run["model"] == "pilotnet"
    model = M.load(out / "checkpoints" / "epoch_002.pt", model=M.build("pilotnet"))
    assert model(torch.rand(1, 3, 66, 200)).shape == (1, 1)


def test_train_classifier_with_size_and_val_spec(tmp_path: Path) -> None:
    out = tmp_path / "cls"
    res = _run("train", "--model", "potholenet", "--data", "roads:12:seed=1", "--val", "roads:6:seed=2",
               "--task", "classification", "--epochs", "1", "--size", "32x48", "--out", str(out), "--no-progress")
    assert res.exit_code == 0, res.output
    assert (out / "confusion.png").is_file()
    ckpt = torch.load(out / "checkpoints" / "epoch_001.pt", weights_only=True)
    assert int(ckpt["confusion"].sum()) == 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "ranking"], "--task must be one of"),
        (["--size", "66by200"], "--size must look like HxW"),
        (["--model", "pilotnett"], "did you mean pilotnet"),
        (["--data", "roadz:10"], "bad data spec"),
        (["--epochs", "0"], "--epochs must be >= 1"),
    ],
)
def test_user_errors_are_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    base = {"--model": "pilotnet", "--data": "roads:4", "--task": "regression", "--epochs": "1",
            "--out": str(tmp_path / "x")}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    flat = [item for pair in base.items() for item in pair]
    res = _run("train", *flat, "--no-progress")
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], res.output


def test_refuses_to_overwrite_a_run(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "epoch_001.pt").write_bytes(b"")
    res = _run("train", "--model", "pilotnet", "--data", "roads:4", "--task", "regression",
               "--epochs", "1", "--out", str(tmp_path), "--no-progress")
    assert res.exit_code == 2 and "already holds checkpoints" in res.output
