"""Report sections "What the layers see" (filters, activation maximisation, maximally
activating dataset patches) and "How models break" (fooling images, FGSM/PGD accuracy,
universal perturbations and their transfer between models), as called by `gradsum demo`.

Each function computes its results with `gradsum.features` / `gradsum.adversarial`, writes
figures (PNG) under ``<out>/figures/`` and tables (Parquet) under ``<out>/tables/``, and adds
one section to a `ReportSpec`. Both are budgeted for the demo: `quick=True` uses fewer
images, channels, steps and passes.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from gradsum.report.html import ReportSpec

__all__ = ["features_section", "adversarial_section", "activation_layers", "FeatureBudget", "AttackBudget"]

_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.ReLU6, nn.PReLU, nn.Hardswish, nn.Mish,
                nn.SELU, nn.CELU)


@dataclass(frozen=True)
class FeatureBudget:
    """Sizes of the "what the layers see" section: images streamed (channel choice and
    patches), channels per layer, patches per channel, layers at most, side of the square
    activation-maximisation images (capped by the data's smaller side)."""

    images: int = 160
    channels: int = 8
    patches: int = 8
    max_layers: int = 4
    side: int = 96

    @classmethod
    def quick(cls) -> FeatureBudget:
        return cls(images=64, channels=6, patches=6)


@dataclass(frozen=True)
class AttackBudget:
    """Sizes of the "how models break" section: images attacked with FGSM/PGD, PGD steps,
    images a universal perturbation is computed on (as many others evaluate it), its passes,
    DeepFool iterations per image and radius (L-inf, pixel units), the fooling image's step
    limit and the FGSM/PGD budgets eps (pixel units)."""

    attack_images: int = 40
    pgd_steps: int = 4
    universal_images: int = 24
    universal_passes: int = 2
    deepfool_iter: int = 20
    xi: float = 10 / 255
    fool_steps: int = 100
    eps: tuple[float, ...] = (1 / 255, 2 / 255, 4 / 255, 8 / 255)

    @classmethod
    def quick(cls) -> AttackBudget:
        return cls(attack_images=20, pgd_steps=2, universal_images=12, universal_passes=1, deepfool_iter=10,
                   fool_steps=30)


# ------------------------------------------------------------------------------------ data

def _images(dataset: Any, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
    """(images (N,C,H,W) float in [0,1], int labels (N,) or None, ids) of the first `limit`
    items of a tensor (N,C,H,W) or an indexable dataset of Samples."""
    if isinstance(dataset, torch.Tensor):
        if dataset.ndim != 4:
            raise ValueError(f"an image tensor must be (N,C,H,W); got shape {tuple(dataset.shape)}")
        x = dataset[:limit].float()
        return x, None, [str(i) for i in range(x.shape[0])]
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise TypeError(f"dataset must be an (N,C,H,W) tensor or an indexable dataset of Samples; got {type(dataset).__name__}")
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise ValueError("the dataset is empty; the features and attack sections need images")
    samples = [dataset[i] for i in range(n)]
    x = torch.stack([s.image for s in samples]).float()
    targets = [getattr(s, "target", None) for s in samples]
    labels = None
    if all(isinstance(t, int | torch.Tensor) and not isinstance(t, bool) and torch.as_tensor(t).numel() == 1
           for t in targets):
        labels = torch.as_tensor([int(t) for t in targets], dtype=torch.int64)
    return x, labels, [str(getattr(s, "id", i)) for i, s in enumerate(samples)]


def _class_names(dataset: Any, n_classes: int, given: Sequence[str] | None) -> list[str]:
    names = list(given) if given is not None else getattr(dataset, "classes", None)
    if not names or len(names) < n_classes:
        return [f"class {k}" for k in range(n_classes)]
    return [str(c).replace("_", " ") for c in names]


def _device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


# ------------------------------------------------------------------------------------ layers

def activation_layers(model: nn.Module, max_layers: int = 4) -> list[str]:
    """The layers whose channels the section visualises: the activation module (ReLU, GELU,
    ...) that follows each conv layer in registration order (the conv itself when none
    does), at most `max_layers` of them spread from first to last; the last one is the
    model's default explanation layer (`gradsum.models.default_layer_for`) when it has one."""
    from gradsum.models import default_layer_for

    found: list[str] = []
    pending: str | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if pending is not None:
                found.append(pending)
            pending = name
        elif isinstance(module, _ACTIVATIONS) and pending is not None:
            found.append(name)
            pending = None
    if pending is not None:
        found.append(pending)
    found = list(dict.fromkeys(found))
    last = default_layer_for(model)
    if last is not None:
        found = found[: found.index(last)] if last in found else found[:-1]
    elif found:
        last = found.pop()
    if last is None:
        raise ValueError(f"{type(model).__name__} has no nn.Conv2d layer: the features section needs a conv net")
    keep = max(0, max_layers - 1)
    if len(found) > keep:
        found = [found[round(i * (len(found) - 1) / max(1, keep - 1))] for i in range(keep)] if keep > 1 else found[:keep]
    return [*dict.fromkeys(found), last]


def _channel_stats(model: nn.Module, layers: list[str], x: torch.Tensor, border: int,
                   batch_size: int = 8) -> dict[str, torch.Tensor]:
    """Per layer (C,) mean over images of each channel's mean activation (the activation
    maximisation objective, `border` positions cropped) and (C,) its maximum over images."""
    from gradsum.core.layers import resolve_layer
    from gradsum.core.probe import Probe, preserved_state

    resolved = [resolve_layer(model, name) for name in layers]
    sums: dict[str, torch.Tensor] = {}
    best: dict[str, torch.Tensor] = {}
    with preserved_state(model), Probe(model, resolved) as probe, torch.no_grad():
        for chunk in x.split(batch_size):
            probe.reset()
            model(chunk)
            for name, _ in resolved:
                a = probe.activation(name, spatial=True, method="the features section")
                b = min(border, (min(a.shape[-2:]) - 1) // 2)
                if b > 0:
                    a = a[..., b:a.shape[-2] - b, b:a.shape[-1] - b]
                m = a.mean(dim=(2, 3))                                   # (B, C)
                sums[name] = sums.get(name, 0) + m.sum(0)
                top = m.max(0).values
                best[name] = torch.maximum(best[name], top) if name in best else top
    n = x.shape[0]
    return {name: torch.stack([sums[name] / n, best[name]]) for name, _ in resolved}


# ------------------------------------------------------------------------------------ figures

def _grid_figure(rows: list[tuple[str, torch.Tensor, list[str]]], title: str, tile_width: float = 1.25) -> Figure:
    """Rows of image tiles: each row (label, tiles (n,C,h,w) in [0,1], per-tile titles),
    the row label written on the left; tiles keep their aspect ratio."""
    from matplotlib.figure import Figure

    ncols = max(t.shape[0] for _, t, _ in rows)
    h, w = rows[0][1].shape[-2:]
    tile_h = tile_width * h / w
    fig = Figure(figsize=(ncols * tile_width + 1.0, len(rows) * (tile_h + 0.35) + 0.5), layout="constrained")
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, (label, tiles, titles) in enumerate(rows):
        tiles = tiles.detach().float().cpu().clamp(0, 1)
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= tiles.shape[0]:
                ax.set_axis_off()
                continue
            img = tiles[c]
            if img.shape[0] == 1:
                ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(img[:3].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_title(titles[c], fontsize=7)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def _mosaic(tiles: torch.Tensor, ncols: int, scale: int = 1, pad: int = 1) -> torch.Tensor:
    """Tiles (N,C,h,w) in [0,1] as one (H,W,3) image, `ncols` per row, each tile enlarged
    `scale` times (nearest) and separated by `pad` white pixels."""
    tiles = tiles.detach().float().cpu().clamp(0, 1)
    if tiles.shape[1] == 1:
        tiles = tiles.expand(-1, 3, -1, -1)
    tiles = tiles[:, :3].repeat_interleave(scale, 2).repeat_interleave(scale, 3)
    n, _, h, w = tiles.shape
    nrows = -(-n // ncols)
    canvas = torch.ones(3, nrows * (h + pad) + pad, ncols * (w + pad) + pad)
    for i in range(n):
        r, c = divmod(i, ncols)
        y0, x0 = pad + r * (h + pad), pad + c * (w + pad)
        canvas[:, y0:y0 + h, x0:x0 + w] = tiles[i]
    return canvas.permute(1, 2, 0)


def _mosaic_figure(image: torch.Tensor, title: str, *, rows: list[str], cols: list[str], tile: tuple[int, int],
                   inches: float, ylabel: str, xlabel: str, pad: int = 1) -> Figure:
    """One axes showing a mosaic, with a tick label per row and column of tiles."""
    from matplotlib.figure import Figure

    height, width = image.shape[:2]
    fig = Figure(figsize=(inches + 1.4, inches * height / width + 1.0), layout="constrained")
    ax = fig.subplots()
    ax.imshow(image.numpy(), interpolation="nearest")
    th, tw = tile
    ax.set_yticks([pad + r * (th + pad) + th / 2 for r in range(len(rows))], rows, fontsize=7)
    ax.set_xticks([pad + c * (tw + pad) + tw / 2 for c in range(len(cols))], cols, fontsize=7)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    return fig


def _accuracy_figure(frame: Any) -> Figure:
    """Accuracy (%) against eps (in 1/255) per model (colour) and attack (line style)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    ax = fig.subplots()
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    styles = {"FGSM": ("--", "s"), "PGD": ("-", "o")}
    for i, model in enumerate(dict.fromkeys(frame["model"])):
        for attack, (style, marker) in styles.items():
            sub = frame[(frame["model"] == model) & (frame["attack"].isin(["clean", attack]))].sort_values("eps_255")
            ax.plot(sub["eps_255"], 100 * sub["accuracy"], linestyle=style, marker=marker, color=colors[i % len(colors)],
                    markersize=7 if attack == "FGSM" else 4, fillstyle="none" if attack == "FGSM" else "full",
                    label=f"{model}, {attack}")
    ax.set_xlabel("attack budget eps (L-inf, in 1/255 of the pixel range)")
    ax.set_ylabel("accuracy on held-out scenes (%)")
    ax.set_ylim(-3, 103)
    ax.set_xticks(sorted(set(frame["eps_255"].tolist())))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax.set_title("Accuracy under attack (eps 0 = clean images)", fontsize=10)
    return fig


@contextlib.contextmanager
def _one_intra_op_thread() -> Iterator[int]:
    """torch.set_num_threads(1) for the block (yields the previous count), restored after.
    The section's tensors are small: one thread per model beats two threads per op."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield before
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------ features

def features_section(
    out: str | Path,
    spec: ReportSpec,
    model: nn.Module,
    dataset: Any,
    *,
    quick: bool = False,
    seed: int = 0,
    name: str = "pothole classifier",
    budget: FeatureBudget | None = None,
) -> None:
    """Add the section "What the layers see" (id "features") for `model` on `dataset`.

    Figures: the first conv layer's filters; activation maximisation (keras preset:
    normalised gradient ascent on pixels, 30 steps, one batch per layer) of the channels
    that respond most on the data, for each conv stage's activation (`activation_layers`);
    the dataset patches (receptive-field crops) that activate the last stage's channels
    most. Table ``tables/features_channels.parquet``: per layer and channel, the
    objective (channel mean) on the data (mean and best image) and on the optimised image.
    """
    with _one_intra_op_thread():
        _features_section(Path(out), spec, model, dataset, budget or (FeatureBudget.quick() if quick else FeatureBudget()),
                          seed, name)


def _features_section(out: Path, spec: ReportSpec, model: nn.Module, dataset: Any, bud: FeatureBudget, seed: int,
                      name: str) -> None:
    import pandas as pd

    import gradsum.features as gf
    from gradsum.run.runner import write_table
    from gradsum.run.store import save_figure

    x, _, _ = _images(dataset, bud.images)
    x = x.to(_device(model))
    layers = activation_layers(model, bud.max_layers)
    last = layers[-1]

    spec.section("features", "What the layers see", [
        f"What the {name}'s layers respond to, shown three ways: the first layer's weights as images; images "
        "optimised by gradient ascent to excite one channel each (activation maximisation, Erhan et al. 2009); "
        f"and the patches of {x.shape[0]} held-out scenes that excite a channel most (Zeiler & Fergus 2014). "
        "Early layers respond to colours and edges, later ones to larger structures."
    ])

    # 1. first-layer filters
    grid = gf.filter_grid(model)
    fh, fw = grid.tiles.shape[-2:]
    ncols = min(8, grid.tiles.shape[0])
    scale = max(1, round(24 / max(fh, fw)))
    nrows = -(-grid.tiles.shape[0] // ncols)
    fig = _mosaic_figure(_mosaic(grid.tiles, ncols, scale), f"{name}: {grid.title}", tile=(fh * scale, fw * scale),
                         rows=[str(r * ncols) for r in range(nrows)], cols=[f"+{c}" for c in range(ncols)],
                         inches=min(7.0, 0.6 * ncols), ylabel="filter number (row start)", xlabel="+ column")
    save_figure(out / "figures/features_filters.png", fig)
    kind = "an RGB colour image" if grid.rgb else "grayscale tiles, one per input channel"
    spec.figure("figures/features_filters.png",
                f"First-layer filters: each tile is one {fh}x{fw}-pixel filter of {grid.layer} "
                f"(weights {'x'.join(str(v) for v in grid.shape)}), drawn as {kind} and scaled to its own min-max; "
                "it shows the colour and edge pattern that excites the filter most.")

    # 2. activation maximisation of the most responsive channels of each stage
    border = int(gf.PRESETS["keras"]["border"])
    stats = _channel_stats(model, layers, x, border)
    side = min(bud.side, *x.shape[-2:])
    rows, records = [], []
    for layer in layers:
        mean, best = stats[layer]
        n_ch = mean.shape[0]
        chosen = mean.argsort(descending=True)[: min(bud.channels, n_ch)].sort().values.tolist()
        res = gf.maximize(model, gf.channel(layer, chosen), image_size=(side, side), preset="keras", seed=seed)
        per_row = -(-len(chosen) // 2) if len(chosen) > 4 else len(chosen)
        shown, labels = res.display(), [f"channel {c}" for c in chosen]
        for start in range(0, len(chosen), per_row):
            rows.append((f"{layer}\n({n_ch} channels)" if start == 0 else "", shown[start:start + per_row],
                         labels[start:start + per_row]))
        for i, c in enumerate(chosen):
            records.append({"layer": layer, "channel": c, "channels_in_layer": n_ch,
                            "data_mean": float(mean[c]), "data_best": float(best[c]),
                            "optimised": float(res.values[i]),
                            "ratio_to_best_scene": float(res.values[i]) / max(float(best[c]), 1e-12)})
    table = pd.DataFrame(records)
    write_table(out / "tables/features_channels.parquet", table)
    fig = _grid_figure(rows, f"Activation maximisation, {name}:\none optimised {side}x{side} image per channel "
                             f"(keras preset, 30 steps, seed {seed})", tile_width=1.4)
    save_figure(out / "figures/features_actmax.png", fig)
    spec.figure("figures/features_actmax.png",
                "Activation maximisation: one block of rows per layer (the activation after a conv stage, from first "
                "to last), each tile an image optimised from noise so that the named channel's mean activation is as "
                f"large as possible. The channels (up to {bud.channels} per layer) are those most active on the "
                "held-out scenes. Images are standardised for display; the first layer shows colours and edges, "
                "the last larger shapes.")
    spec.table("tables/features_channels.parquet",
               "Channel activation (mean of the channel's map): on the held-out scenes (average and best scene) "
               "and on its optimised image (keras preset: pixels are not clipped to [0,1] during the ascent, which "
               "is why the ratio optimised / best scene can be large).",
               columns=["layer", "channel", "data_mean", "data_best", "optimised", "ratio_to_best_scene"],
               max_rows=40)

    # 3. maximally activating dataset patches of the last stage
    chosen_last = [r["channel"] for r in records if r["layer"] == last]
    tp = gf.top_patches(model, last, x, k=bud.patches, channels=chosen_last, batch_size=8)
    rf = tp.field_
    kk = tp.values.shape[1]
    scale = max(1, round(40 / max(rf.size)))
    fig = _mosaic_figure(
        _mosaic(tp.crops.flatten(0, 1), kk, scale, pad=2),
        f"{name}, {last}: the {kk} scene patches that activate each channel most\n"
        f"(receptive field {rf.size[0]}x{rf.size[1]} px, {tp.images_seen} held-out scenes)",
        rows=[f"channel {c}\n(max {float(v):.2g})" for c, v in zip(tp.channels, tp.values[:, 0].tolist(), strict=True)],
        cols=[str(j + 1) for j in range(kk)], tile=(rf.size[0] * scale, rf.size[1] * scale), pad=2,
        inches=min(7.0, 0.9 * kk), ylabel="channel (its highest activation)", xlabel="rank (1 = strongest)")
    save_figure(out / "figures/features_patches.png", fig)
    spec.figure("figures/features_patches.png",
                f"Maximally activating dataset patches of {last}: each row is one channel (the same channels as the "
                "last row of the activation maximisation), each tile the input region (receptive field "
                f"{rf.size[0]}x{rf.size[1]} pixels) of a held-out scene where that channel responds most, strongest "
                "first; at most one patch per scene. Black parts lie outside the image.")


# ------------------------------------------------------------------------------------ adversarial

def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    from gradsum.adversarial._common import predict
    from gradsum.core.probe import preserved_state

    with preserved_state(model):
        return predict(model, x)


def _per_model(models: dict[str, nn.Module], fn: Callable[[str, nn.Module], Any], workers: int) -> dict[str, Any]:
    """fn(name, model) for every model; models run in parallel threads (torch releases the GIL),
    each model in one thread only, so that no model's state is touched by two threads (the same
    model object under two names runs sequentially)."""
    if workers <= 1 or len({id(model) for model in models.values()}) < max(2, len(models)):
        return {m: fn(m, model) for m, model in models.items()}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(workers, len(models))) as pool:
        futures = {m: pool.submit(fn, m, model) for m, model in models.items()}
        return {m: f.result() for m, f in futures.items()}


def _chunked(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
             size: int = 4) -> torch.Tensor:
    """fn on chunks of `size` images (per-image attacks; small chunks stay in the CPU cache)."""
    return torch.cat([fn(xc, yc) for xc, yc in zip(x.split(size), y.split(size), strict=True)])


def _attack_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor, x_fit: torch.Tensor,
                  bud: AttackBudget, seed: int) -> dict[str, Any]:
    """Every per-model attack of the section: fooling image, FGSM/PGD accuracies, universal v."""
    import gradsum.adversarial as ga
    from gradsum.adversarial._common import predict
    from gradsum.core.probe import preserved_state

    with preserved_state(model):
        return _attacks(model, x, y, start, x_fit, bud, seed, ga, predict)


def _attacks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor, x_fit: torch.Tensor,
             bud: AttackBudget, seed: int, ga: Any, predict: Callable[..., torch.Tensor]) -> dict[str, Any]:
    with torch.no_grad():
        p0 = torch.softmax(model(start), 1)[0]
    source, target = (int(k) for k in p0.argsort(descending=True)[:2])
    fool = ga.fooling_image(model, target, start=start, level=0.99, alpha=1 / 255, max_steps=bud.fool_steps)
    # FGSM at eps is clip(x + eps * sign(g)); one call with eps = 1 moves every pixel to 0 or 1 in the
    # direction of its gradient sign (and leaves it where the sign is 0): that gives sign(g) exactly.
    sign = (_chunked(lambda a, b: ga.fgsm(model, a, b, eps=1.0), x, y) - x).sign()

    def accuracy(images: torch.Tensor) -> float:
        return float((_chunked(lambda a, b: predict(model, a), images, y) == y).float().mean())

    acc: dict[tuple[str, float], float] = {("clean", 0.0): accuracy(x)}
    for eps in bud.eps:
        acc["FGSM", eps] = accuracy((x + eps * sign).clamp(0, 1))
        adv = _chunked(lambda a, b, e=eps: ga.pgd(model, a, b, eps=e, alpha=2.5 * e / bud.pgd_steps,
                                                  steps=bud.pgd_steps, seed=seed), x, y)
        acc["PGD", eps] = accuracy(adv)
    uni = ga.universal_perturbation(model, x_fit, xi=bud.xi, p="inf", delta=0.2, max_passes=bud.universal_passes,
                                    max_iter=bud.deepfool_iter, seed=seed)
    return {"p0": p0, "source": source, "target": target, "fool": fool, "accuracy": acc, "universal": uni}


def adversarial_section(
    out: str | Path,
    spec: ReportSpec,
    models: dict[str, nn.Module],
    dataset: Any,
    *,
    quick: bool = False,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    budget: AttackBudget | None = None,
) -> None:
    """Add the section "How models break" (id "adversarial") for classifiers `models`
    (name -> model taking [0,1] pixels) on held-out `dataset` (Samples with int targets).

    Everything is in pixel space [0,1] (eps 8/255 = 8 grey levels). Per model: a fooling
    image (a held-out scene pushed to its second most likely class by signed-gradient
    steps of 1/255 until p >= 0.99 or the step limit); accuracy under FGSM and PGD (L-inf,
    random start, step 2.5 eps / steps, Madry et al. 2018) for each eps; a universal
    perturbation (Moosavi-Dezfooli et al. 2017, L-inf radius xi, target fooling rate 80%)
    computed on some scenes, and the transfer matrix of every model's perturbation on every
    model, evaluated on other scenes. Tables (Parquet, tables/): adv_fooling, adv_accuracy
    (tidy) and adv_accuracy_wide, adv_universal, adv_transfer. Models run in parallel
    threads (one intra-op thread each; the setting is restored).
    """
    import pandas as pd

    import gradsum.adversarial as ga
    from gradsum.core.probe import preserved_state
    from gradsum.run.runner import write_table
    from gradsum.run.store import save_figure

    if not isinstance(models, dict) or not models:
        raise ValueError("adversarial_section needs a non-empty dict name -> classifier, e.g. "
                         "{'no shortcut': model_a, 'shortcut': model_b}")
    out = Path(out)
    bud = budget or (AttackBudget.quick() if quick else AttackBudget())
    x_all, y_all, ids = _images(dataset, bud.attack_images + 2 * bud.universal_images)
    if y_all is None:
        raise ValueError("adversarial_section needs classification samples with int targets (e.g. RoadScenes "
                         "task='pothole'); the dataset's samples have none")
    dev = _device(next(iter(models.values())))
    x_all, y_all = x_all.to(dev), y_all.to(dev)
    n = x_all.shape[0]
    if n < 10:
        raise ValueError(f"adversarial_section needs at least 10 held-out images (5 to compute a universal "
                         f"perturbation on and 5 to evaluate it); the dataset has {n}")
    x, y = x_all[: bud.attack_images], y_all[: bud.attack_images]
    nu = min(bud.universal_images, n // 2)
    x_fit, x_eval = x_all[n - 2 * nu: n - nu], x_all[n - nu:]

    with _one_intra_op_thread() as threads:
        preds = _per_model(models, lambda m, model: _predict(model, x), threads)
        right = torch.stack([p == y for p in preds.values()]).all(0)
        pick = int(right.nonzero()[0, 0]) if bool(right.any()) else 0
        start = x[pick:pick + 1]
        results = _per_model(models, lambda m, model: _attack_model(model, x, y, start, x_fit, bud, seed), threads)
        tm = ga.transfer_matrix(models, x_fit, eval_images=x_eval,
                                perturbations={m: r["universal"].v for m, r in results.items()})
        example = x_eval[:1]
        shown = {}
        for m, model in models.items():
            with torch.no_grad(), preserved_state(model):
                v = results[m]["universal"].v
                shown[m] = (torch.softmax(model(example), 1)[0], torch.softmax(model((example + v).clamp(0, 1)), 1)[0])
    n_classes = next(iter(results.values()))["p0"].shape[0]
    names = _class_names(dataset, n_classes, class_names)

    spec.section("adversarial", "How models break", [
        "Adversarial probing in pixel space ([0,1]; eps 8/255 means 8 grey levels of 255): how small a change "
        f"to a held-out scene flips each classifier ({', '.join(models)}), how accuracy falls under FGSM "
        "(one signed-gradient step, Goodfellow et al. 2015) and PGD (iterated, projected steps, Madry et al. 2018), "
        "and whether one image-agnostic (universal) perturbation fools a model on most scenes and transfers to "
        "the other model (Moosavi-Dezfooli et al. 2017)."
    ])

    # 1. fooling images
    cols: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]] = []
    records = []
    for m, r in results.items():
        fool, p0, source, target = r["fool"], r["p0"], r["source"], r["target"]
        diff = fool.images - start
        linf = float(diff.abs().max())
        amp = 0.5 / max(linf, 1e-12)
        cols.append((start, fool.images, (amp * diff + 0.5).clamp(0, 1), [
            f"{m}: p({names[source]}) = {float(p0[source]):.2f}",
            f"{m}: p({names[target]}) = {float(fool.probability[0]):.3f}\nafter {int(fool.steps[0])} steps",
            f"{m}: x{amp:.0f} (max {255 * linf:.0f}/255)"]))
        records.append({"model": m, "scene": ids[pick], "from_class": names[source], "to_class": names[target],
                        "p_start": float(p0[target]), "p_final": float(fool.probability[0]),
                        "steps": int(fool.steps[0]), "reached_0.99": bool(fool.reached[0]), "linf_255": round(255 * linf, 2),
                        "max_steps": bud.fool_steps})
    rows = [(label, torch.cat([c[i] for c in cols]), [c[3][i] for c in cols])
            for i, label in enumerate(["held-out scene", "fooling image", "change (amplified)"])]
    write_table(out / "tables/adv_fooling.parquet", pd.DataFrame(records))
    save_figure(out / "figures/adv_fooling.png", _grid_figure(
        rows, f"Fooling images: scene {ids[pick]} changed until\nthe model says another class with p >= 0.99",
        tile_width=2.6))
    spec.figure("figures/adv_fooling.png",
                "Fooling images: per model (column), a held-out scene that every model classifies correctly, the same "
                "scene after signed-gradient steps of 1/255 towards the other class (stopping once its probability "
                f"reaches 0.99, at most {bud.fool_steps} steps), and the change amplified so that it is visible "
                "(grey = unchanged).")
    spec.table("tables/adv_fooling.parquet", "Fooling image per model: the new class's probability before (p_start) "
               "and after (p_final), the steps taken and the largest pixel change in grey levels (linf_255).",
               columns=["model", "scene", "from_class", "to_class", "p_start", "p_final", "steps", "reached_0.99",
                        "linf_255"], digits=3)

    # 2. accuracy under FGSM / PGD
    acc = pd.DataFrame([{"model": m, "attack": attack, "eps": eps, "eps_255": round(255 * eps, 3), "accuracy": a,
                         "images": x.shape[0], "pgd_steps": bud.pgd_steps if attack == "PGD" else 0}
                        for m, r in results.items() for (attack, eps), a in r["accuracy"].items()])
    write_table(out / "tables/adv_accuracy.parquet", acc)
    wide = acc[acc["attack"] != "clean"].pivot_table(index=["model", "attack"], columns="eps_255", values="accuracy",
                                                     sort=False)
    wide.columns = [f"eps {c:g}/255 (%)" for c in wide.columns]
    clean = acc[acc["attack"] == "clean"].set_index("model")["accuracy"]
    wide.insert(0, "clean (%)", [float(clean[m]) for m, _ in wide.index])
    wide = (100 * wide).reset_index()
    write_table(out / "tables/adv_accuracy_wide.parquet", wide)
    save_figure(out / "figures/adv_accuracy.png", _accuracy_figure(acc))
    spec.figure("figures/adv_accuracy.png",
                f"Accuracy (%) on {x.shape[0]} held-out scenes under FGSM (dashed) and PGD (solid, {bud.pgd_steps} "
                "steps, random start) for L-inf budgets eps of 1, 2, 4 and 8 grey levels; eps 0 is the clean accuracy.")
    spec.table("tables/adv_accuracy_wide.parquet",
               f"Accuracy (%) under attack on {x.shape[0]} held-out scenes (PGD: {bud.pgd_steps} steps of "
               "2.5 eps / steps from a random start).", digits=1)

    # 3. universal perturbations and their transfer
    cols, records = [], []
    for m, r in results.items():
        uni = r["universal"]
        records.append({"model": m, "xi_255": 255 * uni.xi, "linf_255": 255 * uni.norm,
                        "fooling_rate_fit": uni.fooling_rate, "target_rate": uni.target_rate, "reached": uni.reached,
                        "passes": uni.passes, "fooling_rate_heldout": float(tm.table.loc[m, m]),
                        "fit_images": x_fit.shape[0], "heldout_images": x_eval.shape[0]})
        (pc, pa), v = shown[m], uni.v
        k0, k1 = int(pc.argmax()), int(pa.argmax())
        cols.append(((v / (2 * max(uni.xi, 1e-12)) + 0.5).clamp(0, 1), example, (example + v).clamp(0, 1), [
            f"{m}: v (max {255 * uni.norm:.0f}/255)", f"{m} says {names[k0]} ({float(pc[k0]):.2f})",
            f"{m} says {names[k1]} ({float(pa[k1]):.2f})"]))
    rows = [(label, torch.cat([c[i] for c in cols]), [c[3][i] for c in cols])
            for i, label in enumerate(["perturbation v\n(scaled, grey = 0)", "held-out scene", "scene + v"])]
    write_table(out / "tables/adv_universal.parquet", pd.DataFrame(records))
    save_figure(out / "figures/adv_universal.png", _grid_figure(
        rows, f"Universal perturbations (L-inf, xi = {255 * bud.xi:.0f}/255), one per model", tile_width=2.6))
    write_table(out / "tables/adv_transfer.parquet", tm.table.reset_index())
    fig = tm.figure()
    fig.axes[0].set_title(f"Fooling rate of universal perturbations on {tm.n_images} held-out scenes", fontsize=9)
    save_figure(out / "figures/adv_transfer.png", fig)
    status = "; ".join(f"{r['model']}: {100 * r['fooling_rate_fit']:.0f}% "
                       f"({'reached' if r['reached'] else 'not reached'} after {r['passes']} "
                       f"pass{'es' if r['passes'] != 1 else ''})" for r in records)
    spec.text(f"Universal perturbations: one perturbation per model that changes no pixel by more than "
              f"{255 * bud.xi:.0f}/255, computed on {x_fit.shape[0]} scenes for a target fooling rate of 80%: "
              f"{status}. With two classes one perturbation mostly pushes towards one class, so it can flip little "
              "more than the scenes of the other class. The transfer matrix applies every perturbation to "
              f"{x_eval.shape[0]} other scenes, its own model included.")
    spec.figure("figures/adv_universal.png",
                "Universal perturbations: per model (column), the perturbation v (scaled: grey = 0), a held-out scene, and the "
                "scene with v added, with the model's predicted class and probability.")
    spec.table("tables/adv_universal.parquet",
               "Universal perturbation per model: radius xi and largest change in grey levels, fooling rate on the "
               "scenes it was computed on (and whether it reached the target) and on held-out scenes.",
               columns=["model", "xi_255", "linf_255", "fooling_rate_fit", "target_rate", "reached", "passes",
                        "fooling_rate_heldout"], digits=2)
    spec.figure("figures/adv_transfer.png",
                "Transfer matrix: row = the model the universal perturbation was computed on, column = the model it "
                "is applied to; cell = fooling rate (share of held-out scenes whose predicted class changes). The "
                "diagonal uses the same scenes as the other cells.")
    spec.table("tables/adv_transfer.parquet", "Transfer matrix (fooling rates; rows = source model, columns = "
               "target model).", digits=2)
