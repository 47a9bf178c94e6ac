"""Attention probabilities read from modules that never materialise them.

Transformers compute self-attention with fused kernels that never return the post-softmax
probabilities A = softmax(q k^T * scale + mask): torchvision's ``nn.MultiheadAttention`` is
called with ``need_weights=False`` (its C++ fast path or ``F.multi_head_attention_forward`` ->
``F.scaled_dot_product_attention``), timm's ``Attention`` calls
``F.scaled_dot_product_attention``. Inside ``attention_probabilities(model)`` a
``TorchFunctionMode`` replaces those two functions by their eager equivalent
(softmax(q k^T * scale + mask) @ v, the same scale, masks and head layout), records A, and
returns what the fused call would (equal to ~1e-6). A torch-function mode is active, so
``nn.MultiheadAttention`` skips its C++ fast path and goes through the Python function the mode
intercepts. Modules with timm's eager path (``fused_attn=False``) compute A themselves and pass
it through ``attn_drop``: a forward hook on that dropout records it. Nothing of the model is
modified (no flag, no module); the hooks are removed and the mode popped on exit, also when the
block raises.

Each recorded A is (B, heads, Nq, Nk) in call order (= block order for a ViT), and
graph-connected: when autograd is on, A is part of the graph the output is computed from, so
``torch.autograd.grad(score, captured)`` gives dscore/dA. When nothing upstream of A requires
grad (the input does not, the parameters are frozen), A is made a fresh leaf that requires grad,
so that gradients with respect to it still exist (and stop there). Under ``torch.no_grad()``
A is a plain tensor.

    with attention_probabilities(model) as captured:
        output = model(x)
    grads = torch.autograd.grad(score(output).sum(), captured)

Refused, with an `AttentionCaptureError` naming the reason, rather than read wrongly: added key
biases / zero attention (``bias_k``, ``add_zero_attn``), static keys, active attention dropout
(a model in training mode), a ``fused_attn=False`` module without an ``attn_drop`` to hook.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = ["attention_probabilities", "AttentionCaptureError", "eager_attention"]

_SDPA = F.scaled_dot_product_attention
_MHA = F.multi_head_attention_forward
_SDPA_SIGNATURE = inspect.Signature([
    inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=d)
    for n, d in (("query", inspect.Parameter.empty), ("key", inspect.Parameter.empty),
                 ("value", inspect.Parameter.empty), ("attn_mask", None), ("dropout_p", 0.0),
                 ("is_causal", False), ("scale", None), ("enable_gqa", False))
])
_MHA_SIGNATURE = inspect.signature(_MHA)


class AttentionCaptureError(ValueError):
    """An attention configuration whose probabilities cannot be reproduced exactly."""


def _graph_node(a: torch.Tensor) -> torch.Tensor:
    """A itself when it is part of the graph (or autograd is off); else a leaf requiring grad."""
    if torch.is_grad_enabled() and not a.requires_grad:
        return a.detach().requires_grad_(True)
    return a


def _softmax(logits: torch.Tensor, masked: bool) -> torch.Tensor:
    """softmax over the keys; with a mask, a query whose every key is masked gets zeros (as
    torch's scaled_dot_product_attention gives), not NaN."""
    probabilities = logits.softmax(dim=-1)
    if masked:
        probabilities = probabilities.masked_fill(torch.isneginf(logits).all(dim=-1, keepdim=True), 0.0)
    return probabilities


def _check_dropout(p: float, where: str) -> None:
    if p > 0:
        raise AttentionCaptureError(
            f"{where}: attention dropout is active (p={p:g}); attention probabilities are read in eval "
            "mode only (gradsum's explainers put the model in eval mode; call model.eval() first)"
        )


def eager_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0, is_causal: bool = False,
                    scale: float | None = None, enable_gqa: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``F.scaled_dot_product_attention`` computed eagerly: (output, A) with
    A = softmax(q k^T * scale + mask), scale = 1/sqrt(E) by default, a boolean mask True where
    attention is allowed (a float mask is added), ``is_causal`` the lower-triangular mask,
    ``enable_gqa`` repeating the key/value heads. A is what `attention_probabilities` records."""
    _check_dropout(float(dropout_p), "scaled_dot_product_attention")
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        repeat = query.shape[-3] // key.shape[-3]
        key, value = key.repeat_interleave(repeat, dim=-3), value.repeat_interleave(repeat, dim=-3)
    factor = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    logits = (query @ key.transpose(-2, -1)) * factor
    n_query, n_key = query.shape[-2], key.shape[-2]
    if is_causal:
        if attn_mask is not None:
            raise AttentionCaptureError("scaled_dot_product_attention got both attn_mask and is_causal=True")
        allowed = torch.ones(n_query, n_key, dtype=torch.bool, device=query.device).tril()
        logits = logits.masked_fill(~allowed, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            logits = logits.masked_fill(~attn_mask, float("-inf"))
        else:
            logits = logits + attn_mask
    probabilities = _softmax(logits, masked=is_causal or attn_mask is not None)
    a = _graph_node(probabilities)
    return a @ value, a


def _mha_eager(bound: dict[str, Any]) -> tuple[tuple[torch.Tensor, torch.Tensor | None], torch.Tensor]:
    """``F.multi_head_attention_forward`` computed eagerly (the need_weights=True path of torch,
    with A kept per head): ((output, weights or None), A (N, heads, L, S))."""
    where = "nn.MultiheadAttention"
    if bound["bias_k"] is not None or bound["bias_v"] is not None or bound["add_zero_attn"]:
        raise AttentionCaptureError(
            f"{where} with bias_k/bias_v or add_zero_attn adds key tokens that are not in the input; "
            "its attention cannot be laid out over the tokens"
        )
    if bound["static_k"] is not None or bound["static_v"] is not None:
        raise AttentionCaptureError(f"{where} with static_k/static_v is not supported by the attention capture")
    if bound["training"]:
        _check_dropout(float(bound["dropout_p"]), where)
    query, key, value = bound["query"], bound["key"], bound["value"]
    batched = query.dim() == 3
    same = query is key and key is value
    # work batch-first, (N, L, E): nn.MultiheadAttention(batch_first=True) hands over a transposed
    # view of a contiguous batch-first tensor, and a Linear on that view is ~3x slower
    if same:
        query = key = value = _batch_first(query) if batched else query.unsqueeze(0)
    elif batched:
        query, key, value = (_batch_first(t) for t in (query, key, value))
    else:
        query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
    batch, n_query, embed = query.shape
    n_key = key.shape[1]
    heads = int(bound["num_heads"])
    head_dim = embed // heads
    bias = bound["in_proj_bias"]
    b_q, b_k, b_v = bias.chunk(3) if bias is not None else (None, None, None)
    if bound["use_separate_proj_weight"]:
        q = F.linear(query, bound["q_proj_weight"], b_q)
        k = F.linear(key, bound["k_proj_weight"], b_k)
        v = F.linear(value, bound["v_proj_weight"], b_v)
    elif same:
        q, k, v = F.linear(query, bound["in_proj_weight"], bias).chunk(3, dim=-1)
    else:
        w_q, w_k, w_v = bound["in_proj_weight"].chunk(3)
        q, k, v = F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)
    # (N, L, E) -> (N, heads, L, head_dim)
    q = q.reshape(batch, n_query, heads, head_dim).transpose(1, 2)
    k = k.reshape(batch, n_key, heads, head_dim).transpose(1, 2)
    v = v.reshape(batch, n_key, heads, head_dim).transpose(1, 2)
    logits = (q * (1.0 / math.sqrt(head_dim))) @ k.transpose(-2, -1)
    attn_mask, padding = bound["attn_mask"], bound["key_padding_mask"]
    if attn_mask is not None:  # (L, S) or (N * heads, L, S); True = masked
        mask = attn_mask if attn_mask.dim() == 2 else attn_mask.reshape(batch, heads, n_query, n_key)
        logits = logits.masked_fill(mask, float("-inf")) if mask.dtype == torch.bool else logits + mask
    elif bound["is_causal"]:
        raise AttentionCaptureError(f"{where}: is_causal=True needs the causal attn_mask (as torch requires)")
    if padding is not None:  # (N, S) or (S,); True = masked
        padding = padding.reshape(batch, 1, 1, n_key)
        logits = logits.masked_fill(padding, float("-inf")) if padding.dtype == torch.bool else logits + padding
    a = _graph_node(_softmax(logits, masked=attn_mask is not None or padding is not None))
    out = (a @ v).transpose(1, 2).reshape(batch, n_query, embed)
    out = F.linear(out, bound["out_proj_weight"], bound["out_proj_bias"])
    weights = None
    if bound["need_weights"]:
        weights = a.mean(dim=1) if bound["average_attn_weights"] else a
        if not batched:
            weights = weights.squeeze(0)
    out = out.transpose(0, 1) if batched else out.squeeze(0)  # back to (L, N, E) / (L, E)
    return (out, weights), a


def _batch_first(t: torch.Tensor) -> torch.Tensor:
    """(L, N, E) -> (N, L, E), contiguous (a view when the caller transposed a batch-first tensor)."""
    t = t.transpose(0, 1)
    return t if t.is_contiguous() else t.contiguous()


class _AttentionMode(TorchFunctionMode):
    """Runs sdpa and multi_head_attention_forward eagerly, recording A."""

    def __init__(self, record: Callable[[torch.Tensor], None]):
        super().__init__()
        self.record = record

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if func is _SDPA:
            bound = _SDPA_SIGNATURE.bind(*args, **kwargs)
            bound.apply_defaults()
            out, a = eager_attention(**bound.arguments)
            self.record(a)
            return out
        if func is _MHA:
            bound = _MHA_SIGNATURE.bind(*args, **kwargs)
            bound.apply_defaults()
            result, a = _mha_eager(bound.arguments)
            self.record(a)
            return result
        return func(*args, **kwargs)


def _eager_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, attn_drop) of every timm-style attention module running its eager path
    (``fused_attn`` False): that dropout receives A right after the softmax."""
    found = []
    for name, module in model.named_modules():
        if getattr(module, "fused_attn", None) is False:
            drop = getattr(module, "attn_drop", None)
            if not isinstance(drop, nn.Module):
                raise AttentionCaptureError(
                    f"module '{name}' ({type(module).__name__}) computes attention eagerly (fused_attn=False) "
                    "without an attn_drop module where its probabilities could be read; set "
                    f"model.{name}.fused_attn = True to read them from scaled_dot_product_attention"
                )
            found.append((f"{name}.attn_drop" if name else "attn_drop", drop))
    return found


class attention_probabilities:
    """Context manager: record the post-softmax attention probabilities of every attention
    call of `model` (and of anything else run inside the block) in call order.

    ``with attention_probabilities(model) as captured:`` -- `captured` is a list that each
    attention call appends its A (B, heads, Nq, Nk) to (see the module docstring for the
    graph semantics). The model's outputs are those of its own fused path to ~1e-6."""

    def __init__(self, model: nn.Module):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        self.model = model
        self.captured: list[torch.Tensor] = []
        self._mode: _AttentionMode | None = None
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _dropout_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
            if module.training:
                _check_dropout(float(getattr(module, "p", 0.0)), name)
            a = _graph_node(output)
            self.captured.append(a)
            return a

        return hook

    def __enter__(self) -> list[torch.Tensor]:
        self.captured.clear()
        try:
            for name, drop in _eager_modules(self.model):
                self._handles.append(drop.register_forward_hook(self._dropout_hook(name)))
            self._mode = _AttentionMode(self.captured.append)
            self._mode.__enter__()
        except BaseException:
            self._close()
            raise
        return self.captured

    def _close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __exit__(self, *exc: object) -> None:
        try:
            if self._mode is not None:
                mode, self._mode = self._mode, None
                mode.__exit__(*exc)
        finally:
            self._close()
