"""Inputs of the commands that take models and data (features, attack, train, data):
size options, datasets and image batches at a size, limits on what is held at once, index
lists, a layer's output shape."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ._common import DATA_SIZE_OPTION, UserError, data_size, parse_size
from ._model import model_output

__all__ = ["load_model", "load_images", "parse_indices", "positive", "card_size", "check_pixels_at_once",
           "open_dataset", "layer_output", "check_indices", "data_size_option", "size_options", "CARD_SIZE_OPTION",
           "MAX_BATCH_PIXELS", "MAX_MAXIMIZE_IMAGES", "MAX_PATCHES_K", "MAX_INDICES"]

#: the most pixels (images x H x W) a command holds and runs through the model at once
#: (attacks, activation maximisation, one batch of patches): ~200 MB of float32 RGB input
MAX_BATCH_PIXELS = 16_777_216
#: the most images `features maximize` optimises in one run (one per channel)
MAX_MAXIMIZE_IMAGES = 256
#: the most patches `features patches` keeps per channel
MAX_PATCHES_K = 1000
#: the most entries a --channels list may expand to (0-99999 is refused while parsing)
MAX_INDICES = 100_000



def positive(value: int | None, option: str) -> int | None:
    """--option must be >= 1 (None passes)."""
    if value is not None and value < 1:
        raise UserError(f"{option} must be a positive number, got {value}")
    return value


def parse_indices(text: str | None, what: str = "--channels") -> list[int] | None:
    """'0-3,7' -> [0, 1, 2, 3, 7]; None/'' -> None. Indices are >= 0, listed once, and at
    most MAX_INDICES of them (a range is checked before it is expanded)."""
    if not text:
        return None
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.startswith("-"):
            raise UserError(f"{what} indices must be >= 0; got {part!r} in {text!r}")
        a, dash, b = part.partition("-")
        try:
            lo, hi = (int(a), int(b)) if dash else (int(a), int(a))
        except ValueError:
            raise UserError(f"{what} must be integers and ranges like 0-15,20; got {text!r}") from None
        if hi < lo:
            raise UserError(f"{what} range {part!r} runs backwards; write it as {hi}-{lo}")
        if len(out) + hi - lo + 1 > MAX_INDICES:
            raise UserError(f"{what} {text!r} lists more than {MAX_INDICES:,} indices (MAX_INDICES); give fewer")
        out.extend(range(lo, hi + 1))
    if not out:
        raise UserError(f"{what} is empty: {text!r}")
    if len(set(out)) != len(out):
        seen: set[int] = set()
        dup = next(v for v in out if v in seen or seen.add(v))  # type: ignore[func-returns-value]
        raise UserError(f"{what} lists {dup} more than once in {text!r}; give each index once")
    return out


def load_model(spec: str | None, weights: Path | None, num_classes: int | None = None,
               mean: str | None = None, std: str | None = None, **options: Any) -> Any:
    """Build the model (eval mode) with `gradsum.cli._model.load_model`: its card, its
    normalisation inside (mean/std, or --normalize), its output selection."""
    from gradsum.cli._model import load_model as load_user_model

    return load_user_model(spec, weights, num_classes, mean=mean, std=std, **options)


def card_size(model: Any) -> tuple[int, int] | None:
    """The input size (H, W) recorded in the model's card (its checkpoint), if any."""
    from gradsum.models import card_of

    card = card_of(model)
    return None if card is None or card.input_size is None else tuple(card.input_size)  # type: ignore[return-value]


def check_pixels_at_once(n: int, hw: tuple[int, int], what: str, fix: str) -> None:
    """Refuse n images of hw (H, W) held and run at once beyond MAX_BATCH_PIXELS."""
    total = n * hw[0] * hw[1]
    if total > MAX_BATCH_PIXELS:
        raise UserError(f"{what}: {n} images of {hw[0]}x{hw[1]} = {total:,} pixels at once, over the limit of "
                        f"{MAX_BATCH_PIXELS:,} (MAX_BATCH_PIXELS); {fix}")


def data_size_option(default: str) -> Any:
    """The shared --size option of the dataset commands (`_common.DATA_SIZE_OPTION`) with this
    command's default in its help."""
    option = copy.copy(DATA_SIZE_OPTION)
    option.help = f"{(DATA_SIZE_OPTION.help or '').split(' (default')[0]} (default: {default})."
    return option


#: --size of the commands whose images default to the checkpoint's input size
CARD_SIZE_OPTION = data_size_option("the checkpoint's input size, else each image's own")


