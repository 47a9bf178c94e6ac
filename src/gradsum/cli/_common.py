"""Shared CLI plumbing: user errors (one line, exit code 2) and small parsing helpers."""
from __future__ import annotations

import errno
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

__all__ = ["UserError", "user_errors", "fail", "split_list", "layer_option", "parse_size", "check_out_dir",
           "MAX_SIDE", "RESIZE_POLICIES", "DATA_SIZE_OPTION", "RESIZE_OPTION", "data_size",
           "METHOD_OPTION_OPTION", "method_options", "check_methods_build", "DATA_WORKERS_OPTION", "data_workers",
           "DEVICE_OPTION", "PRECISION_OPTION", "AUTOCAST_OPTION", "device_option", "precision_options",
           "ENGINE_OPTION", "RAY_ADDRESS_OPTION", "WORKERS_OPTION", "GPUS_PER_WORKER_OPTION", "engine_option", "progress_bar", "progress_bars"]

#: the largest image side a command accepts in --size (a 100000x100000 request is refused
#: before anything is allocated)
MAX_SIDE = 8192
RESIZE_POLICIES = ("letterbox", "stretch", "center-crop")
#: --size / --resize of the dataset commands (profile, evaluate, features, attack, train, data preview)
DATA_SIZE_OPTION = typer.Option(
    None, "--size", help="Bring every image (and its segmentation and boxes) to HxW, e.g. 224x224 (default: "
                         "images keep their own sizes; images of one size are batched together).")
RESIZE_OPTION = typer.Option(
    None, "--resize", help="How --size is reached when the aspect ratio differs: letterbox (fit, pad grey; "
                           "segmentation padded as void) | stretch | center-crop (default: the data SPEC's "
                           "resize=, else letterbox).")
#: --option METHOD.KEY=VALUE (repeatable), for explain, profile and evaluate
METHOD_OPTION_OPTION = typer.Option(
    None, "--option", help="A method option, METHOD.KEY=VALUE, repeatable: e.g. --option rise.n_masks=2000 "
                           "--option integrated-gradients.steps=32 (values: numbers, true/false, none, text, "
                           "or JSON lists).")
#: --data-workers of the dataset jobs (profile, evaluate)
DATA_WORKERS_OPTION = typer.Option(
    None, "--data-workers", help="Processes that read (decode, resize) the images ahead of the model; results do "
                                 "not depend on it (default: the CPU count - 1, at most 4; 0 = read in the main "
                                 "process).")
#: --device of every command that runs a model
DEVICE_OPTION = typer.Option("auto", "--device", help="Where the model runs: auto (CUDA when available, else "
                                                      "MPS, else the CPU) | cpu | cuda | cuda:N | mps.")
#: --precision / --autocast of the commands that explain (see gradsum.core.precision)
PRECISION_OPTION = typer.Option("float32", "--precision", help="float32 (TF32 off on GPUs: GPU and CPU maps agree; "
                                                               "the default) | tf32 (faster on NVIDIA GPUs).")
AUTOCAST_OPTION = typer.Option(None, "--autocast", help="Run the model under torch.autocast: bf16 | fp16 (faster, "
                                                        "less exact; recorded in the results).")
#: where the shards of profile / evaluate run (see gradsum.run.engines)
ENGINE_OPTION = typer.Option("local", "--engine", help="local (this process) | ray (Ray workers, on this machine "
                                                       "or a cluster: pip install gradsum[ray]).")
RAY_ADDRESS_OPTION = typer.Option(None, "--ray-address", help="With --engine ray: auto (a running cluster), "
                                                              "HOST:PORT, ray://HOST:PORT (default: $RAY_ADDRESS, "
                                                              "else a local Ray).")
WORKERS_OPTION = typer.Option(None, "--workers", help="With --engine ray: Ray workers (default: one per CPU, or per "
                                                      "GPU with --gpus-per-worker).")
GPUS_PER_WORKER_OPTION = typer.Option(0.0, "--gpus-per-worker", help="With --engine ray: GPUs per worker (0.5 puts "
                                                                     "two workers on one GPU; needs --device cuda).")
