"""Data SPEC strings, as used by the CLI: `load_dataset("roads:500:seed=3,shortcut=1")`.

Forms (options are `key=value` pairs separated by commas, after the last colon):

    roads:N[:k=v,...]          RoadScenes(N, ...)     e.g. roads:500:seed=3,shortcut=1,size=66x200
    cityscapes:DIR[:k=v,...]   Cityscapes(DIR, ...)   e.g. cityscapes:data/cs:split=val,task=steering
    voc:DIR[:k=v,...]          VOCDetection(DIR, ...) e.g. voc:data/VOC2007:split=val,size=224x224
    driving:CSV[:k=v,...]      DrivingLog(CSV, ...)
    folder:DIR[:k=v,...]       ImageFolder(DIR, ...)  e.g. folder:photos:size=224x224,resize=center-crop
    digits[:k=v,...]           Digits(...)            e.g. digits:split=test,size=32

Sizes: the file datasets (cityscapes, voc, driving, folder) take `size=HxW` (an int or (H, W)
from Python) and `resize=letterbox|stretch|center-crop` (default letterbox): every image, its
segmentation (nearest; letterbox padding = the label table's void id) and its boxes are
brought to that size by `gradsum.data.transforms.Fit`, after the dataset's own `transform`.
Without `size` images keep their own sizes. `roads` and `digits` are generated at `size`
(default 66x200 and 28; also HxW for digits): `resize` changes nothing there and is accepted
only together with `size`.

Keyword arguments given to `load_dataset` override the spec's options.
"""
from __future__ import annotations

import numbers
from typing import Any

__all__ = ["load_dataset", "parse_spec", "void_label", "SPEC_FORMS", "FILE_KINDS"]

SPEC_FORMS = (
    "roads:N[:key=value,...]",
    "cityscapes:DIR[:key=value,...]",
    "voc:DIR[:key=value,...]",
    "driving:CSV[:key=value,...]",
    "folder:DIR[:key=value,...]",
    "digits[:key=value,...]",
)
_KINDS = ("roads", "cityscapes", "voc", "driving", "folder", "digits")
#: the kinds read from files, which take size=HxW and resize=POLICY
FILE_KINDS = ("cityscapes", "voc", "driving", "folder")
_SIZE_FORMS = "size=HxW (e.g. size=224x224) or size=N for NxN; Python: an int or (H, W)"


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


def _data_size(spec: str, size: Any) -> tuple[int, int]:
    """size=HxW | N | (H, W) of a file dataset -> (H, W), within MAX_IMAGE_PIXELS."""
    from ._files import MAX_IMAGE_PIXELS

    hw: tuple[int, ...] | None = None
    if isinstance(size, str):
        parts = [p.strip() for p in size.lower().replace("×", "x").split("x")]
        if len(parts) in (1, 2) and all(p.isdigit() for p in parts):
            hw = tuple(int(p) for p in parts) * (3 - len(parts))
    elif isinstance(size, numbers.Integral) and not isinstance(size, bool):
        hw = (int(size), int(size))
    elif (isinstance(size, list | tuple) and len(size) == 2
          and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in size)):
        hw = (int(size[0]), int(size[1]))
    if hw is None or min(hw) < 1:
        raise _bad(spec, f"size {size!r} is not a size of positive sides; give {_SIZE_FORMS}")
    h, w = hw
    if h * w > MAX_IMAGE_PIXELS:
        raise _bad(spec, f"size {h}x{w} = {h * w:,} pixels is over the limit of {MAX_IMAGE_PIXELS:,} pixels "
                         "per image (MAX_IMAGE_PIXELS)")
    return h, w


def void_label(table: Any) -> int:
    """The id of the first label of `table` whose category is "void" (Cityscapes: 0
    'unlabeled', VOC: 255), else 0: what letterbox padding of a segmentation is labelled."""
    for lab in getattr(table, "labels", ()) or ():
        if lab.category == "void":
            return int(lab.id)
    return 0


def _fit_options(spec: str, size: Any, resize: Any) -> tuple[tuple[int, int], str] | None:
    """size= / resize= of a file dataset -> ((H, W), policy), or None when neither is given;
    checked before any file is read."""
    from .transforms import RESIZE_POLICIES

    if size is None and resize is None:
        return None
    if resize is None:
        resize = "letterbox"
    if resize not in RESIZE_POLICIES:
        raise _bad(spec, f"resize={resize!r} is not a resize policy; give resize={'|'.join(RESIZE_POLICIES)}")
    if size is None:
        raise _bad(spec, f"resize={resize} needs a size to reach; give {_SIZE_FORMS}")
    return _data_size(spec, size), resize


def _generated_resize(spec: str, kind: str, size: Any, resize: Any) -> None:
    """roads and digits are drawn at `size`: a resize policy given with a size changes nothing
    (every policy maps a size onto itself) and is accepted, so that one --size/--resize pair
    serves every kind; without a size it would resize to nothing and is refused."""
    from .transforms import RESIZE_POLICIES

    if resize is None:
        return
    what, default = ("roads scenes are", "66x200") if kind == "roads" else ("digits are", "28")
    if size is None:
        raise _bad(spec, f"{what} generated at size=HxW (default {default}), so resize={resize} does not apply; "
                         "give size=HxW instead")
    if resize not in RESIZE_POLICIES:
        raise _bad(spec, f"resize={resize!r} is not a resize policy; give resize={'|'.join(RESIZE_POLICIES)}")


def load_dataset(spec: str, **kw: Any) -> Any:
    """Build the dataset a SPEC names (forms in the module docstring); `kw` override options.
    File datasets also take size=HxW and resize=POLICY: their samples go through
    `Fit(size, resize, pad_label=void_label(label_table))` after their own `transform`."""
    kind, arg, opts = parse_spec(spec)
    opts.update(kw)
    fit = None
    if kind in FILE_KINDS:
        fit = _fit_options(spec, opts.pop("size", None), opts.pop("resize", None))
    else:
        _generated_resize(spec, kind, opts.get("size"), opts.pop("resize", None))
    if kind == "digits" and isinstance(opts.get("size"), str):
        opts["size"] = _data_size(spec, opts["size"])  # digits:size=32x32 as well as size=32
    if "size" in opts:
        _check_size(spec, opts["size"])
    dataset = _build(spec, kind, arg, opts)
    if fit is not None:
        from .transforms import Compose, Fit

        step = Fit(fit[0], fit[1], pad_label=void_label(getattr(dataset, "label_table", None)))
        dataset.transform = step if dataset.transform is None else Compose([dataset.transform, step])
    return dataset


def _build(spec: str, kind: str, arg: str | None, opts: dict[str, Any]) -> Any:
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
