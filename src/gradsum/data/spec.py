"""Data SPEC strings, as used by the CLI: `load_dataset("roads:500:seed=3,shortcut=1")`.

Forms (options are `key=value` pairs separated by commas, after the last colon):

    roads:N[:k=v,...]          RoadScenes(N, ...)     e.g. roads:500:seed=3,shortcut=1,size=66x200
    cityscapes:DIR[:k=v,...]   Cityscapes(DIR, ...)   e.g. cityscapes:data/cs:split=val,task=steering
    voc:DIR[:k=v,...]          VOCDetection(DIR, ...)
    driving:CSV[:k=v,...]      DrivingLog(CSV, ...)
    folder:DIR[:k=v,...]       ImageFolder(DIR, ...)
    digits[:k=v,...]           Digits(...)            e.g. digits:split=test,size=32

Keyword arguments given to `load_dataset` override the spec's options.
"""
from __future__ import annotations

from typing import Any

__all__ = ["load_dataset", "parse_spec", "SPEC_FORMS"]

SPEC_FORMS = (
    "roads:N[:key=value,...]",
    "cityscapes:DIR[:key=value,...]",
    "voc:DIR[:key=value,...]",
    "driving:CSV[:key=value,...]",
    "folder:DIR[:key=value,...]",
    "digits[:key=value,...]",
)
_KINDS = ("roads", "cityscapes", "voc", "driving", "folder", "digits")


def _bad(spec: str, why: str) -> ValueError:
    return ValueError(f"bad data spec {spec!r}: {why}; valid forms: {', '.join(SPEC_FORMS)}")


def _value(v: str) -> Any:
    low = v.lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    if low == "none":
        return None
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def _options(spec: str, text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise _bad(spec, f"option {part!r} is not key=value")
        k, v = part.split("=", 1)
        out[k.strip()] = _value(v.strip())
    return out


def parse_spec(spec: str) -> tuple[str, str | None, dict[str, Any]]:
    """'kind:arg:k=v,...' -> (kind, arg or None, options)."""
    if not isinstance(spec, str) or not spec.strip():
        raise _bad(str(spec), "empty")
    kind, _, rest = spec.strip().partition(":")
    kind = kind.lower()
    if kind not in _KINDS:
        raise _bad(spec, f"unknown kind {kind!r}")
    if kind == "digits":
        return kind, None, _options(spec, rest)
    if not rest:
        raise _bad(spec, f"{kind} needs an argument")
    arg, opts = rest, {}
    head, sep, tail = rest.rpartition(":")
    if sep and "=" in tail:
        arg, opts = head, _options(spec, tail)
    if not arg:
        raise _bad(spec, f"{kind} needs an argument")
    return kind, arg, opts


def _check_size(spec: str, size: Any) -> None:
    """A `size` option (int, "HxW" or (H, W)) must stay within MAX_IMAGE_PIXELS, so that a
    mistyped size is refused before any image of that size is made."""
    from ._files import MAX_IMAGE_PIXELS

    if isinstance(size, str):
        try:
            size = [int(p) for p in size.lower().replace("×", "x").split("x")]
        except ValueError:
            return  # the dataset names the expected form
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if isinstance(size, list | tuple) and len(size) == 2 and all(isinstance(v, int) for v in size):
        h, w = size
        if h * w > MAX_IMAGE_PIXELS:
            raise _bad(spec, f"size {h}x{w} = {h * w:,} pixels is over the limit of {MAX_IMAGE_PIXELS:,} pixels "
                             "per image (MAX_IMAGE_PIXELS)")


def load_dataset(spec: str, **kw: Any) -> Any:
    """Build the dataset a SPEC names (forms in the module docstring); `kw` override options."""
    kind, arg, opts = parse_spec(spec)
    opts.update(kw)
    if "size" in opts:
        _check_size(spec, opts["size"])
    try:
        if kind == "roads":
            from .roads import RoadScenes

            try:
                n = int(arg)  # type: ignore[arg-type]
            except ValueError:
                raise _bad(spec, f"roads needs a number of scenes, got {arg!r}") from None
            return RoadScenes(n, **opts)
        if kind == "cityscapes":
            from .cityscapes import Cityscapes

            return Cityscapes(arg, **opts)  # type: ignore[arg-type]
        if kind == "voc":
            from .voc import VOCDetection

            return VOCDetection(arg, **opts)  # type: ignore[arg-type]
        if kind == "driving":
            from .udacity import DrivingLog

            return DrivingLog(arg, **opts)  # type: ignore[arg-type]
        if kind == "folder":
            from .folder import ImageFolder

            return ImageFolder(arg, **opts)  # type: ignore[arg-type]
        from .digits import Digits

        return Digits(**opts)
    except TypeError as exc:
        raise _bad(spec, f"unknown option for {kind} ({exc})") from None
