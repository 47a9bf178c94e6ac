"""Objectives for activation maximisation: functions of a forward pass's captured
activations that return one score per image (B,), composable with + and scalar *.

Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017: objectives are
neurons (one position), channels (mean over a map), dense units, class logits and
directions (cosine with a vector in activation space); sums of them visualise
interactions.
"""
from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

__all__ = [
    "OUTPUT",
    "LayerActivations",
    "Objective",
    "channel",
    "neuron",
    "class_logit",
    "dense_unit",
    "direction",
]

OUTPUT = "<output>"
"""The pseudo-layer name of the model's output (used by class_logit)."""

Activations = dict[str, torch.Tensor]


class Objective:
    """A score per image from captured activations: ``objective(acts) -> (B,)``.

    layers: the layer names (or modules) it reads, ``OUTPUT`` for the model output.
    batch: the number of images it defines (one per channel when a list of channels is
    given), or None when it scores any batch. Objectives add (``a + b``), subtract and
    scale by a number (``2 * a``); the batch sizes of added objectives must agree.
    """

    def __init__(
        self,
        fn: Callable[[Activations], torch.Tensor],
        layers: Sequence[str | nn.Module],
        description: str,
        batch: int | None = None,
        labels: list[str] | None = None,
        check: Callable[[Activations], None] | None = None,
    ) -> None:
        self.fn = fn
        self.layers = list(layers)
        self.description = description
        self.batch = batch
        self.labels = labels
        self.check = check

    def __call__(self, acts: Activations) -> torch.Tensor:
        return self.fn(acts)

    def validate(self, acts: Activations) -> None:
        """Check the objective's indices against the shapes of activations captured on ANY
        batch (one image is enough), so that `maximize` can refuse a wrong channel before it
        allocates one image per channel. Objectives without a check pass."""
        if self.check is not None:
            self.check(acts)

    def __repr__(self) -> str:
        return f"Objective({self.description})"

    def _combine(self, other: Objective, sign: float) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        if self.batch is not None and other.batch is not None and self.batch != other.batch:
            raise ValueError(
                f"cannot add objectives defining {self.batch} and {other.batch} images "
                f"({self.description!r}, {other.description!r}); give lists of equal length"
            )
        a, b = self.fn, other.fn
        op = "+" if sign > 0 else "-"
        layers = self.layers + [layer for layer in other.layers if not any(layer is x or layer == x for x in self.layers)]

        def check(acts: Activations) -> None:
            self.validate(acts)
            other.validate(acts)

        return Objective(
            lambda acts: a(acts) + sign * b(acts),
            layers,
            f"{self.description} {op} {other.description}",
            self.batch if self.batch is not None else other.batch,
            self.labels or other.labels,
            check,
        )

    def __add__(self, other: Objective) -> Objective:
        return self._combine(other, 1.0)

    def __radd__(self, other: object) -> Objective:
        if isinstance(other, int | float) and other == 0:  # sum([...]) starts at 0
            return self
        return NotImplemented

    def __sub__(self, other: Objective) -> Objective:
        return self._combine(other, -1.0)

    def __mul__(self, scale: float) -> Objective:
        if isinstance(scale, bool) or not isinstance(scale, int | float):
            return NotImplemented
        fn = self.fn
        return Objective(lambda acts: float(scale) * fn(acts), self.layers, f"{scale:g}*({self.description})",
                         self.batch, self.labels, self.check)

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return self * -1.0


class LayerActivations(dict):
    """Captured activations keyed by layer name (OUTPUT for the model output); `modules`
    maps id(module) -> name so that objectives built from module objects find theirs."""

    def __init__(self, data: dict[str, torch.Tensor], modules: dict[int, str] | None = None) -> None:
        super().__init__(data)
        self.modules = modules or {}

    def lookup(self, layer: str | nn.Module) -> tuple[str, torch.Tensor]:
        name = layer if isinstance(layer, str) else self.modules.get(id(layer))
        if name is None or name not in self:
            raise ValueError(
                f"the objective reads layer {_lname(layer)!r}, which was not captured; "
                f"captured: {', '.join(self) or 'none'}"
            )
        return name, self[name]