_DISK_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied"}

F = TypeVar("F", bound=Callable[..., Any])


class UserError(Exception):
    """A mistake the user can fix (missing file, unknown name, bad spec): printed as one line."""


def fail(message: str) -> typer.Exit:
    """Print `message` as one line on stderr and return the Exit(2) to raise."""
    typer.echo(f"gradsum: error: {message}", err=True)
    return typer.Exit(code=2)


def user_errors(func: F) -> F:
    """Decorator for commands: UserError, FileNotFoundError, ValueError, KeyError and TypeError
    raised by the library become one line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (UserError, FileNotFoundError, ValueError, KeyError, TypeError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if isinstance(exc, KeyError):
                msg = msg.strip("'\"")
            raise fail(msg) from None
        except ImportError as exc:  # an optional extra that is not installed (the message names it)
            if "pip install" not in str(exc):
                raise
            raise fail(str(exc).strip().splitlines()[0]) from None
        except OSError as exc:
            if exc.errno not in _DISK_ERRORS:
                raise
            where = f" writing {exc.filename}" if exc.filename else ""
            raise fail(f"{_DISK_ERRORS[exc.errno]}{where}; free space or choose another --out folder") from None

    return wrapper  # type: ignore[return-value]


def split_list(value: str | None) -> list[str]:
    """'a,b, c' -> ['a', 'b', 'c']; None or '' -> []."""
    if not value:
        return []
    return [part.strip() for part in value.split(",") if part.strip()]


def layer_option(model: Any, text: str) -> Any:
    """--layer value -> layer spec: 'auto' means the model's declared default layer (else
    auto-detection), 'a,b' a list of layers, anything else one layer name."""
    from gradsum.models import default_layer_for

    names = split_list(text) or ["auto"]
    if names == ["auto"]:
        return default_layer_for(model) or "auto"
    return names[0] if len(names) == 1 else names


def parse_size(text: str | None, option: str = "--size", minimum: int = 4) -> tuple[int, int] | None:
    """'66x200' -> (66, 200); '32' -> (32, 32); None/'' -> None. Sides must lie in
    [minimum, MAX_SIDE] (checked before anything is allocated)."""
    if not text:
        return None
    parts = text.lower().replace("×", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise UserError(f"{option} must look like HxW (e.g. 224x224 or 66x200), got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise UserError(f"{option} must look like HxW (e.g. 224x224 or 66x200), got {text!r}")
    if min(values) < minimum or max(values) > MAX_SIDE:
        raise UserError(f"{option} sides must be between {minimum} and {MAX_SIDE} pixels (the limit), got {text!r}")
    return values[0], values[1]


def data_size(size: str | None, resize: str | None = None) -> dict[str, Any]:
    """--size / --resize -> keyword arguments for `gradsum.data.load_dataset` ({} without
    --size; no "resize" without --resize, so that the SPEC's resize= or letterbox applies);
    both are checked before any image is read."""
    if resize is not None and resize not in RESIZE_POLICIES:
        raise UserError(f"--resize must be one of {', '.join(RESIZE_POLICIES)}; got {resize!r}")
    hw = parse_size(size)
    if hw is None:  # (a command may bring its images to another size, e.g. the checkpoint's, with --resize)
        return {}
    return {"size": f"{hw[0]}x{hw[1]}", **({"resize": resize} if resize else {})}


def check_out_dir(out: Path, option: str = "--out") -> Path:
    """--out must be a folder (existing or not), never an existing file."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{option} {out} is a file; give a folder for the results (it is created if missing)")
    return out


def option_value(text: str) -> Any:
    """'32' -> 32, '0.5' -> 0.5, 'true' -> True, 'none' -> None, '[2, 3]' -> [2, 3], else the text."""
    import json

    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text.strip()


