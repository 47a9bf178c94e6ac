"""`gradsum demo`: the embedded main job (train, explain, profile, report)."""
from __future__ import annotations

import time
from pathlib import Path

import typer

from gradsum.cli._common import DEVICE_OPTION, device_option, user_errors

DEMO_HELP = """Generate road scenes, train a steering model and two pothole classifiers (one with a
known vegetation shortcut), explain held-out scenes with several methods, compute GradSUM
profiles per model, method and epoch against random models, and write one HTML report.

Examples:

  gradsum demo --quick --out runs/quick     # about 2 minutes on 2 CPU cores

  gradsum demo --out runs/demo              # the full demo, a few minutes

  gradsum demo --out runs/demo --device cuda  # train, explain, profile and evaluate on the GPU
"""


def demo_command(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Run folder for tables, figures and report.html."),
    quick: bool = typer.Option(False, "--quick", help="Smaller data, fewer epochs and random copies."),
    seed: int = typer.Option(0, "--seed"),
    device_: str = DEVICE_OPTION,
) -> None:
    import torch

    from gradsum.run.demo import DemoConfig, run_demo

    device = device_option(device_)  # an absent device: one line, exit 2, nothing written
    torch.set_num_threads(max(1, torch.get_num_threads()))
    config = DemoConfig.quick() if quick else DemoConfig()
    config.seed = seed
    config.device = str(device)
    start = time.perf_counter()
    report = run_demo(out, config, echo=typer.echo)
    typer.echo(f"demo finished in {time.perf_counter() - start:.0f} s; open {report}")


def register(app: typer.Typer) -> None:
    app.command("demo", help=DEMO_HELP)(user_errors(demo_command))
