"""Targets: which scalar of the model's output an explanation explains, one per sample.

A target turns the model output (B, ...) into scores (B,). `resolve_target` turns what
users pass (None, an int, a list of ints, a Target, a callable) into a Target that knows
the batch size.

Score conventions (stated, never implied): `ClassTarget` explains the *logit* by default;
`score="probability"` explains softmax(output)[c]; `score="log_probability"` explains
log_softmax(output)[c]. Regression targets explain the raw output times `sign`.
"""
from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import nn

__all__ = [
    "Target",
    "ClassTarget",
    "ProbabilityTarget",
    "LogProbabilityTarget",
    "RegressionTarget",
    "SegmentationTarget",
    "NeuronTarget",
    "CallableTarget",
    "DefaultTarget",
    "FixedTarget",
    "BoundTarget",
    "resolve_target",
    "TargetSpec",
    "label_targets",
]

Score = Literal["logit", "probability", "log_probability"]
_SCORES = ("logit", "probability", "log_probability")


def _flat_outputs(output: torch.Tensor) -> torch.Tensor:
    """(B,) or (B,N) or (B,N,1,1) -> (B,N)."""
    if output.ndim == 1:
        return output[:, None]
    if output.ndim > 2 and all(s == 1 for s in output.shape[2:]):
        return output.reshape(output.shape[0], -1)
    if output.ndim != 2:
        raise ValueError(
            f"this target needs a model output of shape (B, N); got {tuple(output.shape)}. "
            "For segmentation outputs use gs.SegmentationTarget(category, mask); "
            "otherwise pass a callable target(output) -> (B,) scores"
        )
    return output