def method_options(values: list[str] | None, methods: list[str]) -> dict[str, dict[str, Any]]:
    """--option METHOD.KEY=VALUE ... -> {method: {key: value}}; the method must be one of
    `methods` and take the option (checked before any model is run)."""
    import gradsum as gs
    from gradsum.methods.registry import check_method_options

    chosen = {gs.method_info(m).name: m for m in methods}
    options: dict[str, dict[str, Any]] = {}
    for text in values or []:
        head, eq, value = text.partition("=")
        method, dot, key = head.strip().rpartition(".")
        if not eq or not dot or not method or not key.strip():
            raise UserError(f"--option must look like METHOD.KEY=VALUE (e.g. rise.n_masks=2000); got {text!r}")
        name = gs.method_info(method).name
        if name not in chosen:
            raise UserError(f"--option {text!r} is for {name}, which is not among the methods run "
                            f"({', '.join(methods)}); add it to the methods or drop the option")
        key = key.strip()
        if key in ("layer", "progress"):
            raise UserError(f"--option {text!r}: {key} is not a method option here" +
                            ("; use --layer" if key == "layer" else ""))
        check_method_options(name, {key: None})
        options.setdefault(chosen[name], {})[key] = option_value(value)
    return options


def check_methods_build(model: Any, methods: list[str], layer: Any, options: dict[str, dict[str, Any]]) -> None:
    """Build each method once on the model, before any data is read, so that a bad --layer or
    --option value is one line naming the option."""
    import gradsum as gs

    for name in methods:
        try:
            gs.explainer(name, model, layer=layer, **options.get(name, {}))
        except (ValueError, TypeError) as exc:
            if not options.get(name):
                raise
            given = " ".join(f"--option {name}.{k}={v}" for k, v in options[name].items())
            raise UserError(f"{given}: {str(exc).strip().splitlines()[0]}") from None


def progress_bar(description: str):  # type: ignore[no-untyped-def]
    """A rich progress bar and its progress(done, total) callback; use the bar as a context manager."""
    bar, update = progress_bars([description])
    return bar, lambda done, total: update(description, done, total)


def progress_bars(descriptions: list[str]):  # type: ignore[no-untyped-def]
    """One rich progress bar per description (e.g. per method) and the callback
    progress(description, done, total); use the bar as a context manager."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   transient=False)
    tasks = {d: bar.add_task(d, total=None, start=False) for d in descriptions}  # each clock starts with its work

    def update(description: str, done: int, total: int) -> None:
        task = tasks[description]
        if bar.tasks[task].start_time is None:
            bar.start_task(task)
        bar.update(task, completed=done, total=total)

    return bar, update


def data_workers(value: int | None) -> int:
    """--data-workers: the number given (>= 0), else the CPU count - 1, at most 4."""
    import os

    if value is None:
        return max(0, min(4, (os.cpu_count() or 1) - 1))
    if value < 0:
        raise UserError(f"--data-workers must be >= 0, got {value}")
    return value


def device_option(text: str | None) -> Any:
    """--device -> torch.device (auto: CUDA, else MPS, else CPU); an absent device is one line."""
    from gradsum.core.devices import resolve_device

    try:
        return resolve_device(text or "auto")
    except ValueError as exc:
        raise UserError(f"--{exc}") from None


def precision_options(precision: str, autocast: str | None) -> dict[str, Any]:
    """--precision / --autocast -> {"precision": ..., "autocast": ...}, checked (one line)."""
    from gradsum.core.precision import check_precision

    try:
        check_precision(precision, autocast)
    except ValueError as exc:
        raise UserError(f"--{exc}") from None
    return {"precision": precision, "autocast": autocast}


def engine_option(engine: str, address: str | None, workers: int | None, gpus_per_worker: float,
                  device: Any) -> Any:
    """--engine / --ray-address / --workers / --gpus-per-worker -> the engine (a one-line error
    for a bad value or a missing Ray); GPU workers need the model on CUDA."""
    from gradsum.run.engines import engine_for

    if gpus_per_worker and getattr(device, "type", "cpu") != "cuda":
        raise UserError(f"--gpus-per-worker {gpus_per_worker:g} needs the model on CUDA: add --device cuda (the "
                        "driver loads the model and sends it to the workers)")
    return engine_for(engine, address=address, workers=workers, gpus_per_worker=gpus_per_worker)