def _get(acts: Activations, layer: str | nn.Module) -> tuple[str, torch.Tensor]:
    if isinstance(acts, LayerActivations):
        return acts.lookup(layer)
    if not isinstance(layer, str) or layer not in acts:
        raise ValueError(f"the objective reads layer {_lname(layer)!r}, which is not in the activations given")
    return layer, acts[layer]


def _indices(value: int | Sequence[int], what: str) -> tuple[list[int], int | None]:
    """An index or a non-empty list of indices (Python or numpy ints) -> (list, batch)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return [int(value)], None
    if isinstance(value, torch.Tensor | np.ndarray):
        if value.dtype in (torch.bool, np.bool_) or value.ndim > 1:
            raise TypeError(f"{what} must be an int or a 1-D list of ints, got {value!r}")
        value = value.flatten().tolist()
    if isinstance(value, bool | str | float) or not isinstance(value, Sequence):
        raise TypeError(f"{what} must be an int or a non-empty list of ints, got {value!r}")
    values = list(value)
    if not values:
        raise ValueError(f"{what} list is empty; give an int or a non-empty list of ints")
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        raise TypeError(f"{what} must be an int or a non-empty list of ints, got {value!r}")
    return [int(v) for v in values], len(values)


def _check_range(values: list[int], size: int, what: str, layer: str, shape: tuple[int, ...]) -> None:
    bad = [v for v in values if v < 0 or v >= size]
    if bad:
        raise ValueError(
            f"{what} {bad[0]} does not exist in layer '{layer}' (output shape {shape}); "
            f"valid {what}s are 0..{size - 1}"
        )


def _select(a: torch.Tensor, values: list[int], per_image: bool) -> torch.Tensor:
    """a[:, v] for one index, or a[i, v_i] for a list (one index per image)."""
    if not per_image:
        return a[:, values[0]]
    if a.shape[0] != len(values):
        raise ValueError(f"the objective defines {len(values)} images but the batch has {a.shape[0]}")
    idx = torch.as_tensor(values, device=a.device)
    return a[torch.arange(a.shape[0], device=a.device), idx]


def channel(layer: str | nn.Module, index: int | Sequence[int]) -> Objective:
    """Mean of channel `index` of a (B,C,h,w) layer output. A list of channels makes one
    image per channel (image i maximises channel index[i]), optimised as one batch."""
    values, batch = _indices(index, "channel")

    def check(acts: Activations) -> tuple[str, torch.Tensor]:
        name, a = _get(acts, layer)
        if a.ndim != 4:
            raise ValueError(
                f"channel objective needs a (B,C,h,w) output; layer '{name}' gives {tuple(a.shape)}; "
                "use dense_unit for 2-D outputs"
            )
        _check_range(values, a.shape[1], "channel", name, tuple(a.shape[1:]))
        return name, a

    def fn(acts: Activations) -> torch.Tensor:
        _, a = check(acts)
        return _select(a, values, batch is not None).mean(dim=(-2, -1))

    return Objective(fn, [layer], f"channel({_lname(layer)}, {index if batch is None else values})", batch,
                     [f"{_lname(layer)}:{v}" for v in values], check)


def neuron(layer: str | nn.Module, index: int | Sequence[int], y: int | None = None, x: int | None = None) -> Objective:
    """Activation of channel `index` at one spatial position (y, x) of a (B,C,h,w) output;
    the default position is the centre (h//2, w//2)."""
    values, batch = _indices(index, "channel")
    for v, what in ((y, "y"), (x, "x")):
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral)):
            raise TypeError(f"neuron position {what} must be an int or None (the centre); got {v!r}")

    def check(acts: Activations) -> tuple[torch.Tensor, int, int]:
        name, a = _get(acts, layer)
        if a.ndim != 4:
            raise ValueError(f"neuron objective needs a (B,C,h,w) output; layer '{name}' gives {tuple(a.shape)}")
        _check_range(values, a.shape[1], "channel", name, tuple(a.shape[1:]))
        h, w = a.shape[-2:]
        yy = h // 2 if y is None else int(y)
        xx = w // 2 if x is None else int(x)
        if not (0 <= yy < h and 0 <= xx < w):
            raise ValueError(f"neuron position ({yy}, {xx}) is outside layer '{name}' maps of {h}x{w}; "
                             f"valid y are 0..{h - 1}, x 0..{w - 1}")
        return a, yy, xx

    def fn(acts: Activations) -> torch.Tensor:
        a, yy, xx = check(acts)
        return _select(a[:, :, yy, xx], values, batch is not None)

    return Objective(fn, [layer], f"neuron({_lname(layer)}, {index}, y={y}, x={x})", batch,
                     [f"{_lname(layer)}:{v}@centre" if y is None else f"{_lname(layer)}:{v}@{y},{x}" for v in values],
                     check)


