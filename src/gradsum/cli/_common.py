"""Shared CLI plumbing: user errors (one line, exit code 2) and small parsing helpers."""
from __future__ import annotations

import errno
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

__all__ = ["UserError", "user_errors", "fail", "split_list", "layer_option", "parse_size", "check_out_dir",
           "MAX_SIDE", "RESIZE_POLICIES"]

#: the largest image side a command accepts in --size (a 100000x100000 request is refused
#: before anything is allocated)
MAX_SIDE = 8192
RESIZE_POLICIES = ("letterbox", "stretch", "center-crop")
_DISK_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied"}

F = TypeVar("F", bound=Callable[..., Any])


class UserError(Exception):
    """A mistake the user can fix (missing file, unknown name, bad spec): printed as one line."""


def fail(message: str) -> typer.Exit:
    """Print `message` as one line on stderr and return the Exit(2) to raise."""
    typer.echo(f"gradsum: error: {message}", err=True)
    return typer.Exit(code=2)


def user_errors(func: F) -> F:
    """Decorator for commands: UserError, FileNotFoundError, ValueError, KeyError and TypeError
    raised by the library become one line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (UserError, FileNotFoundError, ValueError, KeyError, TypeError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if isinstance(exc, KeyError):
                msg = msg.strip("'\"")
            raise fail(msg) from None
        except ImportError as exc:  # an optional extra that is not installed (the message names it)
            if "pip install" not in str(exc):
                raise
            raise fail(str(exc).strip().splitlines()[0]) from None
        except OSError as exc:
            if exc.errno not in _DISK_ERRORS:
                raise
            where = f" writing {exc.filename}" if exc.filename else ""
            raise fail(f"{_DISK_ERRORS[exc.errno]}{where}; free space or choose another --out folder") from None

    return wrapper  # type: ignore[return-value]


def split_list(value: str | None) -> list[str]:
    """'a,b, c' -> ['a', 'b', 'c']; None or '' -> []."""
    if not value:
        return []
    return [part.strip() for part in value.split(",") if part.strip()]


def layer_option(model: Any, text: str) -> Any:
    """--layer value -> layer spec: 'auto' means the model's declared default layer (else
    auto-detection), 'a,b' a list of layers, anything else one layer name."""
    from gradsum.models import default_layer_for

    names = split_list(text) or ["auto"]
    if names == ["auto"]:
        return default_layer_for(model) or "auto"
    return names[0] if len(names) == 1 else names


def parse_size(text: str | None, option: str = "--size", minimum: int = 4) -> tuple[int, int] | None:
    """'66x200' -> (66, 200); '32' -> (32, 32); None/'' -> None. Sides must lie in
    [minimum, MAX_SIDE] (checked before anything is allocated)."""
    if not text:
        return None
    parts = text.lower().replace("×", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise UserError(f"{option} must look like HxW (e.g. 224x224 or 66x200), got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise UserError(f"{option} must look like HxW (e.g. 224x224 or 66x200), got {text!r}")
    if min(values) < minimum or max(values) > MAX_SIDE:
        raise UserError(f"{option} sides must be between {minimum} and {MAX_SIDE} pixels (the limit), got {text!r}")
    return values[0], values[1]


def check_out_dir(out: Path, option: str = "--out") -> Path:
    """--out must be a folder (existing or not), never an existing file."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{option} {out} is a file; give a folder for the results (it is created if missing)")
    return out
