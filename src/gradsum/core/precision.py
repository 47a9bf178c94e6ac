"""The precision an explanation runs in, on every device.

By default explanations run in full float32: on NVIDIA GPUs PyTorch lets cuDNN convolutions
(and, if a user enabled it, matrix products) use TF32, whose 10-bit mantissa moves gradient
maps by several percent of their maximum (measured on an H200: saliency 6%, integrated
gradients 8%, SISE 12%) — so a GPU heatmap would not equal the CPU's. `precision_scope`
turns TF32 off for the duration of a call and restores the user's settings afterwards, even
on error. `precision="tf32"` (TF32 allowed) and `autocast="bf16" | "fp16"` (torch.autocast
around the model) are explicit opt-ins for throughput; the choice is recorded in every
result's settings. On the CPU the float32 policy changes nothing.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["PRECISIONS", "AUTOCAST_DTYPES", "precision_scope", "check_precision", "precision_settings"]

PRECISIONS = ("float32", "tf32")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: Any, autocast: Any = None) -> tuple[str, str | None]:
    """Validated (precision, autocast): precision in PRECISIONS, autocast None or a key of
    AUTOCAST_DTYPES; a ValueError names the argument and the valid values."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)} (float32: TF32 off, the default); "
                         f"got {precision!r}")
    if autocast is not None and autocast not in AUTOCAST_DTYPES:
        raise ValueError(f"autocast must be None, 'bf16' or 'fp16'; got {autocast!r}")
    return precision, autocast


def precision_settings(precision: str = "float32", autocast: str | None = None) -> dict[str, Any]:
    """What a result records about its precision."""
    return {"precision": precision, "autocast": autocast}


def _tf32_switches() -> list[tuple[Any, str, Any]]:
    """(object, attribute, value that allows TF32 / keeps IEEE float32) for matmul and cuDNN:
    the fp32_precision API of recent PyTorch when present (the legacy allow_tf32 flags may not
    be mixed with it), else allow_tf32."""
    switches: list[tuple[Any, str, Any]] = []
    matmul = torch.backends.cuda.matmul
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision") and hasattr(matmul, "fp32_precision"):
        switches += [(matmul, "fp32_precision", ("tf32", "ieee")), (conv, "fp32_precision", ("tf32", "ieee"))]
        rnn = getattr(torch.backends.cudnn, "rnn", None)
        if rnn is not None and hasattr(rnn, "fp32_precision"):
            switches.append((rnn, "fp32_precision", ("tf32", "ieee")))
    else:
        switches += [(matmul, "allow_tf32", (True, False)), (torch.backends.cudnn, "allow_tf32", (True, False))]
    return switches


@contextlib.contextmanager
def precision_scope(precision: str = "float32", autocast: str | None = None,
                    device: torch.device | str | None = None) -> Iterator[None]:
    """Run the block in `precision` ("float32": TF32 off; "tf32": TF32 on) and, with
    `autocast`, under torch.autocast(device type, bfloat16 / float16); every global switch is
    restored afterwards."""
    precision, autocast = check_precision(precision, autocast)
    switches = _tf32_switches()
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in switches]
    try:
        for obj, name, (allow, ieee) in switches:
            setattr(obj, name, allow if precision == "tf32" else ieee)
        if autocast is None:
            yield
        else:
            kind = torch.device(device).type if device is not None else "cpu"
            with torch.autocast(device_type=kind, dtype=AUTOCAST_DTYPES[autocast]):
                yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)
