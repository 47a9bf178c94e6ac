"""`gradsum data ...`: write synthetic road scenes to disk, preview or describe a dataset."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ._common import RESIZE_OPTION, UserError, check_out_dir, parse_size, user_errors
from ._inputs import data_size_option, size_options

__all__ = ["register", "synth", "preview", "info", "SCAN_PROGRESS_FROM"]

#: `data info` shows a progress bar while decoding at least this many files
SCAN_PROGRESS_FROM = 200

data_app = typer.Typer(
    help="Datasets: write synthetic road scenes, preview or describe a data SPEC.",
    no_args_is_help=True,
)


def _positive(value: int, option: str) -> int:
    if value < 1:
        raise UserError(f"{option} must be a positive number, got {value}")
    return value


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

    check_out_dir(out)
    if n <= 0:
        raise UserError(f"--n must be a positive number of scenes, got {n}")
    if start < 0:
        raise UserError(f"--start must be >= 0, got {start}")
    hw = parse_size(size)
    res = write_synth(out, n=n, size=hw, seed=seed, shortcut=shortcut, split=split,  # type: ignore[arg-type]
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
    out: Path = typer.Option(..., "--out", help="Image file to write (PNG; another extension picks that format)."),
    n: int = typer.Option(8, "--n", help="Number of samples."),
    cols: int = typer.Option(2, "--cols", help="Samples per row."),
    scale: int = typer.Option(2, "--scale", help="Nearest-neighbour upscaling (the result may hold at most "
                                                 "64 megapixels)."),
    size: str | None = data_size_option("images keep their own sizes; when they differ, each tile is letterboxed "
                                        "into the first image's size"),
    resize: str | None = RESIZE_OPTION,
) -> None:
    """Save a grid of images beside their colourised segmentations (and boxes).

    Example: gradsum data preview roads:12:seed=1 --out scenes.png --n 12

    Photos of mixed sizes: gradsum data preview voc:VOC2007:split=val --size 224x224 --resize letterbox --out voc.png
    """
    import warnings

    from gradsum.data import save_preview

    from ._inputs import open_dataset

    _positive(n, "--n")
    _positive(cols, "--cols")
    _positive(scale, "--scale")
    hw, resize = size_options(size, resize)
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give the preview's file name, e.g. --out {out / 'preview.png'}")
    ds = open_dataset(spec, hw, resize)
    if len(ds) == 0:
        raise UserError(f"{spec} has no samples")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_preview(ds, out, min(n, len(ds)), cols=cols, scale=scale)
    for w in caught:  # e.g. tiles of several sizes letterboxed into the first one's: one line each
        if issubclass(w.category, UserWarning):
            typer.echo(f"note: {w.message}")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    typer.echo(f"wrote {out}")


def _scan(ds: Any) -> list[tuple[str, str]]:
    """Decode every item of a file dataset (a progress bar on stderr for many files)."""
    n = len(ds)
    if n < SCAN_PROGRESS_FROM:
        return ds.scan()
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("decoding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("decoding", total=n)
        return ds.scan(lambda done, total: bar.update(task, completed=done))


@data_app.command("info")
@user_errors
def info(spec: str = typer.Argument(..., help="Data SPEC, e.g. voc:DIR:split=val.")) -> None:
    """Print size, label table and first sample of a dataset; decode every file and list the
    unreadable and skipped ones.

    Example: gradsum data info folder:photos

    Unreadable files are left out with the SPEC option on_error=skip, e.g.
    gradsum data info driving:logs/driving_log.csv:on_error=skip
    """
    import warnings

    from gradsum.data import load_dataset
    from gradsum.data._files import SKIP_HINT, FileDataset

    with warnings.catch_warnings():  # the skipped items are listed below
        warnings.simplefilter("ignore", UserWarning)
        ds = load_dataset(spec)
    table = getattr(ds, "label_table", None)
    typer.echo(f"{type(ds).__name__}: {len(ds)} samples")
    typer.echo(f"label table: {table.name if table is not None else 'none'}")
    bad: list[tuple[str, str]] = []
    if isinstance(ds, FileDataset):
        if ds.on_error == "skip":  # every item was decoded when the dataset was built
            typer.echo(f"decoded: {len(ds)} readable (checked when built, with on_error=skip)")
        else:
            bad = _scan(ds)
            typer.echo(f"decoded: {len(ds) - len(bad)} of {len(ds)} readable, {len(bad)} unreadable")
            for path, reason in bad:
                typer.echo(f"  unreadable {path}: {reason}")
            if bad:
                typer.echo(f"hint: {SKIP_HINT}")
    sample = None
    for i in range(min(len(ds), len(bad) + 1)):  # the first readable sample
        try:
            sample = ds[i]
            break
        except (ValueError, OSError):
            continue
    if sample is not None:
        seg = "none" if sample.segmentation is None else "x".join(map(str, sample.segmentation.shape))
        typer.echo(f"first: id={sample.id} image={'x'.join(map(str, sample.image.shape))} "
                   f"segmentation={seg} target={sample.target!r}")  # fmt: skip
    skipped = getattr(ds, "skipped", [])
    typer.echo(f"skipped: {len(skipped)}")
    for path, reason in skipped[:20]:
        typer.echo(f"  {path}: {reason}")
    if len(skipped) > 20:
        typer.echo(f"  ... and {len(skipped) - 20} more")


def register(app: typer.Typer) -> None:
    """Add the `data` command group to the gradsum CLI."""
    app.add_typer(data_app, name="data")
