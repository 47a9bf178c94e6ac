"""fit(): learning, per-epoch checkpoints, files, determinism, state left behind."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

import gradsum.models as M
import gradsum.train as T
from gradsum.data.samples import Sample


class TinyRegressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_classifier_learns_and_writes_run_folder(bar_data, tmp_path: Path) -> None:
    train, val = bar_data
    model = M.PotholeNet()
    h = T.fit(model, train, val, task="classification", epochs=4, batch_size=16, lr=3e-3, reinit=True,
              out=tmp_path, progress=False, class_names=["right", "left"])
    assert h.epochs[-1]["train_loss"] < h.epochs[0]["train_loss"]
    assert h.final["val_accuracy"] >= 0.9
    assert [p.name for p in h.checkpoints] == [f"epoch_{k:03d}.pt" for k in range(1, 5)]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [p.name for p in h.checkpoints]
    ckpt = torch.load(h.checkpoints[1], weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["metrics"]["epoch"] == 2
    assert ckpt["metrics"]["val_accuracy"] == pytest.approx(h.epochs[1]["val_accuracy"])
    assert ckpt["confusion"].sum() == len(val)
    restored = M.load(h.checkpoints[-1], model=M.PotholeNet())
    x = torch.stack([s.image for s in val[:4]])
    torch.testing.assert_close(restored(x), model(x))
    with open(h.metrics_csv) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"} <= set(rows[0])
    for png in (h.loss_plot, h.confusion_plot):
        assert png is not None and png.parent == tmp_path
        with Image.open(png) as im:
            assert im.format == "PNG" and im.width > 200
    assert (tmp_path / "history.json").is_file()
    cm = h.confusions[-1]
    assert cm.shape == (2, 2) and int(cm.sum()) == len(val)
    assert int(cm.trace()) == round(h.final["val_accuracy"] * len(val))


def test_regression_learns_and_reports_mae_rmse(bright_data, tmp_path: Path) -> None:
    train, val = bright_data
    h = T.fit(TinyRegressor(), train, val, epochs=6, batch_size=8, lr=3e-2, reinit=True, out=tmp_path, progress=False)
    assert h.final["train_loss"] < h.epochs[0]["train_loss"]
    assert h.final["val_mae"] < 0.15
    assert h.final["val_rmse"] >= h.final["val_mae"]
    assert h.final["val_rmse"] ** 2 == pytest.approx(h.final["val_loss"], rel=1e-4)
    assert h.confusions == [] and h.confusion_plot is None and h.loss_plot.is_file()
    assert h.monitor == "val_loss" and h.best == min(h.epochs, key=lambda r: r["val_loss"])
    assert h.best_checkpoint == h.checkpoints[h.best_epoch - 1]


def test_same_seed_same_metrics_one_epoch(make_bars) -> None:
    data = make_bars(48, 3)

    def run(seed: int) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        model = M.PotholeNet()
        h = T.fit(model, data, task="classification", epochs=1, batch_size=8, seed=seed,
                  reinit=True, augment=T.BatchFlip(), progress=False)
        row = {k: v for k, v in h.epochs[0].items() if k != "seconds"}
        return row, model.state_dict()

    a, sa = run(0)
    b, sb = run(0)
    c, _ = run(1)
    assert a == b
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert a != c


def test_model_left_in_eval_on_cpu_and_global_rng_untouched(bar_data) -> None:
    train, _ = bar_data
    model = M.PotholeNet().train()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    T.fit(model, train[:16], task="classification", epochs=1, batch_size=8, progress=False)
    assert torch.equal(torch.rand(3), expected)
    assert not model.training and all(p.device.type == "cpu" for p in model.parameters())
    assert all(p.grad is None or True for p in model.parameters())


def test_model_left_in_eval_even_on_error(bar_data) -> None:
    train, _ = bar_data
    model = M.DigitsNet().train()
    bad = [Sample(image=s.image, id=s.id, target=None) for s in train[:8]]
    with pytest.raises(ValueError, match="samples without a target: bars-0-"):
        T.fit(model, bad, task="classification", epochs=1, progress=False)
    assert not model.training


def test_progress_bar_runs(bar_data, capsys) -> None:
    train, _ = bar_data
    T.fit(M.PotholeNet(), train[:16], task="classification", epochs=1, batch_size=8, progress=True)
    assert "epoch 1" in capsys.readouterr().out


def test_multilabel_bce() -> None:
    g = torch.Generator().manual_seed(0)
    data = []
    for i in range(32):
        img = torch.rand(3, 16, 16, generator=g) * 0.2
        t = torch.tensor([float(i % 2), float((i // 2) % 2)])
        img[0] += 0.7 * t[0]
        img[1] += 0.7 * t[1]
        data.append(Sample(image=img.clamp(0, 1), id=str(i), target=t))
    h = T.fit(M.DigitsNet(num_classes=2), data, task="multilabel", epochs=4, batch_size=8, lr=5e-3,
              reinit=True, progress=False)
    assert h.final["train_loss"] < h.epochs[0]["train_loss"]
    assert 0.0 <= h.final["train_exact_match"] <= h.final["train_accuracy"] <= 1.0


def test_restore_best(bright_data, tmp_path: Path) -> None:
    train, val = bright_data
    model = TinyRegressor()
    h = T.fit(model, train, val, epochs=3, lr=0.5, out=tmp_path, progress=False, restore_best=True)
    best = torch.load(h.best_checkpoint, weights_only=True)["state_dict"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, best[k])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"task": "segmentation"}, ValueError, "task must be one of"),
        ({"epochs": 0}, ValueError, "epochs must be a positive"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"lr": 0}, ValueError, "lr must be > 0"),
        ({"monitor": "val_loss"}, ValueError, "needs validation data"),
        ({"monitor": "train_f1"}, ValueError, "not a reported metric"),
        ({"augment": "flip"}, TypeError, "augment must be"),
    ],
)
def test_argument_errors(bar_data, kwargs, error, match) -> None:
    train, _ = bar_data
    args = {"task": "classification", "epochs": 1, "progress": False, **kwargs}
    with pytest.raises(error, match=match):
        T.fit(M.PotholeNet(), train[:8], **args)


def test_dataset_errors() -> None:
    with pytest.raises(ValueError, match="train dataset is empty"):
        T.fit(M.PotholeNet(), [], progress=False)
    with pytest.raises(TypeError, match="indexable dataset"):
        T.fit(M.PotholeNet(), 5, progress=False)
    data = [Sample(image=torch.rand(3, 8, 8), id=str(i), target=0.5) for i in range(4)]
    with pytest.raises(ValueError, match="class indices"):
        T.fit(M.PotholeNet(), data, task="classification", progress=False)
    bad = [Sample(image=torch.rand(3, 8, 8), id=str(i), target=3) for i in range(4)]
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        T.fit(M.PotholeNet(), bad, task="classification", progress=False)
    with pytest.raises(ValueError, match="one output per target"):
        T.fit(M.DigitsNet(), data, task="regression", progress=False)


def test_per_sample_augment_gets_generator(bar_data) -> None:
    train, _ = bar_data
    seen = []

    def aug(sample: Sample, generator: torch.Generator) -> Sample:
        seen.append(float(torch.rand(1, generator=generator)))
        return sample

    T.fit(M.PotholeNet(), train[:8], task="classification", epochs=1, batch_size=4, augment=aug, progress=False)
    assert len(seen) == 8 and len(set(seen)) == 8