def size_options(size: str | None, resize: str | None) -> tuple[tuple[int, int] | None, str | None]:
    """--size / --resize -> ((H, W) or None, policy), both checked (one line each) before
    anything is read."""
    kw = data_size(size, resize)
    return parse_size(kw["size"]) if kw else None, resize


def open_dataset(data: str, size: tuple[int, int] | None, resize: str | None = None,
                 default_size: tuple[int, int] | None = None, **options: Any) -> Any:
    """The dataset of a data SPEC at `size` (H, W) when given (else `default_size`, e.g. the
    checkpoint's input size, unless the SPEC has its own size=): file datasets are brought to
    it by `gradsum.data.transforms.Fit` with the `resize` policy, roads and digits are
    generated at it. `options` are further `load_dataset` keyword arguments."""
    from gradsum.data import load_dataset, parse_spec

    kind, _, opts = parse_spec(data)
    if size is None and "size" not in opts:
        size = default_size
    kw: dict[str, Any] = dict(options)
    if size is not None:
        kw["size"] = (int(size[0]), int(size[1]))
        if kind not in ("roads", "digits") and resize is not None:  # generated at `size`: nothing to resize
            kw["resize"] = resize
    return load_dataset(data, **kw)


def load_images(data: str, size: tuple[int, int] | None, limit: int | None, start: int = 0,
                resize: str | None = None, default_size: tuple[int, int] | None = None) -> tuple[Any, list[str], Any]:
    """(images (N,3,H,W), ids, targets) of the first `limit` samples of a data SPEC from
    index `start`, at `size` / `default_size` with `resize` (see `open_dataset`); the images
    held at once stay within MAX_BATCH_PIXELS (checked on the first sample, before the others
    are read)."""
    import torch

    positive(limit, "--limit")
    dataset = open_dataset(data, size, resize, default_size)
    n = len(dataset)
    if n == 0 or not 0 <= start < n:
        raise UserError(f"--data {data} has {n} samples; there is no sample {start} (valid: 0..{n - 1})"
                        if n else f"--data {data} has no samples")
    stop = n if limit is None else min(n, start + limit)
    samples = [dataset[start]]
    check_pixels_at_once(stop - start, tuple(samples[0].image.shape[-2:]), f"--data {data}",  # type: ignore[arg-type]
                         "use a smaller --limit or --size")
    samples += [dataset[i] for i in range(start + 1, stop)]
    shapes = {tuple(s.image.shape) for s in samples}
    if len(shapes) != 1:
        raise UserError(f"--data {data} has images of several sizes {sorted(shapes)[:3]}; give --size HxW "
                        "(and --resize letterbox|stretch|center-crop)")
    images = torch.stack([s.image for s in samples]).float()
    return images, [s.id for s in samples], [s.target for s in samples]


class _OneSize:
    """A view of a dataset whose images must all have the size `hw` of its first one: a
    sample of another size stops the command with one line naming it and --size."""

    def __init__(self, dataset: Any, data: str, hw: tuple[int, int]) -> None:
        self.dataset, self.data, self.hw = dataset, data, hw

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        s = self.dataset[index]
        hw = tuple(s.image.shape[-2:])
        if hw != self.hw:
            raise UserError(f"--data {self.data} has images of several sizes ({self.hw[0]}x{self.hw[1]} first, "
                            f"{hw[0]}x{hw[1]} for {getattr(s, 'id', index)}); give --size HxW "
                            "(and --resize letterbox|stretch|center-crop)")
        return s


def layer_output(model: Any, layer: str, hw: tuple[int, int], image: Any = None) -> tuple[str, Any]:
    """(resolved name, output of `layer`) on one image (`image` (1,C,H,W), default zeros of
    hw on the model's device): a cheap look at a layer's shape before anything big is
    allocated."""
    import torch

    from gradsum.core.devices import model_device
    from gradsum.core.layers import resolve_layer

    name, module = resolve_layer(model, layer)
    seen: list[Any] = []
    handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        model_output(model, torch.zeros(1, 3, *hw, device=model_device(model)) if image is None else image)
    finally:
        handle.remove()
    if not seen:
        raise UserError(f"layer '{name}' is not called by the model's forward pass; pick a layer it uses")
    out = seen[-1]
    if not isinstance(out, torch.Tensor):
        raise UserError(f"layer '{name}' returns a {type(out).__name__}, not a tensor; pick another layer")
    return name, out


def check_indices(values: list[int], count: int, what: str, where: str) -> None:
    """Every index must be < count (the layer's channels / the model's outputs)."""
    bad = [v for v in values if v >= count]
    if bad:
        plural = {"class": "classes"}.get(what, f"{what}s")
        raise UserError(f"{what} {bad[0]} does not exist in {where}; valid {plural} are 0..{count - 1}")
