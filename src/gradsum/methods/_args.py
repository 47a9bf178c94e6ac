"""Argument checks for explainer constructors (validate at the boundary, once).

Each error names the argument, says what was given and what is expected, and how to fix it.
Integers accept Python and numpy integers (never bool); numbers accept any finite real
(Python, numpy), never bool, NaN or infinity.
"""
from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Sequence
from typing import Any

__all__ = ["check_int", "check_number", "check_seed", "check_choice", "check_flag", "unknown_names"]

# the range torch.Generator.manual_seed accepts
_SEED_MIN, _SEED_MAX = -(2**63), 2**64 - 1


def check_int(value: Any, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """`value` as an int in [minimum, maximum]; TypeError for a non-integer (2.5, "3",
    True), ValueError out of range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        hint = f" (use {name}={int(value)})" if isinstance(value, float) and value.is_integer() else ""
        raise TypeError(f"{name} must be an int >= {minimum}; got {value!r} ({type(value).__name__}){hint}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an int {bound}; got {value}")
    return value


def check_number(value: Any, name: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, meaning: str = "") -> float:
    """`value` as a finite float within the given bounds (open or closed); TypeError for a
    non-number, ValueError for NaN, infinity or a value outside the bounds. `meaning` says
    in words what the argument is, for the message."""
    what = f" ({meaning})" if meaning else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}{what} must be a number; got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}{what} must be a finite number; got {value}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        parts = []
        if low is not None:
            parts.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            parts.append(f"{'<' if high_open else '<='} {high:g}")
        raise ValueError(f"{name}{what} must be {' and '.join(parts)}; got {value:g}")
    return value


def check_seed(seed: Any, name: str = "seed") -> int:
    """A seed torch.Generator.manual_seed accepts: an int in [-2**63, 2**64 - 1]."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be an int (e.g. {name}=0); got {seed!r} ({type(seed).__name__})")
    seed = int(seed)
    if not _SEED_MIN <= seed <= _SEED_MAX:
        raise ValueError(f"{name} must be in [-2**63, 2**64 - 1] (what torch.Generator accepts); got {seed}")
    return seed


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """`value` if it is one of `choices`; a misspelt value names the closest choice."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r} ({type(value).__name__})")
    if value not in choices:
        close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown {name} {value!r}; use {', '.join(map(repr, choices))}{hint}")
    return value


def check_flag(value: Any, name: str) -> bool:
    """`value` if it is a bool (numpy bools included); TypeError otherwise (e.g. the string "false")."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise TypeError(f"{name} must be True or False; got {value!r} ({type(value).__name__})")


def unknown_names(keys: Sequence[str], known: Sequence[str]) -> str:
    """The names in `keys` for an error message, each with the closest of `known` when there
    is one: "'stpe' (did you mean 'step'?), 'x'"."""
    hints = []
    for key in keys:
        close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return ", ".join(hints)
