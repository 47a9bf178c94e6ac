"""A plain, readable training loop: AdamW, seeded shuffling, optional augmentation, a
checkpoint every epoch (GradSUM profiles heatmaps per epoch), metrics CSV and figures."""
from __future__ import annotations

import contextlib
import csv
import inspect
import io
import json
import math
import numbers
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradsum.data.samples import Batch, Sample, collate
from gradsum.models.card import ModelCard, card_of
from gradsum.models.io import CHECKPOINT_FORMAT, atomic_torch_save
from gradsum.train.augment import BatchAugment
from gradsum.train.metrics import TASKS, Meter, output_logits, prepare_targets

__all__ = ["fit", "evaluate", "History", "checkpoint_path"]

Augment = BatchAugment | Callable[..., Any]


def checkpoint_path(out: str | os.PathLike[str], epoch: int) -> Path:
    """out/checkpoints/epoch_{epoch:03d}.pt"""
    return Path(out) / "checkpoints" / f"epoch_{epoch:03d}.pt"


@dataclass
class History:
    """What `fit` did: one metrics dict per epoch (``epoch``, ``train_loss``, ``train_mae`` |
    ``train_accuracy``, ``val_*`` when there is validation data, ``lr``, ``seconds``), the
    best epoch by `monitor` (lowest), the confusion matrix per epoch (classification; on val
    when given, else the running train predictions) and the files written."""

    task: str
    seed: int
    monitor: str
    epochs: list[dict[str, float]] = field(default_factory=list)
    confusions: list[torch.Tensor] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0
    out: Path | None = None
    checkpoints: list[Path] = field(default_factory=list)
    metrics_csv: Path | None = None
    loss_plot: Path | None = None
    confusion_plot: Path | None = None

    @property
    def best(self) -> dict[str, float]:
        """Metrics of the best epoch."""
        return self.epochs[self.best_epoch - 1]

    @property
    def final(self) -> dict[str, float]:
        """Metrics of the last epoch."""
        return self.epochs[-1]

    @property
    def best_checkpoint(self) -> Path | None:
        return self.checkpoints[self.best_epoch - 1] if self.checkpoints else None

    def to_dict(self) -> dict[str, Any]:
        def rel(p: Path | None) -> str | None:
            return None if p is None else str(p)

        return {
            "task": self.task,
            "seed": self.seed,
            "monitor": self.monitor,
            "best_epoch": self.best_epoch,
            "seconds": self.seconds,
            "epochs": self.epochs,
            "confusions": [c.tolist() for c in self.confusions],
            "checkpoints": [str(p) for p in self.checkpoints],
            "metrics_csv": rel(self.metrics_csv),
            "loss_plot": rel(self.loss_plot),
            "confusion_plot": rel(self.confusion_plot),
        }


def _batches(dataset: Any, order: Sequence[int], batch_size: int, drop_single: bool) -> Iterator[list[Sample]]:
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        if drop_single and len(idx) == 1 and len(order) > 1:
            return  # a lone last sample breaks BatchNorm in train mode
        yield [dataset[i] for i in idx]


def _batch_maker(augment: Augment | None) -> Callable[[list[Sample], torch.Generator], Batch]:
    """samples -> Batch, applying `augment` (batch-level, or per sample before collate)."""
    if augment is None:
        return lambda samples, g: collate(samples)
    if isinstance(augment, BatchAugment):
        return lambda samples, g: augment(collate(samples), g)
    try:
        takes_generator = "generator" in inspect.signature(augment).parameters
    except (TypeError, ValueError):
        takes_generator = False
    if takes_generator:
        return lambda samples, g: collate([augment(s, generator=g) for s in samples])
    return lambda samples, g: collate([augment(s) for s in samples])


def _check_dataset(name: str, dataset: Any) -> int:
    if dataset is None:
        return 0
    if isinstance(dataset, torch.Tensor) or not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise TypeError(f"{name} must be an indexable dataset (len() and [i] -> Sample), got {type(dataset).__name__}")
    n = len(dataset)
    if n == 0:
        raise ValueError(f"the {name} dataset is empty")
    first = dataset[0]
    if not isinstance(first, Sample):
        raise TypeError(f"{name}[0] is a {type(first).__name__}, not a gradsum.data.Sample; wrap images and "
                        "targets as Sample(image, id, target=...)")
    return n


