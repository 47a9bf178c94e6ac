"""`gradsum profile` (GradSUM over a dataset, resumable) and `gradsum report` (re-render)."""
from __future__ import annotations

import contextlib
from pathlib import Path

import typer

from gradsum.cli._common import (
    AUTOCAST_OPTION,
    DATA_SIZE_OPTION,
    DATA_WORKERS_OPTION,
    DEVICE_OPTION,
    ENGINE_OPTION,
    GPUS_PER_WORKER_OPTION,
    METHOD_OPTION_OPTION,
    PRECISION_OPTION,
    RAY_ADDRESS_OPTION,
    RESIZE_OPTION,
    WORKERS_OPTION,
    UserError,
    check_methods_build,
    check_out_dir,
    data_size,
    data_workers,
    device_option,
    engine_option,
    layer_option,
    method_options,
    precision_options,
    progress_bar,
    split_list,
    user_errors,
)
from gradsum.cli._model import (
    DATA_TARGET_HELP,
    MEAN_OPTION,
    MODEL_OPTION,
    NORMALIZE_OPTION,
    NUM_CLASSES_OPTION,
    OUTPUT_OPTION,
    STD_OPTION,
    TRUST_OPTION,
    WEIGHTS_OPTION,
    data_target,
    load_model,
)

#: random-model copies for the baseline, at most (each costs a pass over the data)
MAX_BASELINE = 100

PROFILE_HELP = """GradSUM: the share of each heatmap on each semantic category, over a dataset, with a
random-model baseline. Resumable: re-run the same command after an interruption.

Examples:

  gradsum profile --model potholenet --weights runs/pothole/checkpoints/epoch_006.pt --data roads:300:task=pothole --method gradcam,layercam --baseline 10 --out runs/profile

  gradsum profile --model pilotnet --weights pilotnet.pt --data cityscapes:data/cs:split=val --method gradcam --out runs/cs
"""


def profile_command(
    data: str = typer.Option(..., "--data", "-d", help="roads:N | cityscapes:DIR | voc:DIR | driving:CSV (with segmentations)"),
    model: str = MODEL_OPTION,
    weights: Path = WEIGHTS_OPTION,
    num_classes: int = NUM_CLASSES_OPTION,
    normalize: str = NORMALIZE_OPTION,
    mean: str = MEAN_OPTION,
    std: str = STD_OPTION,
    output: str = OUTPUT_OPTION,
    trust_pickle: bool = TRUST_OPTION,
    method: str = typer.Option("gradcam", "--method", help="Comma-separated method names."),
    layer: str = typer.Option("auto", "--layer", help="Layer for CAM methods ('auto' = the model's default)."),
    option: list[str] = METHOD_OPTION_OPTION,
    target: str = typer.Option(None, "--target", help=DATA_TARGET_HELP),
    size: str = DATA_SIZE_OPTION,
    data_workers_: int = DATA_WORKERS_OPTION,
    resize: str | None = RESIZE_OPTION,
    baseline: int = typer.Option(10, "--baseline", help=f"Random-model copies for the baseline (0 = none, at most {MAX_BASELINE})."),
    batch_size: int = typer.Option(16, "--batch-size"),
    shard_size: int = typer.Option(64, "--shard-size", help="Images per resumable shard."),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(Path("runs/profile"), "--out", "-o"),
    device_: str = DEVICE_OPTION,
    engine: str = ENGINE_OPTION,
    ray_address: str = RAY_ADDRESS_OPTION,
    workers_: int = WORKERS_OPTION,
    gpus_per_worker: float = GPUS_PER_WORKER_OPTION,
    precision: str = PRECISION_OPTION,
    autocast: str = AUTOCAST_OPTION,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a different job already in --out."),
) -> None:
    import gradsum as gs
    from gradsum.report import render_report
    from gradsum.report.sections_profile import write_profile_report
    from gradsum.run import profile_job

    methods = split_list(method)
    if not methods:
        raise UserError("--method is empty; give at least one method name (see `gradsum methods`)")
    for name in methods:
        gs.method_info(name)
    options = method_options(option, methods)
    check_out_dir(out)
    device = device_option(device_)
    runner = engine_option(engine, ray_address, workers_, gpus_per_worker, device)
    exactness = precision_options(precision, autocast)
    if not 0 <= baseline <= MAX_BASELINE:
        raise UserError(f"--baseline must be between 0 and {MAX_BASELINE} random copies (the limit), got {baseline}")
    if batch_size < 1 or shard_size < 1:
        raise UserError(f"--batch-size and --shard-size must be >= 1, got {batch_size} and {shard_size}")
    sizing = data_size(size, resize)
    workers = data_workers(data_workers_ if data_workers_ is not None or engine == "local" else 0)
    dataset = gs.data.load_dataset(data, **sizing)
    if len(dataset) == 0:
        raise UserError(f"--data {data} has no samples")
    if getattr(dataset, "label_table", None) is None:
        raise UserError(f"data {data!r} has no segmentation label table; GradSUM needs segmented images")
    net = load_model(model, weights, num_classes, normalize=normalize, mean=mean, std=std, output=output,
                     trust=trust_pickle, device=device)
    model = model or gs.models.card_of(net).spec or "model"
    layer_spec = layer_option(net, layer)
    target_spec = data_target(target, dataset, net, data)
    check_methods_build(net, methods, layer_spec, options)
    card = gs.models.card_of(net)
    from gradsum.run.store import file_sha256

    # the weights' content, not their path, identifies the job: a file overwritten under the same name
    # (a new epoch, a retrained model) is a different job, never resumed into the old one's shards
    config = {"model": model, "weights": str(weights) if weights else None,
              "weights_sha256": file_sha256(weights) if weights else None, "data": data, "size": sizing,
              "card": card.to_dict() if card else None}
    bar, update = progress_bar("profiling")
    with bar, contextlib.closing(runner) if hasattr(runner, "close") else contextlib.nullcontext():
        profile = profile_job(net, dataset, out, methods=methods, layer=layer_spec, target=target_spec,
                              baseline=baseline, seed=seed, batch_size=batch_size, shard_size=shard_size,
                              options=options, num_workers=workers, device=device, **exactness, engine=runner,
                              model_name=model, config=config,
                              overwrite=overwrite, progress=update)
    spec = write_profile_report(out, profile, dataset.label_table, title=f"GradSUM profile of {model} on {data}",
                                resized=sizing or None)
    spec.save(out)
    report = render_report(out)
    typer.echo(f"profile tables in {out}; report: {report}")


def report_command(run_dir: Path = typer.Argument(..., help="A run folder written by gradsum (holds report.json).")) -> None:
    from gradsum.report import render_report

    typer.echo(f"report: {render_report(run_dir)}")


def register(app: typer.Typer) -> None:
    app.command("profile", help=PROFILE_HELP)(user_errors(profile_command))
    app.command("report", help="Re-render a run folder's report.html from its tables and figures.\n\n"
                               "Example: gradsum report runs/demo")(user_errors(report_command))
