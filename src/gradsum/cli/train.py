"""`gradsum train`: train a model on a data SPEC, with a checkpoint every epoch."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from ._common import (
    DEVICE_OPTION,
    RESIZE_OPTION,
    UserError,
    check_out_dir,
    device_option,
    user_errors,
)
from ._inputs import data_size_option, size_options
from ._model import MEAN_OPTION, MODEL_HELP, NORMALIZE_OPTION, STD_OPTION, TRUST_OPTION, load_model

__all__ = ["register", "train"]

_TASKS = ("regression", "classification", "multilabel")
#: what collate says when a batch mixes image sizes (the trainer batches without --size)
_MIXED_SIZES = "collate needs images of one size"


def _load(spec: str, task: str, size: tuple[int, int] | None, resize: str | None = None) -> Any:
    """The dataset of a SPEC at `size` (file datasets through Fit with `resize`; roads and
    digits generated at it); roads get the task's target."""
    from gradsum.data import parse_spec

    from ._inputs import open_dataset

    kind, _, opts = parse_spec(spec)
    kw: dict[str, Any] = {}
    if kind == "roads" and "task" not in opts:
        kw["task"] = "steering" if task == "regression" else "pothole"
    return open_dataset(spec, size, resize, **kw)


@user_errors
def train(
    model: str = typer.Option(..., "--model", help=MODEL_HELP),
    data: str = typer.Option(..., "--data", help="Data SPEC, e.g. roads:2000 or digits or folder:DIR."),
    task: str = typer.Option(..., "--task", help="regression | classification | multilabel."),
    epochs: int = typer.Option(..., "--epochs", help="Number of epochs (one checkpoint each)."),
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoints/, metrics.csv, loss.png, ..."),
    val: str | None = typer.Option(None, "--val", help="Validation data SPEC (default: split off --val-fraction)."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", help="Share of --data held out for validation when no --val; 0 = none."),
    batch_size: int = typer.Option(32, "--batch-size", help="Batch size."),
    lr: float = typer.Option(1e-3, "--lr", help="AdamW learning rate."),
    weight_decay: float = typer.Option(1e-4, "--weight-decay", help="AdamW weight decay."),
    seed: int = typer.Option(0, "--seed", help="Seed for init, shuffling, split and augmentation."),
    size: str | None = data_size_option("images keep their own sizes, which must then be equal; roads and digits "
                                        "are generated at --size"),
    resize: str | None = RESIZE_OPTION,
    augment: str | None = typer.Option(None, "--augment", help="Comma list of flip, brightness, rotate (flip negates steering)."),
    num_classes: int | None = typer.Option(None, "--num-classes", help="Outputs of the model (default: from the data's classes)."),
    weights: Path | None = typer.Option(None, "--weights", help="Start from these weights (a state dict or checkpoint; "
                                                                "with --num-classes the head is replaced by a new one)."),
    normalize: str = NORMALIZE_OPTION,
    mean: str | None = MEAN_OPTION,
    std: str | None = STD_OPTION,
    trust_pickle: bool = TRUST_OPTION,
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Keep samples in memory after the first epoch."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    device_: str = DEVICE_OPTION,
) -> None:
    """Train a model and write a checkpoint per epoch, metrics.csv, loss.png (and
    confusion.png for classifiers) into --out.

    Example: gradsum train --model pilotnet --data roads:2000 --task regression --epochs 6 --out runs/pilotnet --augment flip

    Photos of mixed sizes on the first GPU: gradsum train --model torchvision:resnet18 --data folder:photos --size 224x224 --resize letterbox --task classification --epochs 5 --out runs/photos --device cuda:0
    """
    import gradsum.train as gt
    from gradsum.core.devices import device_info
    from gradsum.data import parse_spec
    from gradsum.train.cache import CachedDataset

    if task not in _TASKS:
        raise UserError(f"--task must be one of {', '.join(_TASKS)}, got {task!r}")
    if epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {epochs}")
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    check_out_dir(out)
    if out.exists() and any((out / "checkpoints").glob("epoch_*.pt")):
        raise UserError(f"{out} already holds checkpoints; choose a new --out folder or delete it")
    device = device_option(device_)  # before any data or model is loaded
    hw, resize = size_options(size, resize)
    dataset = _load(data, task, hw, resize)
    if len(dataset) == 0:
        raise UserError(f"--data {data} has no samples")
    if cache:
        dataset = CachedDataset(dataset)
    if val is not None:
        train_set, val_set = dataset, _load(val, task, hw, resize)
        if cache:
            val_set = CachedDataset(val_set)
    elif val_fraction > 0:
        stratify = None
        targets = getattr(dataset, "targets", None)
        if task == "classification" and targets is not None and not callable(targets):
            stratify = list(targets)
        tr_idx, va_idx = gt.train_val_split(len(dataset), val_fraction, seed=seed, stratify=stratify)
        train_set, val_set = gt.subset(dataset, tr_idx), gt.subset(dataset, va_idx)
    else:
        train_set, val_set = dataset, None
    classes = getattr(dataset, "classes", None)
    if num_classes is None and task != "regression" and classes:
        num_classes = len(classes)
    net = load_model(model, weights, num_classes, normalize=normalize, mean=mean, std=std, trust=trust_pickle,
                     new_head=weights is not None and num_classes is not None, device=device)
    try:
        history = gt.fit(
            net, train_set, val_set, task=task, epochs=epochs, batch_size=batch_size, lr=lr,
            weight_decay=weight_decay, augment=gt.parse_augment(augment, task), seed=seed, out=out,
            progress=progress, reinit=weights is None, class_names=classes if classes and task != "regression" else None,
            device=device,
        )
    except ValueError as exc:
        if _MIXED_SIZES not in str(exc) or hw is not None:
            raise
        raise UserError(f"--data {data} has images of several sizes, which cannot be batched together; give --size HxW "
                        "(and --resize letterbox|stretch|center-crop), e.g. --size 224x224") from None
    runtime = device_info(device)
    manifest = {
        "command": "train", "model": model, "data": data, "val": val, "val_fraction": val_fraction,
        "task": task, "epochs": epochs, "batch_size": batch_size, "lr": lr,
        "weight_decay": weight_decay, "seed": seed, "size": list(hw) if hw else None,
        "resize": resize if hw and parse_spec(data)[0] not in ("roads", "digits") else None,
        "augment": augment, "num_classes": num_classes, "weights": str(weights) if weights else None,
        "n_train": len(train_set), "n_val": len(val_set) if val_set is not None else 0,
        "torch": runtime["torch"], "runtime": runtime, "card": _card_dict(net),
    }
    (out / "run.json").write_text(json.dumps(manifest, indent=2))
    best = history.best
    shown = "  ".join(f"{k} {v:.4g}" for k, v in best.items() if k not in ("epoch", "lr", "seconds"))
    typer.echo(f"best epoch {history.best_epoch}/{epochs}: {shown}")
    typer.echo(f"wrote {len(history.checkpoints)} checkpoints, metrics.csv and loss.png to {out}")


def _card_dict(net: Any) -> dict[str, Any] | None:
    from gradsum.models import card_of

    card = card_of(net)
    return card.to_dict() if card else None


def register(app: typer.Typer) -> None:
    """Add `gradsum train` to the CLI."""
    app.command("train")(train)
