"""Saving and safely loading models: state dicts (weights_only), TorchScript, and whole
pickled modules only with explicit trust."""
from __future__ import annotations

import os
import pickle
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradsum.models.card import ModelCard, card_of
from gradsum.models.normalize import Normalize, unwrap

__all__ = ["save", "load", "load_into", "load_checkpoint", "read_model_file", "atomic_torch_save",
           "UntrustedFileError", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "gradsum.checkpoint/1"


class UntrustedFileError(ValueError):
    """The file holds a pickled Python object that may only be loaded with trust=True."""


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """torch.save to a temporary file in the same folder, then rename (never a half file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save(model: nn.Module, path: str | os.PathLike[str], meta: Mapping[str, Any] | None = None,
         card: ModelCard | None = None) -> Path:
    """Write ``{"format", "model", "state_dict", "meta", "card"}`` to `path` (atomically);
    loads back with ``torch.load(weights_only=True)``. `meta` must hold only plain values
    (str, int, float, bool, None, lists/dicts of them, tensors). `card` (default: the one
    `gs.models.build` attached to the model) lets `gs.models.build(weights=path)` and the CLI
    rebuild the model from the file alone."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"save needs an nn.Module, got {type(model).__name__}")
    if card is not None and not isinstance(card, ModelCard):
        raise TypeError(f"card must be a gradsum.models.ModelCard, got {type(card).__name__}")
    card = card or card_of(model)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": type(model).__name__,
        "state_dict": state,
        "meta": _plain(dict(meta or {}), "meta"),
        "card": None if card is None else _plain(card.to_dict(), "card"),
    }
    return atomic_torch_save(payload, path)


def _plain(value: Any, where: str) -> Any:
    """Check that `value` survives weights_only loading; convert tuples to lists."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy scalar
        return value.item()
    raise TypeError(
        f"checkpoint {where} holds a {type(value).__name__}; only str/int/float/bool/None, "
        "lists, dicts and tensors can be stored (they load with weights_only=True)"
    )


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())


def _head_hint(state: dict[str, Any], own: dict[str, Any]) -> str:
    """'The file's head has K outputs: add --num-classes K. ' when the only shape differences are
    in the first dimension of a final layer (a classifier trained for K classes)."""
    outs = {int(state[k].shape[0]) for k in set(own) & set(state)
            if state[k].shape != own[k].shape and state[k].ndim >= 1 and state[k].shape[1:] == own[k].shape[1:]}
    others = [k for k in set(own) & set(state) if state[k].shape != own[k].shape
              and (state[k].ndim < 1 or state[k].shape[1:] != own[k].shape[1:])]
    if len(outs) == 1 and not others:
        k = outs.pop()
        return f"The file's head has {k} outputs: add --num-classes {k} (num_classes={k} in Python). "
    return ""


def _short(keys: list[str], n: int = 6) -> str:
    head = ", ".join(keys[:n])
    return f"{head}, ... (+{len(keys) - n} more)" if len(keys) > n else head


def _extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return dict(inner)
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
    raise ValueError(
        f"{path} does not hold a state dict (got {type(obj).__name__}"
        + (f" with keys {_short([str(k) for k in obj])}" if isinstance(obj, Mapping) else "")
        + "); expected a mapping of parameter names to tensors, or a checkpoint with 'state_dict'"
    )


def _fit_prefixes(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Strip a DataParallel 'module.' prefix, or add/remove the 'model.' prefix of a
    Normalized wrapper, when that makes the keys match."""
    if set(state) == expected:
        return state
    candidates = [state]
    if all(k.startswith("module.") for k in state):
        candidates.append({k[len("module."):]: v for k, v in state.items()})
    for cand in list(candidates):
        candidates.append({f"model.{k}": v for k, v in cand.items()})
        if all(k.startswith("model.") for k in cand):
            candidates.append({k[len("model."):]: v for k, v in cand.items()})
    best = max(candidates, key=lambda c: len(set(c) & expected))
    return best


def _is_normalize_buffer(key: str) -> bool:
    """'normalize.mean', 'model.normalize.std': a statistic of a `Normalize` module."""
    owner, _, buffer = key.rpartition(".")
    return buffer in ("mean", "std") and owner.rpartition(".")[2] == "normalize"


