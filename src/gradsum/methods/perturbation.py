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
  that are not batch tensors, forward pre-hooks on the model, forward hooks on a module
  containing L) it falls back to full forwards with a forward hook that substitutes the activations,
  and says so once at warning level with the reason. Both paths give the same numbers.

Foreign hooks (the user's, or pytorch-grad-cam's left on a layer) do not prevent the split:
the model is traced without running any hook (`_hook_free_trace`), and every module that
carries hooks is kept whole in the graph, so the head and tail call the model's own module
objects and their hooks fire there with the inputs they get in a plain forward. Global
module hooks (`torch.nn.modules.module.register_module_forward_hook`) fire for every module
the head and tail call; only the modules containing L (split in two) do not see them.
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
    logger.warning(
        "tail execution: cannot split %s after layer '%s' (%s); using full forwards with a substitution hook "
        "(same numbers, one full forward per perturbed item)",
        type(model).__name__, layer, reason,
    )


_MODULE_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks")


def _has_hooks(module: nn.Module, kinds: tuple[str, ...] = _MODULE_HOOKS) -> bool:
    return any(getattr(module, kind, None) for kind in kinds)


def _global_hooks() -> bool:
    """Whether global module hooks (`register_module_forward_hook` & co) are registered."""
    from torch.nn.modules import module as torch_module

    return any(getattr(torch_module, kind, None) for kind in _GLOBAL_HOOKS)


def _ancestors(name: str) -> set[str]:
    """'' (the model) and every module path containing `name` ("a.b.c" -> '', a, a.b)."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(len(parts))}


def _hook_layout(model: nn.Module, name: str) -> tuple[list[str], tuple[str, ...], bool]:
    """(modules containing `name` that carry forward hooks — for the model itself, forward
    pre-hooks —, other modules that carry hooks, whether global hooks exist): what decides
    how the model may be split."""
    around = _ancestors(name)
    blocked, hooked = [], []
    for path, module in model.named_modules():
        if path in around:  # the model's own forward hooks are replayed on the tail's output (`_root_hooks`)
            if _has_hooks(module, ("_forward_pre_hooks",) if path == "" else ("_forward_hooks", "_forward_pre_hooks")):
                blocked.append(path)
        elif _has_hooks(module):
            hooked.append(path)
    return blocked, tuple(hooked), _global_hooks()


def _root_hooks(model: nn.Module, inputs: tuple[Any, ...], output: Any) -> Any:
    """Call the model's own forward hooks on the tail's output, as `Module.__call__` does at the
    end of a full forward of `inputs` (in registration order, a returned value replacing the
    output; gradsum's output selection is one of them)."""
    with_kwargs = getattr(model, "_forward_hooks_with_kwargs", {})
    for hook_id, hook in list(model._forward_hooks.items()):
        result = hook(model, inputs, {}, output) if hook_id in with_kwargs else hook(model, inputs, output)
        if result is not None:
            output = result
    return output


def _hook_free_trace(model: nn.Module, keep_whole: Callable[[str], bool]) -> Any:
    """`torch.fx.symbolic_trace` that runs no module hook while tracing (the forward of each
    traced-through module is called directly, not through `Module.__call__`), and keeps the
    modules for which keep_whole(path) is true as single `call_module` nodes. Nothing of the
    model is modified: its hook dictionaries and handles are never touched."""
    import torch.fx as fx

    class _HookFreeTracer(fx.Tracer):
        def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
            return super().is_leaf_module(m, module_qualified_name) or keep_whole(module_qualified_name)

        def call_module(self, m: nn.Module, forward: Callable[..., Any], args: tuple[Any, ...],
                        kwargs: dict[str, Any]) -> Any:
            return super().call_module(m, m.forward, args, kwargs)

    tracer = _HookFreeTracer()
    graph = tracer.trace(model)
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


class _SplitError(Exception):
    pass


def _stack_names(node: Any) -> set[str]:
    return {key.split("@")[0] for key in node.meta.get("nn_module_stack", {})}


class _FxSplit:
    """A traced model cut after layer `name`: head(x) -> (layer output, crossing values),
    tail(acts, *crossing) -> model output."""

    def __init__(self, model: nn.Module, name: str, keep_whole: frozenset[str] = frozenset(),
                 everything_whole: bool = False):
        import torch.fx as fx

        around = _ancestors(name)

        def whole(path: str) -> bool:
            return path not in around and (everything_whole or path in keep_whole)

        try:
            traced = _hook_free_trace(model, whole)
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
    substitutes the activations) when the model cannot be split — logged once at warning
    level. `path` says which one is used; `reason` why the split failed (or None).
    Foreign hooks on the layer or on other modules keep the split (they fire in the head
    and tail, where they ran before); the model's own forward hooks are called on the tail's
    output with inputs x[rows], as a full forward calls them. Forward pre-hooks on the model,
    and forward (pre-)hooks on a module containing the layer, force "hook": a split call
    would give them a different call.
    `output`: the model's output on x when the caller has it (saves one forward);
    `split_cache`: a dict kept by the caller so a model is traced once per layer (again when
    the set of modules carrying hooks changes).
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
            blocked, hooked, global_hooks = _hook_layout(model, name)
            if blocked:
                where = ", ".join("the model itself" if p == "" else f"'{p}'" for p in blocked)
                self.reason = (f"{where} carries forward hooks that a split model cannot call as a full forward "
                               "would (pre-hooks of the model, hooks of a module containing the layer)")
            else:
                cache = split_cache if split_cache is not None else {}
                key = (hooked, global_hooks)  # the split depends on which modules carry hooks
                cached = cache.get(name)
                if cached is None or cached[0] != key:
                    try:
                        made: _FxSplit | str = _FxSplit(model, name, frozenset(hooked), global_hooks)
                    except _SplitError as exc:
                        made = str(exc)
                    cached = cache[name] = (key, made)
                if isinstance(cached[1], str):
                    self.reason = cached[1]
                else:
                    split = cached[1]
        if split is not None:
            with torch.no_grad():
                values = split.head.forward(x)  # .forward: global hooks see the model's modules, not the parts
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
                    check = _root_hooks(model, (x,), split.tail.forward(act.clone(), *crossing))
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
            out = self._split.tail.forward(acts, *[v[rows] for v in self._crossing])
            return _root_hooks(self.model, (self.x[rows],), out) if self.model._forward_hooks else out

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
