"""Dataset jobs built on the sharded runner: GradSUM profiles and method evaluations."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradsum.core.layers import AUTO
from gradsum.metrics.benchmark import DEFAULT_METRICS, BenchmarkResult, Evaluator
from gradsum.run.runner import Engine, Job, run_sharded, write_table
from gradsum.semantic import Profile, ProfileComputer, table_of

__all__ = ["profile_job", "load_profile", "evaluate_job", "evaluation_kind"]


def profile_job(
    model: nn.Module,
    dataset: Any,
    out: str | Path,
    *,
    methods: Sequence[str] = ("gradcam",),
    layer: Any = AUTO,
    target: Any = None,
    baseline: int = 0,
    seed: int = 0,
    batch_size: int = 16,
    shard_size: int = 64,
    normalize: str = "relu-minmax",
    threshold: float = 0.5,
    model_name: str = "model",
    epoch: int | None = None,
    label_table: Any = None,
    options: dict[str, dict[str, Any]] | None = None,
    config: dict[str, Any] | None = None,
    engine: Engine | None = None,
    overwrite: bool = False,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    precision: str = "float32",
    autocast: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Profile:
    """GradSUM over `dataset` in resumable shards, written to `out`:
    manifest.json, shards/profile_*.parquet, profile.parquet (all rows, model and random
    copies), profile_images.parquet, profile_summary.parquet and, with a baseline,
    baseline_summary.parquet. `config` identifies the job for resuming (the CLI passes the
    specs it was given and the SHA-256 of the weights file); the settings below, batch_size
    included, are added to it. num_workers: processes reading the samples (results do not
    depend on it, so it is not part of the job)."""
    table = table_of(dataset, label_table)
    computer = ProfileComputer(model, table, list(methods), layer=layer, target=target, normalize=normalize,  # type: ignore[arg-type]
                               threshold=threshold, batch_size=batch_size, baseline=baseline, seed=seed,
                               model_name=model_name, epoch=epoch, options=options, device=device,
                               num_workers=num_workers, precision=precision, autocast=autocast)
    # every setting that changes numbers identifies the job (batched float arithmetic differs by ~1e-7)
    job = Job("profile", {**(config or {}), **computer.settings, "batch_size": batch_size}, len(dataset), shard_size,
              runtime=_runtime(model, device))

    def compute(items: range) -> Any:
        return computer.rows(dataset, list(items))

    frame = run_sharded(out, job, compute, engine=engine, overwrite=overwrite, progress=progress)
    profile = computer.profile(frame)
    out = Path(out)
    write_table(out / "profile_images.parquet", profile.images)
    write_table(out / "profile_summary.parquet", profile.summary())
    base = profile.baseline_summary()
    if base is not None:
        write_table(out / "baseline_summary.parquet", base)
    return profile


def load_profile(out: str | Path) -> Profile:
    """Read a finished profile run folder back into a Profile."""
    import json

    from gradsum.run.runner import read_table

    out = Path(out)
    frame = read_table(out / "profile.parquet")
    manifest = json.loads((out / "manifest.json").read_text())
    settings = manifest["jobs"]["profile"]["config"]
    own = frame[frame["copy"] < 0].drop(columns="copy").reset_index(drop=True)
    base = frame[frame["copy"] >= 0].reset_index(drop=True)
    return Profile(own, settings, base if len(base) else None)


def evaluation_kind(method: str) -> str:
    """The job kind (table name) of one method's evaluation: "evaluate-<method>"."""
    return "evaluate-" + "".join(ch if ch.isalnum() or ch in "-+" else "_" for ch in method)


def evaluate_job(
    model: nn.Module,
    dataset: Any,
    out: str | Path,
    *,
    methods: Sequence[str] | Mapping[str, Callable[[nn.Module], Any]] = ("gradcam",),
    metrics: Sequence[str] = DEFAULT_METRICS,
    layer: Any = AUTO,
    target: Any = None,
    batch_size: int = 16,
    shard_size: int = 64,
    method_options: dict[str, dict[str, Any]] | None = None,
    metric_options: dict[str, dict[str, Any]] | None = None,
    seed: int = 0,
    config: dict[str, Any] | None = None,
    engine: Engine | None = None,
    overwrite: bool = False,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    precision: str = "float32",
    autocast: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> BenchmarkResult:
    """`gradsum.metrics.benchmark` over `dataset` in resumable shards, one method after the
    other: each method is its own job (kind "evaluate-<method>", identified by `config`, the
    method, its options, the metrics and their options, target, layer, seed and batch size),
    its shards in `out/shards/`, its rows in `out/evaluate-<method>.parquet` as soon as it
    finishes. A re-run skips what is on disk; adding a method to a finished run computes only
    that method. methods: registry names, or {name: factory(model) -> exp(x, target)} as
    for `benchmark` (a factory is identified by its name only). progress(method, done,
    total) reports each method's images."""
    evaluator = Evaluator(model, methods, metrics, layer=layer, target=target, batch_size=batch_size,
                          method_options=method_options, metric_options=metric_options, device=device, seed=seed,
                          num_workers=num_workers, precision=precision, autocast=autocast)
    frames = []
    for name in evaluator.methods:
        job = Job(evaluation_kind(name), {**(config or {}), **evaluator.method_settings(name)}, len(dataset),
                  shard_size, runtime=_runtime(model, device))

        def compute(items: range, name: str = name) -> Any:
            return evaluator.rows(dataset, list(items), [name])

        report = None if progress is None else (lambda done, total, name=name: progress(name, done, total))
        frames.append(run_sharded(out, job, compute, engine=engine, overwrite=overwrite, progress=report))
    import pandas as pd

    return evaluator.result(pd.concat(frames, ignore_index=True))


def _runtime(model: nn.Module, device: torch.device | str | None) -> dict[str, Any]:
    """The device the job runs on (the model's when not given), for its manifest."""
    from gradsum.core.devices import device_info, model_device

    return device_info(model_device(model) if device is None else device)
