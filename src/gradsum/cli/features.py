"""`gradsum features ...`: filter grids, feature maps, activation maximisation and
maximally activating dataset patches, written as PNG + CSV/Parquet into a run folder."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ._common import UserError, user_errors

__all__ = ["register", "filters", "maps", "maximize", "patches", "load_model", "load_images", "parse_size",
           "parse_indices", "write_csv", "save_tensor"]

features_app = typer.Typer(
    help="What layers respond to: filters, feature maps, activation maximisation, dataset patches.",
    no_args_is_help=True,
)

MODEL_HELP = "Model SPEC: pilotnet | potholenet | digitsnet | torchvision:NAME | timm:NAME | FILE.py:FACTORY."


# ---------------------------------------------------------------- shared helpers (also used by attack.py)

def parse_size(text: str | None) -> tuple[int, int] | None:
    """'66x200' -> (66, 200); '32' -> (32, 32); None -> None."""
    if not text:
        return None
    parts = text.lower().replace("×", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise UserError(f"--size must look like HxW (e.g. 66x200), got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 4:
        raise UserError(f"--size must be HxW with sides >= 4, got {text!r}")
    return values[0], values[1]


def parse_indices(text: str | None, what: str = "--channels") -> list[int] | None:
    """'0-3,7' -> [0, 1, 2, 3, 7]; None/'' -> None."""
    if not text:
        return None
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise UserError(f"{what} must be integers and ranges like 0-15,20; got {text!r}") from None
    if not out:
        raise UserError(f"{what} is empty: {text!r}")
    return out


def load_model(spec: str, weights: Path | None, num_classes: int | None = None,
               mean: str | None = None, std: str | None = None) -> Any:
    """Build the model (eval mode), with its input normalisation wrapped in when given."""
    import gradsum.models as gm
    from gradsum.adversarial import pixel_space

    model = gm.build(spec, num_classes=num_classes, weights=weights)

    def floats(text: str | None, name: str) -> list[float] | None:
        if text is None:
            return None
        try:
            return [float(v) for v in text.split(",")]
        except ValueError:
            raise UserError(f"{name} must be one number or one per channel, comma-separated; got {text!r}") from None

    return pixel_space(model, floats(mean, "--mean"), floats(std, "--std"))


def load_images(data: str, size: tuple[int, int] | None, limit: int | None, start: int = 0) -> tuple[Any, list[str], Any]:
    """(images (N,3,H,W), ids, targets) of the first `limit` samples of a data SPEC."""
    import torch

    from gradsum.data import load_dataset, parse_spec
    from gradsum.data.transforms import Resize

    kind, _, _ = parse_spec(data)
    kw: dict[str, Any] = {}
    if size is not None:
        if kind in ("roads", "digits"):
            kw["size"] = size
        else:
            kw["transform"] = Resize(size)
    dataset = load_dataset(data, **kw)
    n = len(dataset)
    if n == 0 or start >= n:
        raise UserError(f"--data {data} has {n} samples; nothing to use from index {start}")
    stop = n if limit is None else min(n, start + limit)
    samples = [dataset[i] for i in range(start, stop)]
    shapes = {tuple(s.image.shape) for s in samples}
    if len(shapes) != 1:
        raise UserError(f"--data {data} has images of several sizes {sorted(shapes)[:3]}; give --size HxW")
    images = torch.stack([s.image for s in samples]).float()
    return images, [s.id for s in samples], [s.target for s in samples]


def write_csv(path: Path, frame: Any) -> Path:
    """A DataFrame as CSV, written atomically (Parquet tables: gradsum.run.runner.write_table)."""
    from gradsum.run.store import write_text

    return write_text(path, frame.to_csv(index=False))


def save_tensor(path: Path, tensor: Any) -> Path:
    """torch.save of a (CPU) tensor, written atomically."""
    import io

    import torch

    from gradsum.run.store import write_bytes

    buf = io.BytesIO()
    torch.save(tensor.detach().cpu(), buf)
    return write_bytes(path, buf.getvalue())


def _safe(name: str) -> str:
    return name.replace(".", "_").replace("/", "_") or "model"


# ---------------------------------------------------------------- commands

@features_app.command("filters")
@user_errors
def filters(
    model: str = typer.Option(..., "--model", help=MODEL_HELP),
    out: Path = typer.Option(..., "--out", help="Run folder for filters_<layer>.png and .csv."),
    weights: Path | None = typer.Option(None, "--weights", help="Weights file (state dict); default random."),
    layer: str | None = typer.Option(None, "--layer", help="Conv layer name (default: the first conv)."),
    max_tiles: int = typer.Option(64, "--max-tiles", help="Cap on tiles shown."),
    num_classes: int | None = typer.Option(None, "--num-classes", help="Outputs of the model, if not its default."),
) -> None:
    """Draw a conv layer's weights: RGB tiles for a first layer, grayscale per input channel deeper.

    Example: gradsum features filters --model potholenet --weights runs/pothole/best.pt --out runs/feat
    """
    import pandas as pd

    import gradsum.features as gf
    from gradsum.run.store import save_figure

    net = load_model(model, weights, num_classes)
    grid = gf.filter_grid(net, layer, max_tiles=max_tiles)
    name = _safe(grid.layer)
    png = save_figure(out / f"filters_{name}.png", grid.figure())
    w = dict(net.named_modules())[grid.layer].weight.detach().float()
    rows = [{"layer": grid.layer, "filter": f, "in_channel": c, "l2_norm": float(w[f, c].norm()),
             "min": float(w[f, c].min()), "max": float(w[f, c].max())}
            for f in range(w.shape[0]) for c in range(w.shape[1])]
    write_csv(out / f"filters_{name}.csv", pd.DataFrame(rows))
    typer.echo(f"{grid.title}: wrote {png} and filters_{name}.csv")


@features_app.command("maps")
@user_errors
def maps(
    model: str = typer.Option(..., "--model", help=MODEL_HELP),
    data: str = typer.Option(..., "--data", help="Data SPEC, e.g. roads:10:task=pothole or digits."),
    layer: str = typer.Option(..., "--layer", help="Layer whose feature maps to draw."),
    out: Path = typer.Option(..., "--out", help="Run folder for maps_<layer>_<index>.png."),
    weights: Path | None = typer.Option(None, "--weights", help="Weights file (state dict)."),
    index: int = typer.Option(0, "--index", help="Which sample of --data."),
    size: str | None = typer.Option(None, "--size", help="Resize images to HxW."),
    num_classes: int | None = typer.Option(None, "--num-classes", help="Outputs of the model, if not its default."),
) -> None:
    """Draw one image's feature maps at a layer and their sum.

    Example: gradsum features maps --model digitsnet --data digits --layer features.act1 --out runs/feat
    """
    import gradsum.features as gf
    from gradsum.run.store import save_figure

    net = load_model(model, weights, num_classes)
    images, ids, _ = load_images(data, parse_size(size), 1, start=index)
    fm = gf.feature_maps(net, images[0], layer)
    png = save_figure(out / f"maps_{_safe(fm.layer)}_{index}.png", fm.figure())
    typer.echo(f"{fm.layer}: {fm.maps.shape[0]} maps of {fm.maps.shape[1]}x{fm.maps.shape[2]} for sample {ids[0]}; wrote {png}")


@features_app.command("maximize")
@user_errors
def maximize(
    model: str = typer.Option(..., "--model", help=MODEL_HELP),
    out: Path = typer.Option(..., "--out", help="Run folder for maximize_<layer>.png and .csv."),
    layer: str | None = typer.Option(None, "--layer", help="Layer to visualise (not needed for --objective class)."),
    weights: Path | None = typer.Option(None, "--weights", help="Weights file (state dict)."),
    channels: str = typer.Option("0-15", "--channels", help="Channels / units / classes, e.g. 0-15 or 0,3,7."),
    objective: str = typer.Option("channel", "--objective", help="channel | neuron | dense | class."),
    preset: str = typer.Option("lucent", "--preset", help="lucent (FFT, Adam, 512 steps) | keras (pixels, 30 steps)."),
    steps: int | None = typer.Option(None, "--steps", help="Override the preset's number of steps."),
    size: str | None = typer.Option(None, "--size", help="Image size HxW (default: from --data, else 64x64)."),
    data: str | None = typer.Option(None, "--data", help="Data SPEC to take the image size from."),
    seed: int = typer.Option(0, "--seed", help="Seed of the start images and transforms."),
    num_classes: int | None = typer.Option(None, "--num-classes", help="Outputs of the model, if not its default."),
) -> None:
    """Optimise one image per channel (all in one batch) that maximally activates it.

    Example: gradsum features maximize --model potholenet --weights best.pt --layer features.act3 --channels 0-15 --size 66x200 --out runs/feat
    """
    import pandas as pd

    import gradsum.features as gf
    from gradsum.run.store import save_figure

    net = load_model(model, weights, num_classes)
    idx = parse_indices(channels) or [0]
    hw = parse_size(size)
    if hw is None and data is not None:
        hw = tuple(load_images(data, None, 1)[0].shape[-2:])  # type: ignore[assignment]
    hw = hw or (64, 64)
    builders = {"channel": gf.channel, "neuron": gf.neuron, "dense": gf.dense_unit}
    if objective == "class":
        obj = gf.class_logit(idx)
    elif objective in builders:
        if not layer:
            raise UserError(f"--objective {objective} needs --layer NAME")
        obj = builders[objective](layer, idx)
    else:
        raise UserError(f"--objective must be channel, neuron, dense or class; got {objective!r}")
    res = gf.maximize(net, obj, image_size=hw, preset=preset, steps=steps, seed=seed)
    name = _safe("output" if objective == "class" or not layer else layer)
    png = save_figure(out / f"maximize_{name}.png", res.figure())
    table = pd.DataFrame({"layer": layer or "output", "objective": objective, "index": idx, "label": res.labels,
                          "start_value": res.history[0].tolist(), "final_value": res.values.tolist(),
                          "preset": preset, "steps": res.settings["steps"], "seed": seed})
    write_csv(out / f"maximize_{name}.csv", table)
    save_tensor(out / f"maximize_{name}.pt", res.images)
    typer.echo(f"{obj.description}: objective {float(res.history[0].mean()):.3g} -> {float(res.values.mean()):.3g} "
               f"(mean of {len(idx)}); wrote {png}")


@features_app.command("patches")
@user_errors
def patches(
    model: str = typer.Option(..., "--model", help=MODEL_HELP),
    data: str = typer.Option(..., "--data", help="Data SPEC streamed once, e.g. roads:500:task=pothole."),
    layer: str = typer.Option(..., "--layer", help="Conv layer whose channels to rank."),
    out: Path = typer.Option(..., "--out", help="Run folder for patches_<layer>.png and .parquet."),
    weights: Path | None = typer.Option(None, "--weights", help="Weights file (state dict)."),
    k: int = typer.Option(9, "--k", help="Patches kept per channel."),
    channels: str | None = typer.Option(None, "--channels", help="Channels to keep (default all), e.g. 0-7."),
    show: int = typer.Option(16, "--show", help="Channels drawn in the PNG."),
    limit: int | None = typer.Option(None, "--limit", help="Use only the first N samples."),
    size: str | None = typer.Option(None, "--size", help="Resize images to HxW."),
    batch_size: int = typer.Option(64, "--batch-size", help="Images per forward pass."),
    num_classes: int | None = typer.Option(None, "--num-classes", help="Outputs of the model, if not its default."),
) -> None:
    """Stream a dataset once and crop the top-k receptive-field patches of every channel.

    Example: gradsum features patches --model potholenet --weights best.pt --data roads:300:task=pothole --layer features.act3 --out runs/feat
    """
    import pandas as pd

    from gradsum.data import load_dataset, parse_spec
    from gradsum.data.transforms import Resize
    from gradsum.features.patches import top_patches
    from gradsum.run.runner import write_table
    from gradsum.run.store import save_figure

    net = load_model(model, weights, num_classes)
    kw: dict[str, Any] = {}
    hw = parse_size(size)
    if hw is not None:
        kw = {"size": hw} if parse_spec(data)[0] in ("roads", "digits") else {"transform": Resize(hw)}
    dataset = load_dataset(data, **kw)
    if limit is not None:
        import torch

        dataset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
    res = top_patches(net, layer, dataset, k=k, channels=parse_indices(channels), batch_size=batch_size)
    name = _safe(res.layer)
    png = save_figure(out / f"patches_{name}.png", res.figure(channels=res.channels[:show]))
    ids = [getattr(dataset[i], "id", str(i)) for i in sorted(set(res.index.flatten().tolist()))]
    id_of = dict(zip(sorted(set(res.index.flatten().tolist())), ids, strict=True))
    rows = [{"layer": res.layer, "channel": ch, "rank": r, "value": float(res.values[i, r]),
             "index": int(res.index[i, r]), "id": id_of[int(res.index[i, r])], "y": int(res.y[i, r]),
             "x": int(res.x[i, r]), "box_y0": int(res.boxes[i, r, 0]), "box_x0": int(res.boxes[i, r, 1]),
             "box_y1": int(res.boxes[i, r, 2]), "box_x1": int(res.boxes[i, r, 3])}
            for i, ch in enumerate(res.channels) for r in range(res.values.shape[1])]
    write_table(out / f"patches_{name}.parquet", pd.DataFrame(rows))
    f = res.field_
    typer.echo(f"{res.layer}: top-{res.values.shape[1]} of {res.images_seen} images for {len(res.channels)} channels; "
               f"receptive field {f.size[0]}x{f.size[1]} ({f.method}), jump {f.jump[0]}; wrote {png}")


def register(app: typer.Typer) -> None:
    """Add `gradsum features ...` to the CLI."""
    app.add_typer(features_app, name="features")
