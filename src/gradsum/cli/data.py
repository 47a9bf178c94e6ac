"""`gradsum data ...`: write synthetic road scenes to disk, preview or describe a dataset."""
from __future__ import annotations

from pathlib import Path

import typer

from ._common import UserError, user_errors

__all__ = ["register", "synth", "preview", "info"]

data_app = typer.Typer(
    help="Datasets: write synthetic road scenes, preview or describe a data SPEC.",
    no_args_is_help=True,
)


@data_app.command("synth")
@user_errors
def synth(
    out: Path = typer.Option(..., "--out", help="Output folder (Cityscapes-like layout)."),
    n: int = typer.Option(100, "--n", help="Number of scenes."),
    size: str = typer.Option("66x200", "--size", help="Image size HxW."),
    shortcut: float = typer.Option(0.0, "--shortcut", help="Vegetation/pothole correlation 0..1."),
    seed: int = typer.Option(0, "--seed", help="Random seed (scene i depends on seed and i)."),
    split: str = typer.Option("train", "--split", help="Split folder name."),
    difficulty: float = typer.Option(0.3, "--difficulty", help="0 (easy) .. 1 (hard)."),
    pothole_rate: float = typer.Option(0.5, "--pothole-rate", help="Share of scenes with potholes."),
    start: int = typer.Option(0, "--start", help="First scene index (for sharded writing)."),
) -> None:
    """Write N synthetic road scenes as leftImg8bit/ + gtFine/ PNGs, targets.csv and labels.csv.

    Example: gradsum data synth --n 500 --size 66x200 --out data/roads --shortcut 1 --seed 3

    Read it back with the data SPEC cityscapes:data/roads:task=steering (or task=pothole).
    """
    from gradsum.data.synth import write_synth

    if n <= 0:
        raise UserError(f"--n must be a positive number of scenes, got {n}")
    if start < 0:
        raise UserError(f"--start must be >= 0, got {start}")
    res = write_synth(out, n=n, size=size, seed=seed, shortcut=shortcut, split=split,
                      difficulty=difficulty, pothole_rate=pothole_rate, start=start)  # fmt: skip
    typer.echo(
        f"wrote {res['n']} scenes ({res['potholes']} with potholes) of {res['size'][0]}x"
        f"{res['size'][1]} to {out} (split {split}); targets: {res['targets']}; "
        f"labels: {res['labels']}"
    )


@data_app.command("preview")
@user_errors
def preview(
    spec: str = typer.Argument(..., help="Data SPEC, e.g. roads:16 or cityscapes:DIR."),
    out: Path = typer.Option(..., "--out", help="PNG file to write."),
    n: int = typer.Option(8, "--n", help="Number of samples."),
    cols: int = typer.Option(2, "--cols", help="Samples per row."),
    scale: int = typer.Option(2, "--scale", help="Nearest-neighbour upscaling."),
) -> None:
    """Save a grid of images beside their colourised segmentations.

    Example: gradsum data preview roads:12:seed=1 --out scenes.png --n 12
    """
    from gradsum.data import load_dataset, save_preview

    ds = load_dataset(spec)
    if len(ds) == 0:
        raise UserError(f"{spec} has no samples")
    save_preview(ds, out, min(n, len(ds)), cols=cols, scale=scale)
    typer.echo(f"wrote {out}")


@data_app.command("info")
@user_errors
def info(spec: str = typer.Argument(..., help="Data SPEC, e.g. voc:DIR:split=val.")) -> None:
    """Print size, label table, first sample and skipped files of a dataset.

    Example: gradsum data info driving:logs/driving_log.csv:on_error=skip
    """
    from gradsum.data import load_dataset

    ds = load_dataset(spec)
    table = getattr(ds, "label_table", None)
    typer.echo(f"{type(ds).__name__}: {len(ds)} samples")
    typer.echo(f"label table: {table.name if table is not None else 'none'}")
    if len(ds):
        s = ds[0]
        seg = "none" if s.segmentation is None else "x".join(map(str, s.segmentation.shape))
        typer.echo(f"first: id={s.id} image={'x'.join(map(str, s.image.shape))} "
                   f"segmentation={seg} target={s.target!r}")  # fmt: skip
    skipped = getattr(ds, "skipped", [])
    typer.echo(f"skipped: {len(skipped)}")
    for path, reason in skipped[:20]:
        typer.echo(f"  {path}: {reason}")


def register(app: typer.Typer) -> None:
    """Add the `data` command group to the gradsum CLI."""
    app.add_typer(data_app, name="data")
