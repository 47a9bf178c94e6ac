"""Shared CLI plumbing: user errors (one line, exit code 2) and small parsing helpers."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer

__all__ = ["UserError", "user_errors", "fail", "split_list", "layer_option"]

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
