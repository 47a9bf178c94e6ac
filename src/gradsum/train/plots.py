"""Training figures: loss curves and the confusion matrix (matplotlib, imported lazily)."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["plot_loss_curve", "plot_confusion"]


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def plot_loss_curve(
    epochs: Sequence[dict[str, float]],
    path: str | os.PathLike[str],
    title: str = "Training loss",
    metric: str | None = None,
) -> Path:
    """Train (and validation, when present) loss per epoch; with `metric` (e.g. 'mae',
    'accuracy') a second panel shows it. Writes a PNG and returns its path."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not epochs:
        raise ValueError("no epochs to plot")
    x = [int(e["epoch"]) for e in epochs]
    panels = [("loss", "loss")] + ([(metric, metric)] if metric else [])
    fig = Figure(figsize=(5.5 * len(panels), 3.6))
    for i, (key, label) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), i)
        for split, style in (("train", "-o"), ("val", "-s")):
            col = f"{split}_{key}"
            if col in epochs[0]:
                ax.plot(x, [e[col] for e in epochs], style, markersize=3, label=split)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(title if i == 1 else label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion(
    matrix: torch.Tensor | Sequence[Sequence[int]],
    path: str | os.PathLike[str],
    class_names: Sequence[str] | None = None,
    title: str = "Confusion matrix",
) -> Path:
    """Counts with rows = true class and columns = predicted class, each cell annotated."""
    from matplotlib.figure import Figure

    m = torch.as_tensor(matrix).to(torch.int64)
    c = m.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
    if len(names) != c:
        raise ValueError(f"{len(names)} class names for a {c}x{c} confusion matrix")
    size = max(3.5, 0.45 * c + 2.0)
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(m.numpy(), cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xticks(range(c), labels=names, rotation=45 if c > 4 else 0, ha="right" if c > 4 else "center")
    ax.set_yticks(range(c), labels=names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if c <= 20:
        top = int(m.max()) if m.numel() else 0
        for i in range(c):
            for j in range(c):
                v = int(m[i, j])
                ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                        color="white" if top and v > top / 2 else "black")
    fig.tight_layout()
    return _save(fig, path)
