"""Shared machinery of the perturbation family: how perturbed inputs are scored, mask
helpers, and tail execution (running only the part of a network after a layer).

Every method of the family evaluates its perturbed inputs through
`gradsum.core.batching.batched_scores` (chunks, `batch_size="auto"`, inference mode, no
per-sample host sync). This module adds what several of them share:

- `mask_target`: the score perturbation methods read — the softmax probability of the
  explained class for classifiers (RISE, SISE, LIME, KernelSHAP default), or the raw
  (signed) output for regressors and custom targets.
- `minmax_masks`: per-map min-max of upsampled feature maps (Score-CAM, SISE).
- `LayerTail`: evaluate the network after layer L on a batch of modified activations of L.
  It splits the traced graph with torch.fx so that layers before L run once; when the model
  cannot be split (untraceable control flow, a layer called twice, values crossing the cut
  that are not batch tensors) it falls back to full forwards with a forward hook that
  substitutes the activations, and says so once at debug level. Both paths give the same
  numbers.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from gradsum.core.batching import BatchSize, Progress, batched_scores
from gradsum.core.targets import BoundTarget, ProbabilityTarget

__all__ = [
    "ScoreMode",
    "TailMode",
    "mask_target",
    "minmax_masks",
    "check_batch_size",
    "check_positive_int",
    "LayerTail",
    "score_items",
    "score_label",
]

logger = logging.getLogger(__name__)

ScoreMode = Literal["probability", "target"]
TailMode = Literal["auto", "fx", "hook"]
_CLASS_SCORES = ("logit", "probability", "log_probability")
_logged: set[tuple[str, str, str]] = set()


def mask_target(bound: BoundTarget, output: torch.Tensor, score: ScoreMode = "probability") -> BoundTarget:
    """The target that perturbed inputs are scored with.

    score="probability": for classifiers (a (B,N) output with N > 1 and a class target) the
    softmax probability of each sample's explained class, whatever the user's target scored
    (logit / probability / log-probability); for regressors (`bound.score == "output"`),
    callables and segmentation targets the user's target unchanged (raw output x sign).
    score="target": the user's bound target unchanged.
    """
    if score not in ("probability", "target"):
        raise ValueError(f"score must be 'probability' or 'target'; got {score!r}")
    if score == "target" or bound.indices is None or bound.score not in _CLASS_SCORES:
        return bound
    flat = output.reshape(output.shape[0], -1) if output.ndim > 2 and all(s == 1 for s in output.shape[2:]) else output
    if flat.ndim != 2 or flat.shape[1] < 2:
        return bound
    return ProbabilityTarget(bound.indices).bind(output)


def score_label(bound: BoundTarget) -> str:
    """How a bound target scores, for `settings["score"]`."""
    return {"probability": "probability (softmax)", "output": "raw output"}.get(bound.score, bound.score)


def minmax_masks(maps: torch.Tensor, size: tuple[int, int], *, eps: float, align_corners: bool = False) -> torch.Tensor:
    """(n,h,w) feature maps -> (n,H,W) masks: bilinear upsample, then per map
    (m - min) / (max - min + eps). A constant map gives an all-zero mask."""
    up = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=align_corners)[:, 0]
    flat = up.flatten(1)
    lo = flat.amin(dim=1)[:, None, None]
    hi = flat.amax(dim=1)[:, None, None]
    return (up - lo) / (hi - lo + eps)


def check_batch_size(batch_size: BatchSize) -> BatchSize:
    if batch_size == "auto":
        return batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int or 'auto'; got {batch_size!r}")
    return batch_size


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
    return value


def score_items(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    n: int,
    make_inputs: Callable[[int, int], torch.Tensor],
    target: BoundTarget,
    rows: torch.Tensor,
    *,
    batch_size: BatchSize = "auto",
    device: torch.device | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Scores (n,) of n perturbed inputs: item i perturbs sample rows[i] and is scored with
    that sample's target. A thin layer over `batched_scores`."""

    def score(output: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        return target(output, rows[start:stop]).float()

    return batched_scores(model, n, make_inputs, score, batch_size=batch_size, device=device, progress=progress)


# --- tail execution ---------------------------------------------------------------------------


def _log_fallback(model: nn.Module, layer: str, reason: str) -> None:
    key = (type(model).__name__, layer, reason)
    if key in _logged:
        return
    _logged.add(key)
    logger.debug(
        "tail execution: cannot split %s after layer '%s' (%s); using full forwards with a substitution hook",
        type(model).__name__, layer, reason,
    )


class _SplitError(Exception):
    pass


def _stack_names(node: Any) -> set[str]:
    return {key.split("@")[0] for key in node.meta.get("nn_module_stack", {})}


class _FxSplit:
    """A traced model cut after layer `name`: head(x) -> (layer output, crossing values),
    tail(acts, *crossing) -> model output."""

    def __init__(self, model: nn.Module, name: str):
        import torch.fx as fx

        try:
            traced = fx.symbolic_trace(model)
        except Exception as exc:  # any tracing failure means: no split
            raise _SplitError(f"torch.fx cannot trace the model: {type(exc).__name__}: {exc}") from None
        nodes = list(traced.graph.nodes)
        inside = [n for n in nodes if (n.op == "call_module" and n.target == name) or name in _stack_names(n)]
        if not inside:
            raise _SplitError("the layer does not appear in the traced graph")
        if sum(1 for n in nodes if n.op == "call_module" and n.target == name) > 1:
            raise _SplitError("the layer is called more than once")
        inside_set = set(inside)
        consumed = {n for n in inside for user in n.users if user not in inside_set}
        if len(consumed) != 1:
            raise _SplitError(f"the layer has {len(consumed)} values used after it; expected exactly one output")
        (out_node,) = consumed
        position = {n: i for i, n in enumerate(nodes)}
        cut = max(position[n] for n in inside)
        tail_nodes = [n for n in nodes[cut + 1:] if n.op != "placeholder"]
        tail_set = set(tail_nodes)
        crossing: list[Any] = []
        for n in tail_nodes:
            for arg in n.all_input_nodes:
                if arg not in tail_set and arg is not out_node and arg.op != "get_attr" and arg not in crossing:
                    crossing.append(arg)
        # head: the original graph returning (layer output, crossing values)
        head_graph = fx.Graph()
        env: dict[Any, Any] = {}
        for n in nodes[: cut + 1]:
            if n.op == "output":
                continue
            env[n] = head_graph.node_copy(n, lambda a: env[a])
        for n in crossing:
            if n not in env:
                raise _SplitError("a value used after the layer is computed after it")
        head_graph.output(tuple(env[n] for n in [out_node, *crossing]))
        # tail: placeholders for the layer output and the crossing values
        tail_graph = fx.Graph()
        tenv: dict[Any, Any] = {out_node: tail_graph.placeholder("layer_output")}
        for i, n in enumerate(crossing):
            tenv[n] = tail_graph.placeholder(f"crossing_{i}")

        def remap(a: Any) -> Any:
            if a not in tenv and a.op == "get_attr":
                tenv[a] = tail_graph.node_copy(a, remap)
            return tenv[a]

        for n in tail_nodes:
            tenv[n] = tail_graph.node_copy(n, remap)
        self.head = fx.GraphModule(traced, head_graph)
        self.tail = fx.GraphModule(traced, tail_graph)
        for part in (self.head, self.tail):
            part.graph.eliminate_dead_code()
            part.recompile()
        self.n_crossing = len(crossing)


class LayerTail:
    """Evaluate `model` after layer `name` on modified activations of that layer.

    Built on the clean batch x: `activation` is the layer's output on x (B,...). Then
    `run(acts, rows)` returns the model output for n modified activations, row i belonging
    to sample rows[i]. mode "auto" tries a torch.fx split (layers before the cut ran once,
    on x) and falls back to "hook" (full forwards of x[rows] with a forward hook that
    substitutes the activations) when the model cannot be split — logged once at debug
    level. `path` says which one is used; `reason` why the split failed (or None).
    `output`: the model's output on x when the caller has it (saves one forward);
    `split_cache`: a dict kept by the caller so a model is traced once per layer.
    """

    def __init__(self, model: nn.Module, name: str, module: nn.Module, x: torch.Tensor, *, mode: TailMode = "auto",
                 split_cache: dict[str, Any] | None = None, output: torch.Tensor | None = None):
        if mode not in ("auto", "fx", "hook"):
            raise ValueError(f"tail must be 'auto', 'fx' or 'hook'; got {mode!r}")
        self.model, self.name, self.module, self.x = model, name, module, x
        self.reason: str | None = None
        self.path = "hook"
        self._crossing: list[torch.Tensor] = []
        split = None
        if mode != "hook":
            cache = split_cache if split_cache is not None else {}
            cached = cache.get(name)
            if cached is None:
                try:
                    cached = _FxSplit(model, name)
                except _SplitError as exc:
                    cached = str(exc)
                cache[name] = cached
            if isinstance(cached, str):
                self.reason = cached
            else:
                split = cached
        if split is not None:
            with torch.no_grad():
                values = split.head(x)
                if output is None:
                    output = model(x)
            act, crossing = values[0], list(values[1:])
            bad = [v for v in crossing if not (isinstance(v, torch.Tensor) and v.ndim >= 1 and v.shape[0] == x.shape[0])]
            if not isinstance(act, torch.Tensor):
                self.reason = "the layer output is not a tensor"
            elif bad:
                self.reason = "values crossing the cut are not batch tensors (e.g. a size computed before the layer)"
            else:
                with torch.no_grad():
                    check = split.tail(act.clone(), *crossing)
                if not (isinstance(check, torch.Tensor) and check.shape == output.shape
                        and torch.allclose(check, output, rtol=1e-4, atol=1e-5)):
                    self.reason = "the split graph does not reproduce the model's output"
                else:
                    self.path, self._split, self._crossing = "fx", split, crossing
                    self.activation = act.detach()
        if self.path == "hook":
            if mode == "fx":
                raise ValueError(
                    f"tail='fx' was requested but {type(model).__name__} cannot be split after layer '{name}': "
                    f"{self.reason}. Use tail='auto' to fall back to full forwards"
                )
            if self.reason is not None:
                _log_fallback(model, name, self.reason)
            self.activation = self._capture(x)

    def _capture(self, x: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []

        def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                captured.append(output.detach().clone())

        handle = self.module.register_forward_hook(hook)
        try:
            with torch.no_grad():
                self.model(x)
        finally:
            handle.remove()
        if len(captured) != 1:
            raise ValueError(
                f"layer '{self.name}' was called {len(captured)} times in one forward of {type(self.model).__name__}; "
                "perturbing it needs a layer called exactly once with a tensor output"
            )
        return captured[0]

    def run(self, acts: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Model output (n, ...) for activations acts (n, ...) of samples rows (n,)."""
        if self.path == "fx":
            return self._split.tail(acts, *[v[rows] for v in self._crossing])

        def hook(module: nn.Module, inputs: tuple, output: Any) -> torch.Tensor:
            return acts

        handle = self.module.register_forward_hook(hook)
        try:
            return self.model(self.x[rows])
        finally:
            handle.remove()

    def scores(self, n: int, make_acts: Callable[[int, int], torch.Tensor], target: BoundTarget,
               rows: torch.Tensor, *, batch_size: BatchSize = "auto", progress: Progress | None = None) -> torch.Tensor:
        """`score_items` for activations built by make_acts(start, stop)."""
        current: dict[str, torch.Tensor] = {}

        def make(start: int, stop: int) -> torch.Tensor:
            current["rows"] = rows[start:stop]
            return make_acts(start, stop)

        def forward(acts: torch.Tensor) -> torch.Tensor:
            return self.run(acts, current["rows"])

        return score_items(forward, n, make, target, rows, batch_size=batch_size, device=self.x.device,
                           progress=progress)
