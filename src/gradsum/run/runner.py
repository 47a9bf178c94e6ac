"""Dataset jobs in shards, resumable.

A job splits its items (images) into shards of `shard_size`. Each finished shard is written
atomically to `<out>/shards/<kind>_<k>.parquet`; a re-run of the same job (same config in
`manifest.json`) skips the shards already on disk, so a run interrupted at any point — even
by SIGKILL — resumes from the last finished shard and ends with the same tables as an
uninterrupted run (results depend only on the item, never on the shard it ran in).
"""
from __future__ import annotations

import datetime as _dt
import io
import json
import platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradsum.run.engines import Engine, LocalEngine
from gradsum.run.store import remove_partial_files, write_bytes, write_json

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Job", "Engine", "LocalEngine", "run_sharded", "read_table", "write_table", "manifest_for",
           "RunFolderError"]  # Engine, LocalEngine: re-exported from gradsum.run.engines


class RunFolderError(ValueError):
    """The output folder holds a different job."""


@dataclass(frozen=True)
class Job:
    """kind: table name ("profile", "evaluate-<method>"); config: JSON-able description that
    identifies the job (specs, methods, seeds, precision...); n_items, shard_size: the
    sharding; runtime: the device it runs on (recorded, not identifying)."""

    kind: str
    config: dict[str, Any]
    n_items: int
    shard_size: int = 64
    #: where and how it runs (device, its name, versions): recorded in the manifest, not part of
    #: the identity (a job may resume on another machine)
    runtime: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.n_items < 1:
            raise ValueError(f"a {self.kind} job needs at least one item; got {self.n_items}")
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1; got {self.shard_size}")

    @property
    def n_shards(self) -> int:
        return -(-self.n_items // self.shard_size)

    def items(self, shard: int) -> range:
        return range(shard * self.shard_size, min(self.n_items, (shard + 1) * self.shard_size))

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "config": self.config, "n_items": self.n_items, "shard_size": self.shard_size}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return (out.stdout.strip() or None) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str]:
    import numpy
    import torch

    import gradsum

    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
                "gradsum": gradsum.__version__}
    for name in ("torchvision", "pandas", "pyarrow"):
        versions[name] = __import__(name).__version__  # all are dependencies
    return versions


def manifest_for(job: Job) -> dict[str, Any]:
    return {
        **job.identity(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "git_commit": _git_commit(),
        "platform": platform.platform(),
        "runtime": job.runtime,
    }


def write_table(path: str | Path, frame: pd.DataFrame, stamp: dict[str, str] | None = None) -> Path:
    """Parquet, written atomically; `stamp` goes into the file's key-value metadata (a shard
    records the job it belongs to and the items it holds)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if stamp:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               **{f"gradsum.{k}".encode(): v.encode() for k, v in stamp.items()}})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return write_bytes(path, buf.getvalue())


def _job_digest(job: Job) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(job.identity(), sort_keys=True, default=str).encode()).hexdigest()[:16]


def _shard_stamp(job: Job, k: int) -> dict[str, str]:
    items = job.items(k)
    return {"job": _job_digest(job), "items": f"{items.start}-{items.stop}"}


def _verify_shard(path: Path, job: Job, k: int) -> bool:
    """True when the shard on disk is the one this job writes at position k; False when it is
    unreadable (a damaged file: recomputed); RunFolderError when it is another job's shard or
    holds other items (copied over, or from another shard size)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception:
        path.unlink(missing_ok=True)
        return False
    found = {k.decode()[len("gradsum."):]: v.decode() for k, v in meta.items() if k.startswith(b"gradsum.")}
    expected = _shard_stamp(job, k)
    if found != expected:
        what = ("was written by another job" if found.get("job") != expected["job"]
                else f"holds items {found.get('items')}, not {expected['items']}")
        raise RunFolderError(f"shard {path} {what}; it does not belong in this run folder: delete it (it will "
                             "be recomputed) or pass --overwrite")
    return True


def read_table(path: str | Path) -> pd.DataFrame:
    import pandas as pd

    return pd.read_parquet(path)


def _check_manifest(out: Path, job: Job, overwrite: bool) -> None:
    path = out / "manifest.json"
    manifests: dict[str, Any] = {}
    problem = None
    if path.is_file():
        try:
            manifests = json.loads(path.read_text())
            if not isinstance(manifests, dict):
                raise ValueError("not a JSON object")
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
            manifests, problem = {}, f"is unreadable ({str(exc).splitlines()[0]})"
    else:
        problem = "is missing"
    shards = sorted((out / "shards").glob(f"{job.kind}_*.parquet"))
    if problem is not None and shards:  # shards that no manifest vouches for: never mixed in
        if not overwrite:
            raise RunFolderError(
                f"run folder {out} holds {len(shards)} {job.kind} shard(s) but its manifest.json {problem}, so "
                f"nothing says which job wrote them; delete {out / 'shards'} or pass --overwrite"
            )
        for old in shards:
            old.unlink()
    existing = manifests.get("jobs", {}).get(job.kind)
    if existing is not None:
        same = json.loads(json.dumps(job.identity(), default=str)) == {k: existing.get(k) for k in job.identity()}
        if not same and not overwrite:
            raise RunFolderError(
                f"run folder {out} already holds a different {job.kind} job (other settings); "
                "choose a new --out folder or pass --overwrite"
            )
        if not same:
            for old in (out / "shards").glob(f"{job.kind}_*.parquet"):
                old.unlink()
            existing = None
    if existing is None:
        manifests.setdefault("jobs", {})[job.kind] = manifest_for(job)
        write_json(path, manifests)


def run_sharded(
    out: str | Path,
    job: Job,
    compute: Callable[[range], pd.DataFrame],
    *,
    engine: Engine | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Run `compute(items)` for every shard not yet on disk, then merge all shards (in shard
    order) into `<out>/<kind>.parquet` and return it."""
    import pandas as pd

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_manifest(out, job, overwrite)
    shard_dir = out / "shards"
    remove_partial_files(shard_dir)  # what a killed run was writing
    remove_partial_files(out)

    def shard_path(k: int) -> Path:
        return shard_dir / f"{job.kind}_{k:05d}.parquet"

    todo = [k for k in range(job.n_shards) if not (shard_path(k).is_file() and _verify_shard(shard_path(k), job, k))]
    done_items = sum(len(job.items(k)) for k in range(job.n_shards) if k not in todo)
    if progress is not None:
        progress(done_items, job.n_items)
    engine = engine or LocalEngine()
    for k, frame in engine.map(lambda k: compute(job.items(k)), todo):
        write_table(shard_path(k), frame, _shard_stamp(job, k))
        done_items += len(job.items(k))
        if progress is not None:
            progress(done_items, job.n_items)
    merged = pd.concat([read_table(shard_path(k)) for k in range(job.n_shards)], ignore_index=True)
    write_table(out / f"{job.kind}.parquet", merged)
    return merged
