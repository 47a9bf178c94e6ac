"""Engines: one GradSUM profile job (`gs.run.profile_job`, Grad-CAM, PilotNet at 66x200 on road
scenes, written to a run folder) with the local engine and with Ray (1 and 2 workers on a
local Ray started here). Each engine runs the job once to warm up (Ray: its workers start and
import torch), then the runs are timed in turns and medians reported, each into a fresh folder.
Ray's start-up and the first run's worker start are printed apart. Every run's tables are
checked equal to the local engine's. The local engine runs with torch's default threads and
with one (a Ray worker uses cpus_per_worker = 1 thread), since that alone changes the speed.

    python benchmarks/bench_engines.py                      # 512 scenes, shards of 64, 3 repeats
    python benchmarks/bench_engines.py --n 256 --repeats 1 --workers 1 2 4
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd
import torch
from timing import interleaved_medians

import gradsum as gs
from gradsum.run import LocalEngine, profile_job, read_table
from gradsum.run.engines import RayEngine


class ThreadedLocal(LocalEngine):
    """The local engine with torch limited to `threads` intra-op threads while it runs (a Ray
    worker runs with cpus_per_worker = 1 thread)."""

    def __init__(self, threads: int):
        self.threads = threads

    def map(self, task, shards):
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            yield from super().map(task, shards)
        finally:
            torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    import ray

    cores = os.cpu_count() or 1
    torch.manual_seed(0)
    model = gs.models.build("pilotnet").eval()
    layer = gs.models.default_layer_for(model)
    data = gs.data.RoadScenes(args.n, size=(66, 200), seed=0, task="steering")
    root = Path(tempfile.mkdtemp(prefix="bench_engines_"))
    runs = iter(range(10**6))

    def job(engine):
        def run() -> Path:
            out = root / f"run{next(runs)}"
            profile_job(model, data, out, methods=["gradcam"], layer=layer, batch_size=args.batch_size,
                        shard_size=args.shard_size, engine=engine)
            return out

        return run

    start = time.perf_counter()
    # one logical CPU per worker of every Ray engine, so that each keeps its workers between runs
    # an untrained PilotNet gives some blank maps: their warnings are not what is measured here
    warnings.simplefilter("ignore")
    ray.init(address="local", num_cpus=sum(args.workers), include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore"}})
    ray_start = time.perf_counter() - start
    threads = torch.get_num_threads()
    engines = {f"local, {threads} threads": LocalEngine(), "local, 1 thread": ThreadedLocal(1),
               **{f"ray, {w} worker{'s' * (w > 1)}": RayEngine(workers=w) for w in args.workers}}
    reference = job(LocalEngine())()
    first = {}
    for name, engine in engines.items():
        start = time.perf_counter()
        out = job(engine)()
        first[name] = time.perf_counter() - start
        for table in ("profile.parquet", "profile_images.parquet"):
            pd.testing.assert_frame_equal(read_table(reference / table), read_table(out / table))
    seconds = interleaved_medians([job(engine) for engine in engines.values()], args.repeats)
    for engine in engines.values():
        if isinstance(engine, RayEngine):
            engine.close()
    ray.shutdown()
    shutil.rmtree(root, ignore_errors=True)

    print(f"# profile_job: {args.n} road scenes (66x200, PilotNet, Grad-CAM on {layer}), batch {args.batch_size}, "
          f"shards of {args.shard_size}; {cores} CPU cores, torch {torch.__version__}, ray {ray.__version__}; "
          f"median of {args.repeats}")
    print(f"Ray start (ray.init, local): {ray_start:.1f} s; tables equal to the local engine's: yes")
    local = seconds[0]
    print(f"{'engine':<20}{'first run s':>12}{'run s':>9}{'images/s':>10}{'vs local':>10}")
    for (name, s) in zip(engines, seconds, strict=True):
        print(f"{name:<20}{first[name]:>12.2f}{s:>9.2f}{args.n / s:>10.0f}{local / s:>10.2f}")


if __name__ == "__main__":
    main()
