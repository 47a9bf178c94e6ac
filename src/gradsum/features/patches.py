"""Maximally activating dataset patches (Zeiler & Fergus 2014; Girshick et al. 2014):
stream a dataset through the model once, keep the top-k activations of every channel of
a layer with their positions (memory O(channels * k), never O(dataset)), and crop the
input-space receptive field of each position.

Receptive field of a chain of conv/pool layers (kernel k, stride s, padding p, dilation
d): with k' = d(k-1)+1, size r <- r + (k'-1) j, start <- start + ((k'-1)/2 - p) j,
jump j <- j s; position (y, x) of the layer sees input rows
start + y j - (r-1)/2 .. start + y j + (r-1)/2 (Araujo et al., Distill 2019). When the
layers before the target are not such a chain (skip connections, functional ops) the
field is measured from the gradient footprint of single positions instead.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gradsum.core.layers import resolve_layer
from gradsum.core.probe import Probe, preserved_state
from gradsum.features._plot import tile_figure
from gradsum.features.activation_max import _size
from gradsum.methods._args import check_choice, check_flag, check_int, check_seed
from gradsum.metrics._common import forward_checked

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["ReceptiveField", "receptive_field", "TopPatches", "top_patches", "patch_attributions"]

_ELEMENTWISE = (
    nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.ReLU6, nn.PReLU,
    nn.BatchNorm2d, nn.Dropout, nn.Dropout2d, nn.Identity, nn.Hardswish, nn.Mish,
)


@dataclass(frozen=True)
class ReceptiveField:
    """size (rows, cols), jump (stride in input pixels), start (input coordinate of the
    centre of position 0) per axis; method: "analytic" or "empirical"."""

    size: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[float, float]
    method: str

    def box(self, y: torch.Tensor | int, x: torch.Tensor | int) -> tuple[Any, Any, Any, Any]:
        """Input box (y0, x0, y1, x1), end-exclusive and unclipped, seen by position (y, x)."""
        y0 = _floor(self.start[0] - (self.size[0] - 1) / 2) + y * self.jump[0]
        x0 = _floor(self.start[1] - (self.size[1] - 1) / 2) + x * self.jump[1]
        return y0, x0, y0 + self.size[0], x0 + self.size[1]


def _floor(v: float) -> int:
    return int(math.floor(v + 1e-9))


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _chain(model: nn.Module, target: nn.Module, image: torch.Tensor) -> list[nn.Module] | None:
    """The leaf modules that lead from the input to `target`'s output as a simple chain
    (each one's input is the previous one's output), or None if they are not a chain."""
    calls: list[tuple[nn.Module, int, int]] = []
    handles = []

    def hook(module: nn.Module, args: tuple, output: object) -> None:
        if args and isinstance(args[0], torch.Tensor) and isinstance(output, torch.Tensor):
            calls.append((module, id(args[0]), id(output)))

    leaves = [m for m in model.modules() if not list(m.children()) or m is target]
    try:
        for m in leaves:
            handles.append(m.register_forward_hook(hook))
        with torch.no_grad():
            forward_checked(model, image, _probe_what(image))
    finally:
        for h in handles:
            h.remove()
    if sum(1 for module, _, _ in calls if module is target) != 1:
        return None  # a module called several times: the probe keeps its last call
    chain: list[nn.Module] = []
    current = id(image)
    for module, inp, out in calls:
        if module is target and not any(module is c for c in chain) and not list(module.children()):
            if inp != current:
                return None
            chain.append(module)
            return chain
        if module is target:  # a container: its leaves are already in the chain
            return chain if out == current else None
        if inp != current:  # a call on another tensor: not a plain chain
            return None
        chain.append(module)
        current = out
    return None


def _probe_what(image: torch.Tensor) -> str:
    return f"a probe image of image_size={tuple(image.shape[-2:])}, channels={image.shape[1]}"


def _analytic(chain: list[nn.Module]) -> ReceptiveField | None:
    size, jump, start = [1, 1], [1, 1], [0.0, 0.0]
    for m in chain:
        if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
            k = _pair(m.kernel_size)
            s = _pair(m.stride if m.stride is not None else m.kernel_size)
            p = _pair(m.padding) if not isinstance(m.padding, str) else None
            d = _pair(m.dilation) if isinstance(m, nn.Conv2d | nn.MaxPool2d) else (1, 1)
            if p is None:
                return None
            for a in range(2):
                keff = d[a] * (k[a] - 1) + 1
                start[a] += ((keff - 1) / 2 - p[a]) * jump[a]
                size[a] += (keff - 1) * jump[a]
                jump[a] *= s[a]
        elif not isinstance(m, _ELEMENTWISE):
            return None
    return ReceptiveField((size[0], size[1]), (jump[0], jump[1]), (start[0], start[1]), "analytic")


def _footprint(model: nn.Module, name: str, module: nn.Module, image: torch.Tensor, y: int, x: int) -> torch.Tensor:
    """Bounding box (y0, x0, y1, x1) of the input pixels whose gradient for the
    channel-sum at position (y, x) is non-zero."""
    inp = image.clone().requires_grad_(True)
    with Probe(model, [(name, module)]) as probe:
        model(inp)
        act = probe.activation(name, spatial=True, method="receptive_field")
        (g,) = torch.autograd.grad(act[:, :, y, x].sum(), inp)
    nz = g.abs().sum(dim=(0, 1)) > 0
    rows = torch.nonzero(nz.any(1)).flatten()
    cols = torch.nonzero(nz.any(0)).flatten()
    if rows.numel() == 0:
        return torch.tensor([y, x, y, x], device=image.device)
    return torch.stack([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1])


def _empirical(model: nn.Module, name: str, module: nn.Module, image_size: tuple[int, int],
               device: torch.device, channels: int, seed: int) -> ReceptiveField:
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the same probe images on every device
    image = torch.rand((4, channels, *image_size), generator=gen).to(device)
    with torch.no_grad(), Probe(model, [(name, module)]) as probe:
        forward_checked(model, image, _probe_what(image))
        h, w = probe.activation(name, spatial=True, method="receptive_field").shape[-2:]
    cy, cx = h // 2, w // 2
    a = _footprint(model, name, module, image, cy, cx).tolist()
    jy = jx = 1
    if h > cy + 1:
        jy = int(_footprint(model, name, module, image, cy + 1, cx)[0].item() - a[0]) or 1
    if w > cx + 1:
        jx = int(_footprint(model, name, module, image, cy, cx + 1)[1].item() - a[1]) or 1
    size = (a[2] - a[0], a[3] - a[1])
    start = (a[0] + (size[0] - 1) / 2 - cy * jy, a[1] + (size[1] - 1) / 2 - cx * jx)
    return ReceptiveField(size, (jy, jx), start, "empirical")


def receptive_field(
    model: nn.Module,
    layer: str | nn.Module,
    image_size: int | tuple[int, int],
    *,
    channels: int = 3,
    method: str = "auto",
    seed: int = 0,
) -> ReceptiveField:
    """Receptive field of the positions of `layer`'s output for inputs of `image_size`.

    method: "analytic" (conv/pool chain, error if the layers are not one), "empirical"
    (gradient footprint of the centre position and its neighbours, at random inputs) or
    "auto" (analytic when possible).
    """
    if method not in ("auto", "analytic", "empirical"):
        raise ValueError(f"method must be 'auto', 'analytic' or 'empirical', got {method!r}")
    size = _size(image_size, minimum=1)
    channels = check_int(channels, "channels")
    seed = check_seed(seed)
    name, module = resolve_layer(model, layer)
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    with preserved_state(model):
        if method != "empirical":
            probe_img = torch.zeros((1, channels, *size), device=device)
            chain = _chain(model, module, probe_img)
            rf = _analytic(chain) if chain is not None else None
            if rf is not None:
                return rf
            if method == "analytic":
                raise ValueError(
                    f"the layers before '{name}' are not a plain chain of conv/pool/elementwise modules; "
                    "use method='empirical' (gradient footprint)"
                )
        return _empirical(model, name, module, size, device, channels, seed)  # type: ignore[arg-type]


@dataclass
class TopPatches:
    """Top-k activations per channel over a dataset.

    values (C,k) descending, index (C,k) dataset position, y/x (C,k) position in the
    layer's map, boxes (C,k,4) unclipped input boxes y0,x0,y1,x1 (end-exclusive), crops
    (C,k,3,r,r) input crops (zero outside the image)."""

    layer: str
    channels: list[int]
    values: torch.Tensor
    index: torch.Tensor
    y: torch.Tensor
    x: torch.Tensor
    boxes: torch.Tensor
    crops: torch.Tensor = field(repr=False)
    field_: ReceptiveField
    images_seen: int

    def figure(self, channels: list[int] | None = None, k: int | None = None) -> Figure:
        """Rows = channels, columns = top patches (best first)."""
        rows = list(range(len(self.channels))) if channels is None else [self.channels.index(c) for c in channels]
        kk = self.values.shape[1] if k is None else min(k, self.values.shape[1])
        tiles = self.crops[rows, :kk].flatten(0, 1)
        titles = [f"ch {self.channels[r]}: {v:.2g}" if j == 0 else f"{v:.2g}"
                  for r in rows for j, v in enumerate(self.values[r, :kk].tolist())]
        r = self.field_.size
        return tile_figure(tiles, titles=titles, ncols=kk, tile_inches=0.9,
                           title=f"{self.layer} top-{kk} patches (field {r[0]}x{r[1]})")


def _channel_list(channels: Any) -> list[int]:
    """A non-empty list of distinct channel indices (Python or numpy ints)."""
    if isinstance(channels, torch.Tensor):
        channels = channels.flatten().tolist()
    if isinstance(channels, str | bytes) or not isinstance(channels, Iterable):
        raise TypeError(f"channels must be a list of channel indices (ints) or None for all; got {channels!r}")
    chosen = list(channels)
    if not chosen:
        raise ValueError("channels=[] selects no channel; give channel indices, or channels=None for all")
    bad = [ch for ch in chosen if isinstance(ch, bool) or not isinstance(ch, numbers.Integral)]
    if bad:
        raise TypeError(f"channels must be ints; got channel {bad[0]!r} ({type(bad[0]).__name__})")
    seen: set[int] = set()
    twice = [int(ch) for ch in chosen if int(ch) in seen or seen.add(int(ch))]
    if twice:
        raise ValueError(f"channel {twice[0]} is listed twice in channels; list each channel once")
    return [int(ch) for ch in chosen]


def _batches(data: Any, batch_size: int) -> Iterable[torch.Tensor]:
    """Image tensors (B,C,H,W) from: a tensor (N,C,H,W); a sequence/Dataset of Samples or
    tensors; or an iterable of batches (tensors, Batch objects or (images, ...) tuples)."""
    if isinstance(data, torch.Tensor):
        if data.ndim != 4:
            raise ValueError(f"an image tensor must be (N,C,H,W), got shape {tuple(data.shape)}")
        yield from data.split(batch_size)
        return

    def image_of(item: Any) -> torch.Tensor:
        if isinstance(item, torch.Tensor):
            return item
        if hasattr(item, "image"):
            return item.image
        if hasattr(item, "images"):
            return item.images
        if isinstance(item, tuple | list) and item and isinstance(item[0], torch.Tensor):
            return item[0]
        raise TypeError(f"data must hold images: cannot read images from a {type(item).__name__} ({item!r:.40}); "
                        "give Samples, Batches or tensors")

    if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        n = len(data)
        for start in range(0, n, batch_size):
            imgs = [image_of(data[i]) for i in range(start, min(n, start + batch_size))]
            yield torch.stack(imgs) if imgs[0].ndim == 3 else torch.cat(imgs)
        return
    for item in data:
        img = image_of(item)
        yield img.unsqueeze(0) if img.ndim == 3 else img


def _crop(images: torch.Tensor, y0: torch.Tensor, x0: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crops (n,C,sy,sx) at top-left (y0, x0) of images (n,C,H,W), zero outside."""
    n, c, h, w = images.shape
    sy, sx = size
    rows = y0.view(-1, 1) + torch.arange(sy, device=images.device)
    cols = x0.view(-1, 1) + torch.arange(sx, device=images.device)
    valid = ((rows >= 0) & (rows < h)).view(n, 1, sy, 1) & ((cols >= 0) & (cols < w)).view(n, 1, 1, sx)
    r = rows.clamp(0, h - 1).view(n, 1, sy, 1).expand(n, c, sy, sx)
    cc = cols.clamp(0, w - 1).view(n, 1, 1, sx).expand(n, c, sy, sx)
    bidx = torch.arange(n, device=images.device).view(n, 1, 1, 1).expand(n, c, sy, sx)
    chan = torch.arange(c, device=images.device).view(1, c, 1, 1).expand(n, c, sy, sx)
    return images[bidx, chan, r, cc] * valid