class BoundTarget:
    """A target fixed to one batch: `indices` (B,) explained output per sample (None for
    callables) and `__call__(output, rows=None) -> scores`. `rows` (n,) maps each row of
    `output` to the sample it perturbs, so one bound target scores thousands of masked
    copies of a batch."""

    def __init__(
        self,
        fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
        indices: torch.Tensor | None,
        score: str,
        description: str,
        sign: int | torch.Tensor = 1,
    ):
        self._fn = fn
        self.indices = indices
        self.score = score
        self.description = description
        self.sign = sign

    def __call__(self, output: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        return self._fn(output, rows)

    def select(self, rows: torch.Tensor) -> BoundTarget:
        """The same targets for a batch whose row i is a copy of sample rows[i]."""

        def fn(output: torch.Tensor, sub: torch.Tensor | None) -> torch.Tensor:
            return self._fn(output, rows if sub is None else rows[sub])

        indices = None if self.indices is None else self.indices[rows.to(self.indices.device)]
        sign = self.sign[rows.to(self.sign.device)] if isinstance(self.sign, torch.Tensor) else self.sign
        return BoundTarget(fn, indices, self.score, self.description, sign)

    def __repr__(self) -> str:
        return f"BoundTarget({self.description})"


class Target:
    """Base class of target specifications. `bind(output)` checks the specification against
    the model's output on the clean batch and returns a `BoundTarget`."""

    def bind(self, output: torch.Tensor) -> BoundTarget:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        """Scores (B,) for one output: bind and evaluate."""
        return self.bind(output)(output)


def _class_scores(flat: torch.Tensor, score: str) -> torch.Tensor:
    if score == "probability":
        return flat.softmax(dim=1)
    if score == "log_probability":
        return flat.log_softmax(dim=1)
    return flat


def _pick(indices: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    return indices if rows is None else indices[rows]


class ClassTarget(Target):
    """Explain class `index` (an int for every sample, or one int per sample).

    index=None means the argmax of each sample's output on the clean input.
    score: "logit" (default), "probability" (softmax) or "log_probability" (log-softmax).
    """

    def __init__(self, index: int | Sequence[int] | torch.Tensor | None = None, score: Score = "logit"):
        if score not in _SCORES:
            raise ValueError(f"score must be one of {_SCORES}; got {score!r}")
        self.index = index
        self.score = score

    def bind(self, output: torch.Tensor) -> BoundTarget:
        flat = _flat_outputs(output)
        batch, n_out = flat.shape
        if self.index is None:
            idx = flat.detach().argmax(dim=1)
        else:
            idx = torch.as_tensor(self.index, device=flat.device).reshape(-1).long()
            if idx.numel() == 1:
                idx = idx.expand(batch)
            elif idx.numel() != batch:
                raise ValueError(
                    f"got {idx.numel()} targets for a batch of {batch} images; "
                    "give one target per image or a single target for all"
                )
            bad = (idx < 0) | (idx >= n_out)
            if bool(bad.any()):
                first = int(idx[bad][0])
                raise ValueError(
                    f"target index {first} is out of range: the model has {n_out} outputs "
                    f"(valid indices 0..{n_out - 1})"
                )
        score = self.score

        def fn(out: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
            values = _class_scores(_flat_outputs(out), score)
            return values.gather(1, _pick(idx, rows)[:, None].to(values.device))[:, 0]

        which = "argmax" if self.index is None else "given"
        return BoundTarget(fn, idx, score, f"class ({which}, {score})")


class ProbabilityTarget(ClassTarget):
    """Explain the softmax probability of class `index` (argmax when None)."""

    def __init__(self, index: int | Sequence[int] | torch.Tensor | None = None):
        super().__init__(index, score="probability")


class LogProbabilityTarget(ClassTarget):
    """Explain the log-softmax of class `index` (argmax when None)."""

    def __init__(self, index: int | Sequence[int] | torch.Tensor | None = None):
        super().__init__(index, score="log_probability")


class RegressionTarget(Target):
    """Explain regression output `index` times `sign`: +1 shows what pushes the output up,
    -1 what pushes it down, "prediction" uses each image's own predicted sign (what makes
    the model predict what it predicts: for steering, what it steers by, left or right).
    For a steering model with positive = right, sign=+1 explains steering right."""

    def __init__(self, index: int = 0, sign: int | str = 1):
        if sign not in (1, -1, "prediction"):
            raise ValueError(f"sign must be +1, -1 or 'prediction'; got {sign!r}")
        self.index = int(index)
        self.sign = sign

    def bind(self, output: torch.Tensor) -> BoundTarget:
        flat = _flat_outputs(output)
        if not 0 <= self.index < flat.shape[1]:
            raise ValueError(
                f"regression output index {self.index} is out of range: the model has "
                f"{flat.shape[1]} outputs (valid indices 0..{flat.shape[1] - 1})"
            )
        index = self.index
        if self.sign == "prediction":
            signs: int | torch.Tensor = torch.where(flat[:, index].detach() < 0, -1.0, 1.0).to(flat.dtype)
            label = f"output {index} (sign of the prediction)"
        else:
            signs = int(self.sign)
            label = f"output {index} ({'+' if signs > 0 else '-'})"

        def fn(out: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
            values = _flat_outputs(out)[:, index]
            if isinstance(signs, torch.Tensor):
                return values * (signs if rows is None else signs[rows]).to(values.device)
            return signs * values

        idx = torch.full((flat.shape[0],), index, device=flat.device, dtype=torch.long)
        return BoundTarget(fn, idx, "output", label, signs)


class SegmentationTarget(Target):
    """Explain the sum of category `category`'s output over `mask` for a segmentation model
    with output (B, K, H, W). mask: (H,W) or (B,H,W), bool or float weights; None (default)
    means the pixels the model predicts as `category` on the clean input (argmax over K),
    or every pixel of an image where it predicts none."""

    def __init__(self, category: int, mask: torch.Tensor | None = None):
        if isinstance(category, bool) or not isinstance(category, numbers.Integral):
            raise TypeError(f"SegmentationTarget category must be an int class index; got {category!r}")
        self.category = int(category)
        self.mask = mask

    def bind(self, output: torch.Tensor) -> BoundTarget:
        if output.ndim != 4:
            raise ValueError(
                f"SegmentationTarget needs a (B, K, H, W) model output (a segmentation model); got {tuple(output.shape)}"
            )
        if not 0 <= self.category < output.shape[1]:
            raise ValueError(
                f"segmentation category {self.category} is out of range: the model has "
                f"{output.shape[1]} output channels (valid 0..{output.shape[1] - 1})"
            )
        if self.mask is None:
            predicted = output.detach().argmax(dim=1) == self.category
            empty = ~predicted.flatten(1).any(dim=1)
            mask = (predicted | empty[:, None, None]).to(output.dtype)
            where = "predicted pixels"
        else:
            mask = torch.as_tensor(self.mask).to(device=output.device, dtype=output.dtype)
            if mask.shape[-2:] != output.shape[-2:] or mask.ndim not in (2, 3) or (
                    mask.ndim == 3 and mask.shape[0] not in (1, output.shape[0])):
                raise ValueError(
                    f"SegmentationTarget mask has shape {tuple(mask.shape)}; expected (H,W) or (B,H,W) "
                    f"with H,W = {tuple(output.shape[-2:])} and B = {output.shape[0]}"
                )
            mask = mask.expand(output.shape[0], *mask.shape[-2:])
            where = "mask"
        category = self.category

        def fn(out: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
            m = mask if rows is None else mask[rows]
            return (out[:, category] * m).sum(dim=(-2, -1))

        idx = torch.full((output.shape[0],), category, device=output.device, dtype=torch.long)
        return BoundTarget(fn, idx, "logit", f"segmentation category {category} ({where})")


def _per_sample(value: Any, batch: int, what: str) -> torch.Tensor:
    """A checked index (`_check_index`): an int, or one int per image -> (B,) int64."""
    idx = torch.as_tensor(value).reshape(-1).long()
    if idx.numel() == 1:
        return idx.expand(batch)
    if idx.numel() != batch:
        raise ValueError(
            f"NeuronTarget got {idx.numel()} values of {what} for a batch of {batch} images; "
            "give one per image or a single one for all"
        )
    return idx


def _check_index(value: Any, what: str) -> None:
    """An int, or one int per image (a sequence, array or tensor of ints); never a float,
    bool or string, which would be rounded or misread as an index."""
    if value is None:
        return
    message = f"NeuronTarget {what} must be an int or one int per image (a list or tensor); got"
    if isinstance(value, bool | float | str):
        raise TypeError(f"{message} {value!r}")
    if isinstance(value, Sequence) and not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                               for v in value):
        raise TypeError(f"{message} {value!r}")
    try:
        raw = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{message} {type(value).__name__}") from None
    if raw.is_floating_point() or raw.is_complex() or raw.dtype == torch.bool:
        raise TypeError(f"{message} {raw.dtype} values")


class NeuronTarget(Target):
    """Explain one unit of an intermediate layer (Zeiler & Fergus 2014; Springenberg et al.
    2015): the activation A[c, y, x] of `layer`'s output A (B,C,H,W) at channel `channel` and
    position (y, x) of the layer's map, or the channel's spatial mean mean_yx A[c] when y and
    x are None (give both or neither). `channel`, `y`, `x` are ints or one int per image.

    Explainers (`gs.explain`, `gs.explainer`) run the model truncated at `layer`
    (`gradsum.core.truncate`): its forward stops after that layer, so the rest of the network
    does not run, and hooks on earlier modules (guided backprop's ReLUs, a CAM layer) fire as
    usual. A CAM method needs a layer that runs before `layer`. The score is the raw
    activation (`score == "activation"`); `indices` are the channels."""

    score = "activation"

    def __init__(self, layer: str | nn.Module, channel: int | Sequence[int] | torch.Tensor,
                 y: int | Sequence[int] | torch.Tensor | None = None,
                 x: int | Sequence[int] | torch.Tensor | None = None):
        if not isinstance(layer, str | nn.Module):
            raise TypeError(f"NeuronTarget layer must be a layer name or module; got {type(layer).__name__}")
        if (y is None) != (x is None):
            raise ValueError(
                f"NeuronTarget needs both y and x (a position in the layer's map) or neither (the channel's "
                f"spatial mean); got y={y!r}, x={x!r}"
            )
        if channel is None:
            raise TypeError("NeuronTarget needs a channel (an int, or one int per image)")
        for value, what in ((channel, "channel"), (y, "y"), (x, "x")):
            _check_index(value, what)
        self.layer, self.channel, self.y, self.x = layer, channel, y, x

    @property
    def layer_name(self) -> str:
        """The layer as given: its name, or its class name for a module."""
        return self.layer if isinstance(self.layer, str) else type(self.layer).__name__

    def bind(self, output: torch.Tensor) -> BoundTarget:
        from gradsum.core.truncate import in_truncated_run

        name = self.layer_name
        if not in_truncated_run():
            raise ValueError(
                f"NeuronTarget explains a unit of layer '{name}', not a model output; use it with gs.explain / "
                "gs.explainer (they run the model truncated at that layer), or bind it on view(x) inside "
                "`with gradsum.core.truncate.truncated(model, layer) as view:`"
            )
        if output.ndim != 4:
            raise ValueError(
                f"NeuronTarget needs a layer with a (B,C,H,W) output; layer '{name}' outputs shape "
                f"{tuple(output.shape)}{' (tokens)' if output.ndim == 3 else ''}. Pick a convolutional layer"
            )
        batch, n_ch, height, width = output.shape
        device = output.device
        chans = _per_sample(self.channel, batch, "channel").to(device)
        bounds = [(chans, "channel", n_ch)]
        ys = xs = None
        if self.y is not None:
            ys = _per_sample(self.y, batch, "y").to(device)
            xs = _per_sample(self.x, batch, "x").to(device)
            bounds += [(ys, "y", height), (xs, "x", width)]
        for idx, what, size in bounds:
            bad = (idx < 0) | (idx >= size)
            if bool(bad.any()):
                raise ValueError(
                    f"NeuronTarget {what} {int(idx[bad][0])} is out of range: layer '{name}' outputs "
                    f"{tuple(output.shape)} (B,C,H,W), so {what} must be in 0..{size - 1}"
                )

        def fn(out: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
            r = torch.arange(batch, device=out.device) if rows is None else rows.to(out.device)
            c = chans[r]
            if ys is None:
                return out.mean(dim=(2, 3)).gather(1, c[:, None])[:, 0]
            return out[torch.arange(out.shape[0], device=out.device), c, ys[r], xs[r]]

        one = chans.numel() and bool((chans == chans[0]).all())
        where = "spatial mean" if ys is None else "position"
        if one and (ys is None or (bool((ys == ys[0]).all()) and bool((xs == xs[0]).all()))):
            at = "" if ys is None else f", y={int(ys[0])}, x={int(xs[0])}"
            label = f"neuron '{name}' channel {int(chans[0])}{at} ({where})"
        else:
            label = f"neuron '{name}' (one channel{'' if ys is None else ' and position'} per image, {where})"
        return BoundTarget(fn, chans, "activation", label)


class CallableTarget(Target):
    """Wrap any `fn(output) -> (n,) scores` (one score per row of the output it is given)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        self.fn = fn

    def bind(self, output: torch.Tensor) -> BoundTarget:
        user_fn = self.fn

        def fn(out: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
            scores = user_fn(out)
            if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (out.shape[0],):
                shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
                raise ValueError(
                    f"a callable target must return one score per image, shape ({out.shape[0]},); got {shape}"
                )
            return scores

        fn(output, None)  # validate once on the clean output
        return BoundTarget(fn, None, "custom", getattr(user_fn, "__name__", "callable"))


class FixedTarget(Target):
    """A target already bound to a batch: `bind` returns it unchanged, so several passes
    (e.g. Grad-CAM and guided backprop in guided Grad-CAM) explain the very same outputs."""

    def __init__(self, bound: BoundTarget):
        self.bound = bound

    def bind(self, output: torch.Tensor) -> BoundTarget:
        return self.bound


class DefaultTarget(Target):
    """None -> argmax logit when the model has several outputs, output 0 when it has one."""

    def bind(self, output: torch.Tensor) -> BoundTarget:
        n = _flat_outputs(output).shape[1]
        return (RegressionTarget(0) if n == 1 else ClassTarget(None)).bind(output)


TargetSpec = None | int | Sequence[int] | torch.Tensor | Target | Callable[[torch.Tensor], torch.Tensor]


def resolve_target(target: TargetSpec) -> Target:
    """What users pass -> a Target specification (bind it to the clean output next).

    None: argmax logit for classifiers, output 0 (sign +1) for one-output models.
    int / list / 1-D integer tensor: ClassTarget (one index per sample when a list).
    Target instance: itself. Other callables: CallableTarget.
    """
    if target is None:
        return DefaultTarget()
    if isinstance(target, Target):
        return target
    if isinstance(target, bool):
        raise TypeError("target must be a class index, a list of indices, a Target or a callable; got a bool")
    if isinstance(target, torch.Tensor):
        if target.is_floating_point():
            raise TypeError(
                "target tensor must hold integer class indices; got floats. "
                "For regression use gs.RegressionTarget(index, sign)"
            )
        return ClassTarget(target)
    if isinstance(target, numbers.Integral):  # int, numpy integers
        return ClassTarget(int(target))
    if type(target).__module__ == "numpy" and hasattr(target, "dtype"):  # numpy array
        if target.dtype.kind not in "iu":
            raise TypeError(
                f"a target array must hold integer class indices; got dtype {target.dtype}. "
                "For regression use gs.RegressionTarget(index, sign)"
            )
        return ClassTarget(torch.as_tensor(target).reshape(-1).long())
    if isinstance(target, Sequence) and not isinstance(target, str):
        if not all(isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in target):
            raise TypeError("a target list must hold integer class indices, one per image")
        return ClassTarget([int(t) for t in target])
    if callable(target):
        return CallableTarget(target)
    raise TypeError(
        f"target must be None, a class index, a list of indices, a Target or a callable; got {type(target).__name__}"
    )


def label_targets(targets: Any, ids: Sequence[str]) -> tuple[list[int], torch.Tensor]:
    """target="label": the batch's own labels as (positions in the batch, int64 class per
    position), for `targets` as collated by `gradsum.data.collate` and the images' `ids`. One class label
    per image gives every position once; multi-hot labels (B, C) give one position per class
    present. A regression (float) or missing label is an error, never truncated to a class."""
    all_ids = list(ids)
    ids = all_ids[:3]
    if targets is None or (isinstance(targets, list) and all(t is None for t in targets)):
        raise ValueError(f"target='label' explains each image's label, but images {ids} have no label: this data "
                         "has no targets; explain the prediction (no target) or give a class index")
    if isinstance(targets, list) and any(t is None for t in targets):
        missing = [i for i, t in zip(all_ids, targets, strict=True) if t is None][:3]
        raise ValueError(f"target='label' needs a label on every image; images {missing} have none")
    try:
        labels = torch.as_tensor(targets)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"target='label' needs one class index per image; the labels of images {ids} are "
                         f"{type(targets).__name__}") from None
    if labels.ndim == 2 and labels.shape[0] == len(all_ids):  # multi-hot: each class present
        present = labels != 0
        if labels.dtype != torch.bool and not bool(((labels == 0) | (labels == 1)).all()):
            raise ValueError(f"target='label': the labels of images {ids} are {tuple(labels.shape[1:])} vectors "
                             "that are not multi-hot (0/1); give a class index instead")
        rows, classes = present.nonzero(as_tuple=True)
        return rows.tolist(), classes.long()
    if labels.dtype == torch.bool or labels.ndim > 1 or labels.numel() != len(all_ids):
        raise ValueError(f"target='label' needs one class index per image; images {ids} have labels of shape "
                         f"{tuple(labels.shape)} ({labels.dtype})")
    if labels.is_floating_point():
        whole = torch.isfinite(labels) & (labels == labels.round())
        if not bool(whole.all()):
            raise ValueError(
                f"target='label' explains each image's class label, but the labels of images {ids} are float "
                f"values such as {float(labels[~whole][0]):.4g} (a regression dataset); use target=None "
                "(output 0) or gs.RegressionTarget(0, sign) instead"
            )
    return list(range(len(all_ids))), labels.long().reshape(-1)
