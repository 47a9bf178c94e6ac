"""A model card: what a checkpoint says about the model it holds, so that a weights file is
enough to rebuild the model, feed it the right images and name its outputs.

`gradsum train` / `gs.train.fit` and `gs.models.save` write it into every checkpoint (key
"card", plain values, loads with ``weights_only=True``); `gs.models.build(weights=...)` and
every CLI command that takes ``--weights`` read it. Explicit arguments always win.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from torch import nn

__all__ = ["ModelCard", "read_card", "card_of", "attach_card"]

_ATTRIBUTE = "gradsum_card"


@dataclass(frozen=True)
class ModelCard:
    """spec: the `gs.models.build` spec ("torchvision:resnet18", "pilotnet", "file.py:make").
    num_classes: number of outputs. input_size: (H, W) the model was trained on. mean/std:
    the input normalisation inside the model (None: it takes [0,1] pixels as they are);
    normalization_source says where they came from. class_names: one name per output.
    task: "classification" | "regression" | "multilabel" | "segmentation". output: which
    tensor of a dict/tuple output is explained."""

    spec: str | None = None
    num_classes: int | None = None
    input_size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    normalization_source: str | None = None
    class_names: tuple[str, ...] | None = None
    task: str | None = None
    output: str | int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (lists for tuples), safe for ``torch.load(weights_only=True)``."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> ModelCard | None:
        """The card stored in a checkpoint; None when `data` is not a card dict."""
        if not isinstance(data, dict):
            return None
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("input_size", "mean", "std", "class_names"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        if values.get("input_size") is not None:
            values["input_size"] = tuple(int(v) for v in values["input_size"])
        return cls(**values)

    def updated(self, **changes: Any) -> ModelCard:
        """A copy with the given fields replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def describe(self) -> str:
        """One line for the first output of a command: the model and its preprocessing."""
        parts = [self.spec or "model"]
        if self.num_classes is not None:
            parts.append(f"{self.num_classes} output{'s' if self.num_classes != 1 else ''}")
        if self.input_size is not None:
            parts.append(f"input {self.input_size[0]}x{self.input_size[1]}")
        if self.mean is not None and self.std is not None:
            source = f" ({self.normalization_source})" if self.normalization_source else ""
            stats = ", ".join(f"{m:.3g}" for m in self.mean) + " / " + ", ".join(f"{s:.3g}" for s in self.std)
            parts.append(f"input normalised inside the model with mean/std {stats}{source}")
        else:
            parts.append("pixels in [0,1] given to the model as they are (no normalisation added)")
        if self.output is not None:
            parts.append(f"explaining output {self.output!r}")
        return "; ".join(parts)


def attach_card(model: nn.Module, card: ModelCard) -> nn.Module:
    """Remember `card` on `model` (read back by `card_of`, saved by the trainer)."""
    object.__setattr__(model, _ATTRIBUTE, card)
    return model


def card_of(model: nn.Module) -> ModelCard | None:
    """The card `gs.models.build` attached to `model`, if any."""
    card = getattr(model, _ATTRIBUTE, None)
    return card if isinstance(card, ModelCard) else None


def read_card(path: str | os.PathLike[str]) -> ModelCard | None:
    """The card inside a checkpoint file, or None (a plain state dict, TorchScript or a
    pickled module). A missing, empty or truncated file is an error naming it."""
    from gradsum.models.io import UntrustedFileError, read_model_file

    try:
        content = read_model_file(Path(path))
    except UntrustedFileError:
        return None
    return ModelCard.from_dict(content.get("card")) if isinstance(content, dict) else None
