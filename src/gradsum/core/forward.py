"""Running the user's model on an input it may not accept: a ValueError that names the
input, its shape and the layer that failed, instead of torch's RuntimeError."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gradsum.core.batching import is_out_of_memory

__all__ = ["forward_checked"]


def forward_checked(model: nn.Module, x: torch.Tensor, what: str = "x", *, in_layer_only: bool = False) -> Any:
    """model(x); when the model cannot run on x (the wrong number of channels, an image too
    small for its layers, ...), a ValueError that names `what`, x's shape and the layer that
    failed instead of the bare RuntimeError from inside torch (chained to it).
    in_layer_only: keep the RuntimeError when no layer of the model failed (an error in the
    model's own forward code is the model's, not the input's)."""
    try:
        return model(x)
    except RuntimeError as exc:
        if is_out_of_memory(exc):
            raise
        where = _failing_layer(model, x)
        if in_layer_only and not where:  # the model's own code failed, not one of its layers on x
            raise
        lines = str(exc).strip().splitlines()
        reason = lines[0] if lines else type(exc).__name__
        raise ValueError(
            f"the model cannot run on {what} (shape {tuple(x.shape)}, {str(x.dtype).replace('torch.', '')})"
            f"{where}: {reason}. Check the number of channels and the image size the model expects"
        ) from exc


def _failing_layer(model: nn.Module, x: torch.Tensor) -> str:
    """' in layer NAME (Conv2d, 3 input channels)' for the innermost module whose forward
    raised on x (found by running x again with pre/post hooks), or '' when none is found."""
    open_calls: list[tuple[str, nn.Module]] = []
    handles = []

    def enter(name: str, module: nn.Module) -> Callable[..., None]:
        return lambda *_: open_calls.append((name, module))

    def leave(*_: Any) -> None:
        if open_calls:
            open_calls.pop()

    try:
        for name, module in model.named_modules():
            if name and not any(True for _ in module.children()):
                handles.append(module.register_forward_pre_hook(enter(name, module)))
                handles.append(module.register_forward_hook(leave))
        with torch.no_grad():
            model(x)
    except Exception:  # noqa: BLE001 - the failure is expected; only where it happened matters
        pass
    finally:
        for h in handles:
            h.remove()
    if not open_calls:
        return ""
    name, module = open_calls[-1]
    if hasattr(module, "in_channels"):
        expects = f", {module.in_channels} input channels"
    elif hasattr(module, "in_features"):
        expects = f", {module.in_features} input features"
    else:
        expects = ""
    return f" in layer '{name}' ({type(module).__name__}{expects})"