def top_patches(
    model: nn.Module,
    layer: str | nn.Module,
    data: Any,
    *,
    k: int = 9,
    channels: list[int] | None = None,
    per_image: bool = True,
    batch_size: int = 64,
    field_method: str = "auto",
    progress: Any = None,
    device: str | torch.device | None = None,
) -> TopPatches:
    """Stream `data` once through `model` and keep, for each channel of `layer`, the k
    largest activations with their (image, y, x) and the input crops of their receptive
    fields. per_image=True keeps at most one position per image and channel (its
    maximum), False ranks every (image, position) pair. Ties keep the earlier item.

    device: where the batches run (None = the model's device; the model is not moved).
    Each batch moves there as it is read; the top-k values, positions and crops are kept
    there, and the result comes back once, on the device the data's images came from (the
    CPU for a dataset of Samples)."""
    from gradsum.methods.base import prepare_input

    k = check_int(k, "k")
    batch_size = check_int(batch_size, "batch_size")
    check_choice(field_method, "field_method", ("auto", "analytic", "empirical"))
    per_image = check_flag(per_image, "per_image")
    if channels is not None:
        channels = _channel_list(channels)
    if isinstance(data, torch.Tensor) and data.ndim == 4 and data.shape[0] == 0:
        raise ValueError(f"data is empty (an image tensor of shape {tuple(data.shape)}); give at least one image")
    name, module = resolve_layer(model, layer)
    run_on = _run_device(model, device)
    vals = idx = ys = xs = crops = None
    chans: torch.Tensor | None = None
    rf: ReceptiveField | None = None
    home: torch.device | None = None
    seen = candidates = 0
    with preserved_state(model), Probe(model, [(name, module)]) as probe, torch.no_grad():
        for images in _batches(data, batch_size):
            if home is None:
                home = images.device
            images = images.to(run_on, non_blocking=run_on.type == "cuda")
            images, _ = prepare_input(model, images, "the images of data")
            probe.reset()
            forward_checked(model, images, "the images of data")
            act = probe.activation(name, spatial=True, method="top_patches").detach()
            b, c, h, w = act.shape
            if rf is None:
                n_ch = c
                chosen = list(range(c)) if channels is None else list(channels)
                bad = [ch for ch in chosen if not 0 <= ch < n_ch]
                if bad:
                    raise ValueError(f"channel {bad[0]} does not exist in layer '{name}' ({n_ch} channels); valid channels are 0..{n_ch - 1}")
                chans = torch.as_tensor(chosen, device=act.device)
                with torch.enable_grad():
                    rf = receptive_field(model, module, tuple(images.shape[-2:]), channels=images.shape[1], method=field_method)
                kk = k
                dev = act.device
                vals = torch.full((len(chosen), kk), -math.inf, device=dev)
                idx = torch.full((len(chosen), kk), -1, dtype=torch.long, device=dev)
                ys = torch.zeros((len(chosen), kk), dtype=torch.long, device=dev)
                xs = torch.zeros_like(ys)
                crops = torch.zeros((len(chosen), kk, images.shape[1], *rf.size), device=dev, dtype=images.dtype)
            a = act[:, chans].permute(1, 0, 2, 3).reshape(len(chans), b, h * w)  # (C', B, hw)
            if per_image:
                cand_v, pos = a.max(dim=2)                                 # (C', B)
                cand_b = torch.arange(b, device=a.device).expand_as(pos)
            else:
                cand_v = a.reshape(len(chans), b * h * w)
                flat = torch.arange(b * h * w, device=a.device).expand_as(cand_v)
                cand_b, pos = flat // (h * w), flat % (h * w)
            merged_v = torch.cat([vals, cand_v], 1)
            # stable: among equal values the earlier (already kept, then lower index) wins
            order = torch.sort(merged_v, dim=1, descending=True, stable=True).indices[:, :k]
            new_v = merged_v.gather(1, order)
            from_batch = order >= k
            ci = (order - k).clamp_min(0)
            nb = cand_b.gather(1, ci)
            npos = pos.gather(1, ci)
            idx = torch.where(from_batch, nb + seen, idx.gather(1, order.clamp_max(k - 1)))
            ys = torch.where(from_batch, npos // w, ys.gather(1, order.clamp_max(k - 1)))
            xs = torch.where(from_batch, npos % w, xs.gather(1, order.clamp_max(k - 1)))
            old = crops.gather(1, order.clamp_max(k - 1).view(*order.shape, 1, 1, 1).expand(-1, -1, *crops.shape[2:]))
            sel = from_batch.nonzero()
            if sel.numel():
                r0, c0 = sel[:, 0], sel[:, 1]
                y0, x0, _, _ = rf.box(ys[r0, c0], xs[r0, c0])
                old[r0, c0] = _crop(images[nb[r0, c0]], y0, x0, rf.size)
            crops, vals = old, new_v
            seen += b
            candidates += cand_v.shape[1]
            if progress is not None:
                progress(seen, None)
    if rf is None or vals is None:
        raise ValueError("top_patches got an empty dataset")
    kept = min(k, candidates)
    y0, x0, y1, x1 = rf.box(ys, xs)
    boxes = torch.stack([y0, x0, y1, x1], -1)
    back = home or vals.device
    return TopPatches(name, chans.tolist(), *(t[:, :kept].to(back) for t in (vals, idx, ys, xs, boxes, crops)),
                      rf, seen)


def _images_at(images: Any, index: torch.Tensor) -> torch.Tensor:
    """The images at dataset positions `index` (k,) of `images`: a tensor (N,C,H,W) or an
    indexable dataset of Samples / tensors / (image, ...) tuples, as `top_patches` read it."""
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"images must be an (N,C,H,W) tensor; got shape {tuple(images.shape)}")
        return images[index.to(images.device)]
    if not (hasattr(images, "__len__") and hasattr(images, "__getitem__")):
        raise TypeError(f"images must be the tensor or indexable dataset given to top_patches; got "
                        f"{type(images).__name__}")
    picked = [next(iter(_batches([images[i]], 1))) for i in index.tolist()]
    return torch.cat(picked)