def dense_unit(layer: str | nn.Module, index: int | Sequence[int]) -> Objective:
    """Unit `index` of a 2-D (B,N) output (a Linear layer, or OUTPUT)."""
    values, batch = _indices(index, "unit")

    def check(acts: Activations) -> torch.Tensor:
        name, a = _get(acts, layer)
        if a.ndim != 2:
            raise ValueError(
                f"dense_unit objective needs a 2-D (B,N) output; layer '{name}' gives {tuple(a.shape)}; "
                "use channel or neuron for conv layers"
            )
        _check_range(values, a.shape[1], "unit", name, tuple(a.shape[1:]))
        return a

    def fn(acts: Activations) -> torch.Tensor:
        return _select(check(acts), values, batch is not None)

    return Objective(fn, [layer], f"dense_unit({_lname(layer)}, {index})", batch,
                     [f"{_lname(layer)}:{v}" for v in values], check)


def class_logit(index: int | Sequence[int]) -> Objective:
    """The logit of class `index` in the model's (B,K) output."""
    obj = dense_unit(OUTPUT, index)
    obj.description = f"class_logit({index})"
    obj.labels = [f"class {v}" for v in _indices(index, "class")[0]]
    return obj


def direction(layer: str | nn.Module, vector: torch.Tensor | Sequence[float]) -> Objective:
    """Cosine similarity between the layer's activation vector and `vector` (C,): for a
    (B,C,h,w) output the cosine at every position, averaged; for (B,C) directly. A (B,C)
    `vector` gives one direction per image."""
    try:
        v = torch.as_tensor(vector, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"direction vector must be a tensor or a list of numbers (C,); got {type(vector).__name__}") from None
    if v.ndim not in (1, 2) or v.shape[-1] == 0 or v.shape[0] == 0:
        raise ValueError(f"direction vector must be (C,) or (B,C); got shape {tuple(v.shape)}")
    if not bool(torch.isfinite(v).all()):
        raise ValueError("direction vector contains NaN or infinite values")
    if not bool((v.reshape(-1, v.shape[-1]).abs().amax(dim=1) > 0).all()):
        raise ValueError("direction vector is all zeros: it has no direction (the cosine with it is undefined)")
    batch = v.shape[0] if v.ndim == 2 else None

    def check(acts: Activations) -> tuple[str, torch.Tensor]:
        name, a = _get(acts, layer)
        if a.ndim not in (2, 4):
            raise ValueError(f"direction objective needs a (B,C) or (B,C,h,w) output; layer '{name}' gives {tuple(a.shape)}")
        if a.shape[1] != v.shape[-1]:
            raise ValueError(
                f"direction vector has {v.shape[-1]} entries but layer '{name}' has {a.shape[1]} channels"
            )
        return name, a

    def fn(acts: Activations) -> torch.Tensor:
        name, a = check(acts)
        vv = v.to(a.device, a.dtype)
        vv = vv.view(1 if vv.ndim == 1 else -1, vv.shape[-1], *([1, 1] if a.ndim == 4 else []))
        cos = torch.nn.functional.cosine_similarity(a, vv.expand_as(a) if vv.shape[0] == a.shape[0] else vv, dim=1)
        return cos.mean(dim=(-2, -1)) if a.ndim == 4 else cos

    return Objective(fn, [layer], f"direction({_lname(layer)})", batch,
                     [f"{_lname(layer)}:dir{i}" for i in range(batch or 1)], check)


def _lname(layer: str | nn.Module) -> str:
    return layer if isinstance(layer, str) else type(layer).__name__