def _load_state_into(model: nn.Module, state: dict[str, torch.Tensor], path: Path, strict: bool) -> None:
    own = model.state_dict()
    # the statistics of a Normalize the model does not have (weights of a wrapped model
    # loaded into the bare architecture, e.g. with --normalize none) are not weights
    state = {k: v for k, v in state.items() if k in own or not _is_normalize_buffer(k)}
    state = _fit_prefixes(state, set(own))
    # weights of a bare model loaded into a Normalized wrapper keep the wrapper's statistics
    for name, module in model.named_modules():
        if isinstance(module, Normalize):
            for buf in ("mean", "std"):
                key = f"{name}.{buf}" if name else buf
                if key in own and key not in state:
                    state[key] = own[key]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(
        f"{k} {tuple(state[k].shape)} in the file vs {tuple(own[k].shape)} in the model"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    problems = []
    if wrong_shape:
        problems.append(f"shape mismatch ({len(wrong_shape)}): {_short(wrong_shape, 3)}")
    if strict and missing:
        problems.append(f"missing keys ({len(missing)}): {_short(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_short(unexpected)}")
    if problems:
        inner, _ = unwrap(model)
        raise ValueError(
            f"the weights in {path} do not fit {type(inner).__name__}: " + "; ".join(problems)
            + f". {_head_hint(state, own)}Build the same architecture (the same --model and --num-classes; in "
            "Python, strict=False loads what fits)"
        )
    model.load_state_dict(state, strict=strict)


#: what torch.load raises for an empty, truncated or foreign file
_UNREADABLE = (RuntimeError, EOFError, OSError, KeyError, ValueError, zipfile.BadZipFile)


def _unreadable(path: Path, exc: BaseException) -> ValueError:
    size = path.stat().st_size if path.exists() else 0
    what = "is empty" if size == 0 else f"is not a readable PyTorch file ({size} bytes: truncated, or another format)"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    detail = text.split(". ")[0].rstrip(".")[:160]  # torch's first sentence
    return ValueError(f"{path} {what}: {detail}; save weights with torch.save(model.state_dict(), path)")


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save` or the trainer with ``weights_only=True`` and return
    its dict (state_dict, meta, card, and for trainer checkpoints epoch and metrics)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UntrustedFileError(f"{path} is not a plain checkpoint (it needs full unpickling): {exc}".splitlines()[0]) from None
    except _UNREADABLE as exc:
        raise _unreadable(path, exc) from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    return obj


def read_model_file(path: str | os.PathLike[str], trust: bool = False,
                    map_location: str | torch.device = "cpu") -> Any:
    """The content of a model file: an nn.Module (TorchScript; a pickled module only with
    ``trust=True``) or what ``torch.load(weights_only=True)`` gives (a state dict or a
    checkpoint dict)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    if _is_torchscript(path):
        with warnings.catch_warnings():  # torch >= 2.10 marks TorchScript deprecated; we still read it
            warnings.simplefilter("ignore", FutureWarning)
            try:
                return torch.jit.load(str(path), map_location=map_location)
            except (RuntimeError, OSError) as exc:
                raise _unreadable(path, exc) from None
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        if not trust:
            raise UntrustedFileError(
                f"{path} is a pickled Python object (such as a whole nn.Module), not a state dict; "
                "unpickling can run arbitrary code, so it is refused. If you trust where the file "
                "came from, pass trust=True (CLI: --trust-pickle); better, re-save it with "
                "gradsum.models.save(model, path) or torch.save(model.state_dict(), path)"
            ) from None
    except _UNREADABLE as exc:
        raise _unreadable(path, exc) from None
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except (ModuleNotFoundError, AttributeError) as exc:
        raise ValueError(
            f"{path} is a pickled model whose class cannot be found ({exc}); import the module that "
            "defines it first, or re-save the model as a state dict"
        ) from None


def load_into(model: nn.Module, content: Any, path: str | os.PathLike[str], strict: bool = True) -> nn.Module:
    """Copy the weights of `content` (from `read_model_file`) into `model`; eval mode."""
    path = Path(path)
    if isinstance(content, nn.Module):
        _load_state_into(model, dict(content.state_dict()), path, strict)
    else:
        _load_state_into(model, _extract_state_dict(content, path), path, strict)
    return model.eval()


def load(
    path: str | os.PathLike[str],
    model: nn.Module | str | None = None,
    trust: bool = False,
    map_location: str | torch.device = "cpu",
    strict: bool = True,
) -> nn.Module:
    """Load a model from `path` and return it in eval mode.

    - state dict, or a checkpoint dict with 'state_dict' (from `save` or the trainer): read
      with ``torch.load(weights_only=True)`` into `model` (an nn.Module or a `build` spec such
      as "pilotnet"; for a checkpoint that carries a model card, `gs.models.build(weights=path)`
      needs no spec);
    - TorchScript archive: ``torch.jit.load``; if `model` is given its weights are copied in;
    - a whole pickled nn.Module: only with ``trust=True`` (unpickling runs code from the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    if isinstance(model, str):
        from gradsum.models.zoo import build

        model = build(model)
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(f"load(model=...) must be an nn.Module, got {type(model).__name__}")
    content = read_model_file(path, trust=trust, map_location=map_location)
    if model is None:
        if isinstance(content, nn.Module):
            return content.eval()
        _extract_state_dict(content, path)  # a clear error when it is not even a state dict
        raise ValueError(
            f"{path} holds only weights (a state dict); pass the architecture to load them into, "
            "e.g. gradsum.models.load(path, model=gradsum.models.build('pilotnet')) or --model SPEC"
        )
    return load_into(model, content, path, strict)