def patch_attributions(model: nn.Module, top: TopPatches, images: Any, method: str = "guided-backprop",
                       channels: list[int] | None = None, **options: Any) -> torch.Tensor:
    """The attribution of each top patch's own unit, cropped like the patch (seed figure:
    "guided backprop of maximally activating patches"; Springenberg et al. 2015).

    For channel c = top.channels[i] and its j-th patch (image top.index[i, j] of `images`,
    position (top.y[i, j], top.x[i, j]) of `top.layer`), explain
    NeuronTarget(top.layer, c, y, x) on that image with `method` (any method of gs.explain;
    `options` are its options) and crop the per-channel input attribution (`input_maps`,
    or the map as one channel for methods without them) to the patch's receptive-field box,
    zero outside the image (the same crop as `top.crops`). One explain call per channel, the
    k patches batched with per-image positions. Returns (C, k, channels, r, r) on the device
    of `top.crops`; `images` is the tensor or dataset that `top_patches` streamed. `channels`:
    only these of `top.channels`, in this order (default: all of them)."""
    from gradsum.core.targets import NeuronTarget
    from gradsum.methods.explain import explain

    if not isinstance(top, TopPatches):
        raise TypeError(f"top must be the TopPatches that top_patches returned; got {type(top).__name__}")
    if not isinstance(method, str):
        raise TypeError(f"method must be a method name such as 'guided-backprop'; got {type(method).__name__}")
    n = len(images)
    if int(top.index.max()) >= n:
        raise ValueError(f"top refers to image {int(top.index.max())} but images has {n}; give the images that "
                         "top_patches streamed")
    if channels is None:
        rows = list(range(len(top.channels)))
    else:
        missing = [c for c in _channel_list(channels) if c not in top.channels]
        if missing:
            raise ValueError(f"channels {missing} are not among the channels of top ({top.channels[:16]}"
                             f"{' ...' if len(top.channels) > 16 else ''}); pick from those")
        rows = [top.channels.index(c) for c in _channel_list(channels)]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    out = []
    for i in rows:
        channel = top.channels[i]
        batch = _images_at(images, top.index[i]).to(device)
        target = NeuronTarget(top.layer, channel, top.y[i].to(device), top.x[i].to(device))
        result = explain(model, batch, [method], target=target, options={method: options} if options else None)[method]
        attr = result.input_maps if result.input_maps is not None else result.maps[:, None]
        y0, x0 = top.boxes[i, :, 0].to(device), top.boxes[i, :, 1].to(device)
        out.append(_crop(attr.detach(), y0, x0, top.field_.size))
    return torch.stack(out).to(top.crops.device)


def _run_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """`device` checked (absent devices are one line), or the model's device when None."""
    from gradsum.core.devices import resolve_device

    if device is None:
        return next((p.device for p in model.parameters()), torch.device("cpu"))
    return resolve_device(device)