def _check_number(value: Any, name: str, positive: bool = False) -> float:
    """A finite float > 0 (positive) or >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or (
            value <= 0 if positive else value < 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'} (a finite number), got {value!r}")
    return float(value)


def _model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (else buffer); the CPU for a model without either."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _check_device(device: str | torch.device | int | None, model: nn.Module) -> torch.device:
    """`device` as a torch.device that exists here ("auto": CUDA, else MPS, else the CPU; see
    `gradsum.core.devices.resolve_device`); None = the model's own device."""
    from gradsum.core.devices import resolve_device

    if device is None:
        return _model_device(model)
    if isinstance(device, bool) or not isinstance(device, str | torch.device | int):
        raise TypeError(f"device must be a device name such as 'cpu', 'cuda', 'cuda:1' or 'auto', or a torch.device; "
                        f"got {type(device).__name__}")
    return resolve_device(device)


def _to(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU batch on `device`; to CUDA without waiting for the copy (the next kernel on the
    stream orders after it)."""
    return tensor.to(device, non_blocking=device.type == "cuda")


def _check_class_weights(class_weights: Any) -> torch.Tensor | None:
    """class_weights as a float32 (K,) tensor of finite weights >= 0, not all zero."""
    if class_weights is None:
        return None
    try:
        weights = torch.as_tensor(class_weights, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"class_weights must be one number per class; got {type(class_weights).__name__}") from None
    if weights.ndim != 1 or weights.numel() == 0:
        raise ValueError(f"class_weights must be one number per class (K,); got shape {tuple(weights.shape)}")
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()) or not bool((weights > 0).any()):
        raise ValueError(f"class_weights must be finite, >= 0 and not all zero; got {weights.tolist()}")
    return weights


def _reset_parameters(model: nn.Module) -> None:
    for m in model.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Any,
    task: str = "regression",
    batch_size: int = 64,
    device: str | torch.device | None = None,
    class_weights: torch.Tensor | None = None,
) -> tuple[dict[str, float], torch.Tensor | None]:
    """Metrics of `model` on `dataset` in eval mode (restores the model's mode afterwards):
    ``(metrics, confusion)``; confusion is None except for classification. Batches move to
    `device` (None = the model's device; the model itself is not moved); one host sync at
    the end."""
    _check_task(task)
    _check_dataset("evaluation", dataset)
    device = _check_device(device, model)
    was_training = model.training
    model.eval()
    meter = Meter(task, class_weights)
    try:
        for samples in _batches(dataset, range(len(dataset)), batch_size, drop_single=False):
            batch = collate(samples)
            x = _to(batch.images, device)
            host_y = prepare_targets(batch.targets, task, batch.ids)
            y = _to(host_y, device)
            out = output_logits(model(x))
            meter.update(out, y, meter.loss(out, y, host_target=host_y), checked=True)
    finally:
        model.train(was_training)
    return meter.compute(), meter.confusion


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")


def _write_csv(rows: list[dict[str, float]], path: Path) -> None:
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    _atomic_text(buf.getvalue(), path)


def _atomic_text(text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def _progress_bar(enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"), transient=False,
    ) as bar:
        yield bar


def _train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    batches: Iterator[Batch],
    task: str,
    weights: torch.Tensor | None,
    device: torch.device,
    bar: Any,
    label: str,
    steps: int,
) -> tuple[dict[str, float], torch.Tensor | None]:
    """One pass over the batches: forward, loss, backward, AdamW step; running metrics."""
    model.train()
    meter = Meter(task, weights)
    task_id = bar.add_task(label, total=steps, info="") if bar is not None else None
    for step, batch in enumerate(batches, start=1):
        x = _to(batch.images, device)
        host_y = prepare_targets(batch.targets, task, batch.ids)  # checked on the CPU: no device sync
        y = _to(host_y, device)
        logits = output_logits(model(x))
        loss = meter.loss(logits, y, host_target=host_y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        meter.update(logits, y, loss, checked=True)
        if bar is not None:
            info = {"info": f"loss {float(loss.detach()):.4g}"} if step % 5 == 0 or step == steps else {}
            bar.update(task_id, advance=1, **info)
    return meter.compute(), meter.confusion


def fit(
    model: nn.Module,
    train: Any,
    val: Any = None,
    task: str = "regression",
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    augment: Augment | None = None,
    seed: int = 0,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    reinit: bool = False,
    class_weights: torch.Tensor | Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
    monitor: str | None = None,
    restore_best: bool = False,
) -> History:
    """Train `model` on `train` (an indexable dataset of Samples) and return a History.

    Loss: regression MSE (reports MAE and RMSE); classification cross-entropy on logits
    (reports accuracy and a confusion matrix); multilabel BCE-with-logits on multi-hot
    targets. Optimiser AdamW(lr, weight_decay). Shuffling uses torch.Generator(seed);
    augmentation a second generator (seed + 1); dropout runs under a forked global RNG seeded
    with `seed`, which is restored afterwards. ``reinit=True`` re-initialises every layer's
    parameters from `seed` first. Same seed and data -> identical metrics on the CPU.

    augment: a `gradsum.train.augment.BatchAugment` (called on each CPU batch with a
    generator) or a per-sample callable ``f(sample[, generator=g]) -> Sample``.
    out: run folder; writes checkpoints/epoch_{k:03d}.pt every epoch (state_dict, epoch,
    metrics; loads with weights_only=True), metrics.csv, history.json, loss.png and, for
    classifiers, confusion.png. monitor: the metric whose lowest value picks the best epoch
    (default 'val_loss' with validation data, else 'train_loss'). restore_best: load the best
    epoch's weights at the end.

    device: where the model trains ("cpu", "cuda", "cuda:1", "mps" or "auto"; None = the
    model's own device). The model moves there for the run and is left in eval mode on the
    device it came from, also on error; batches are assembled (and augmented) on the CPU and
    moved to the device one at a time; metrics are summed on the device and read once per
    epoch. reinit draws the new weights on the CPU, so a seed gives the same initial weights
    on every device.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    _check_task(task)
    n = _check_dataset("train", train)
    _check_dataset("val", val)
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    _check_number(lr, "lr", positive=True)
    _check_number(weight_decay, "weight_decay")
    if augment is not None and not callable(augment):
        raise TypeError(f"augment must be a BatchAugment or a callable, got {type(augment).__name__}")
    monitor = monitor or ("val_loss" if val is not None else "train_loss")
    if monitor.startswith("val_") and val is None:
        raise ValueError(f"monitor={monitor!r} needs validation data; pass val= or monitor='train_loss'")
    device = _check_device(device, model)
    home = _model_device(model)
    weights = _check_class_weights(class_weights)
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"out must be a folder for the run (checkpoints, metrics.csv); {out} is an existing file")
    out_dir = Path(out) if out is not None else None
    history = History(task=task, seed=seed, monitor=monitor, out=out_dir)
    shuffle_g = torch.Generator().manual_seed(seed)
    augment_g = torch.Generator().manual_seed(seed + 1)
    if restore_best and out_dir is None:
        raise ValueError("restore_best=True needs out= (the best weights are read from its checkpoint)")
    card = _card(model, train, task, class_names)
    make_batch = _batch_maker(augment)
    drop_single = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    start_time = time.perf_counter()
    try:
        with _forked_rng(device, home), _progress_bar(progress) as bar:
            torch.manual_seed(seed)
            if reinit:
                model.to("cpu")  # the same initial weights for a seed on every device
                _reset_parameters(model)
            model.to(device)
            opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
            for epoch in range(1, epochs + 1):
                t0 = time.perf_counter()
                order = torch.randperm(n, generator=shuffle_g).tolist()
                batches = (make_batch(s, augment_g) for s in _batches(train, order, batch_size, drop_single))
                label = f"epoch {epoch}/{epochs}"
                metrics, confusion = _train_epoch(model, opt, batches, task, weights, device, bar, label,
                                                  steps=(n + batch_size - 1) // batch_size)
                row: dict[str, float] = {"epoch": epoch, **{f"train_{k}": v for k, v in metrics.items()}}
                if val is not None:
                    val_metrics, confusion = evaluate(model, val, task, batch_size, device, weights)
                    row.update({f"val_{k}": v for k, v in val_metrics.items()})
                row["lr"] = lr
                row["seconds"] = time.perf_counter() - t0
                if monitor not in row:
                    raise ValueError(f"monitor {monitor!r} is not a reported metric; choose from {', '.join(row)}")
                history.epochs.append(row)
                if confusion is not None:
                    history.confusions.append(confusion.cpu())
                history.best_epoch = int(min(history.epochs, key=lambda r: r[monitor])["epoch"])
                if out_dir is not None:
                    _save_epoch(model, out_dir, epoch, row, confusion, task, seed, history, card)
                if bar is not None:
                    summary = "  ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "lr"))
                    bar.console.print(f"epoch {epoch}: {summary}")
            if restore_best and history.best_checkpoint is not None and history.best_epoch != epochs:
                state = torch.load(history.best_checkpoint, map_location=device, weights_only=True)
                model.load_state_dict(state["state_dict"])
    finally:
        model.eval()
        model.to(home)
    history.seconds = time.perf_counter() - start_time
    if out_dir is not None:
        _write_figures(history, out_dir, class_names, restore_best)
        _atomic_text(json.dumps(history.to_dict(), indent=2), out_dir / "history.json")
    return history


def _forked_rng(*devices: torch.device) -> Any:
    """fork_rng over the CPU generator and those of the accelerators among `devices`: the
    global random state (dropout, seeding) is restored when training ends."""
    accelerators = [d for d in devices if d.type != "cpu"]
    if not accelerators:
        return torch.random.fork_rng(devices=[])
    kind = accelerators[0].type
    if kind == "cuda":
        indices = sorted({d.index if d.index is not None else torch.cuda.current_device()
                          for d in accelerators if d.type == "cuda"})
        return torch.random.fork_rng(devices=indices, device_type="cuda")
    return torch.random.fork_rng(devices=[0], device_type=kind)


def _card(model: nn.Module, train: Any, task: str, class_names: Sequence[str] | None) -> ModelCard:
    """What each checkpoint says about the model: the card `gs.models.build` attached (spec,
    outputs, normalisation) plus the task, the class names and the training image size."""
    image = train[0].image
    return (card_of(model) or ModelCard()).updated(
        task=task, class_names=tuple(str(c) for c in class_names) if class_names else None,
        input_size=(int(image.shape[-2]), int(image.shape[-1])),
    )


def _save_epoch(
    model: nn.Module, out_dir: Path, epoch: int, row: dict[str, float],
    confusion: torch.Tensor | None, task: str, seed: int, history: History, card: ModelCard,
) -> None:
    path = checkpoint_path(out_dir, epoch)
    atomic_torch_save(
        {
            "format": CHECKPOINT_FORMAT,
            "model": type(model).__name__,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "epoch": epoch,
            "metrics": dict(row),
            "confusion": None if confusion is None else confusion.cpu(),
            "task": task,
            "seed": seed,
            "card": card.to_dict(),
        },
        path,
    )
    history.checkpoints.append(path)
    history.metrics_csv = out_dir / "metrics.csv"
    _write_csv(history.epochs, history.metrics_csv)


def _write_figures(history: History, out_dir: Path, class_names: Sequence[str] | None, restore_best: bool) -> None:
    from gradsum.train.plots import plot_confusion, plot_loss_curve

    metric = "mae" if history.task == "regression" else "accuracy"
    history.loss_plot = plot_loss_curve(history.epochs, out_dir / "loss.png", title=f"{history.task} loss", metric=metric)
    if history.confusions:
        k = history.best_epoch if restore_best else len(history.epochs)
        split = "val" if "val_loss" in history.epochs[0] else "train"
        history.confusion_plot = plot_confusion(
            history.confusions[k - 1], out_dir / "confusion.png", class_names,
            title=f"Confusion matrix ({split}, epoch {k})",
        )
