"""Devices by name: "auto" (CUDA when available, else Apple's MPS, else the CPU), "cpu",
"cuda", "cuda:N", "mps"; and what a run folder records about the device it ran on."""
from __future__ import annotations

import platform
from typing import Any

import torch

__all__ = ["resolve_device", "device_info", "model_device", "DEVICE_FORMS"]

DEVICE_FORMS = "auto, cpu, cuda, cuda:N or mps"


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The torch.device `spec` names; "auto" (or None) picks CUDA when available, else MPS,
    else the CPU. A device that is absent here (CUDA on a machine without it, cuda:3 on a
    machine with 2 GPUs) is a one-line ValueError saying what is available."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        device = torch.device(spec.strip().lower() if isinstance(spec, str) else spec)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device {spec!r} is not a device name; give {DEVICE_FORMS}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            built = "with" if torch.version.cuda else "without"
            raise ValueError(f"device {spec!r}: no CUDA device is available here (torch {torch.__version__} is built "
                             f"{built} CUDA); use --device cpu or auto")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {spec!r}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    elif device.type == "mps" and not _mps_available():
        raise ValueError(f"device {spec!r}: Apple's MPS is not available here; use --device cpu or auto")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {spec!r} is not supported; give {DEVICE_FORMS}")
    return device


def device_info(device: torch.device | str) -> dict[str, Any]:
    """The device a job ran on, for its manifest: type and index, name (GPU model or CPU),
    torch, CUDA and cuDNN versions."""
    device = torch.device(device)
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda}
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        info["name"] = torch.cuda.get_device_name(index)
        info["cudnn"] = torch.backends.cudnn.version()
    else:
        info["name"] = platform.processor() or platform.machine()
        info["threads"] = torch.get_num_threads()
    return info


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's parameters (the CPU for a model without any)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))
