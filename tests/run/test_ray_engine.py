"""The Ray engine: the same tables as the local engine, a killed worker's shard retried once,
a killed driver resumed from the written shards. Ray runs locally, started by the test."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from gradsum.run import Job, LocalEngine, evaluate_job, profile_job, read_table, run_sharded
from gradsum.run.engines import RayEngine, engine_for


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray", reason="Ray is a dev extra: pip install gradsum[dev]")
    started = not ray.is_initialized()
    ray.init(address="local", num_cpus=2, include_dashboard=False, ignore_reinit_error=True, logging_level="WARNING")
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def engine(ray_session):
    with RayEngine(workers=2) as engine:  # its workers serve every test of this module
        yield engine
    assert ray_session.is_initialized()  # the engine joined a running Ray: close() left it running


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 2)).eval()


def _data():
    from gradsum.data import RoadScenes

    return RoadScenes(6, size=(16, 32), seed=0, task="pothole")


PROFILE_TABLES = ("profile.parquet", "profile_images.parquet", "profile_summary.parquet", "baseline_summary.parquet")


def test_profile_and_evaluate_on_ray_equal_the_local_engine(tmp_path, ray_session, engine):
    model, data = _model(), _data()
    settings = dict(methods=["gradcam", "layercam"], layer="1", baseline=1, shard_size=2, batch_size=2)
    profile_job(model, data, tmp_path / "local", engine=LocalEngine(), **settings)
    profile_job(model, data, tmp_path / "ray", engine=engine, **settings)
    assert len(list((tmp_path / "ray" / "shards").glob("profile_*.parquet"))) == 3
    for table in PROFILE_TABLES:
        pd.testing.assert_frame_equal(read_table(tmp_path / "local" / table), read_table(tmp_path / "ray" / table))

    settings = dict(methods=["gradcam", "saliency"], layer="1", metrics=["drop", "deletion"], shard_size=3,
                    batch_size=2)
    local = evaluate_job(model, data, tmp_path / "local", engine=LocalEngine(), **settings)
    remote = evaluate_job(model, data, tmp_path / "ray", engine=engine, **settings)
    for method in ("gradcam", "saliency"):
        name = f"evaluate-{method}.parquet"
        pd.testing.assert_frame_equal(read_table(tmp_path / "local" / name).drop(columns="seconds"),
                                      read_table(tmp_path / "ray" / name).drop(columns="seconds"))
    pd.testing.assert_frame_equal(local.per_image, remote.per_image)
    assert engine._started is False  # it joined the test's Ray (closing it leaves that Ray running)


def test_task_errors_are_raised_not_retried_and_idle_workers_make_room(tmp_path, engine):
    def compute(items):
        if items.start == 4:
            raise ValueError("bad item 4")
        return pd.DataFrame({"item": list(items)})

    assert engine._actors  # the module's engine: 2 idle workers hold both CPUs of the test's Ray
    second = RayEngine(workers=1)  # ...which it gives up when another engine starts a job
    with pytest.raises(ValueError, match="bad item 4"):
        run_sharded(tmp_path, Job("toy", {}, n_items=8, shard_size=4), compute, engine=second)
    assert not engine._actors and not second._actors  # a failed job stops its workers
    assert not (tmp_path / "shards" / "toy_00001.parquet").exists()


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    engine = RayEngine(workers=1)
    with pytest.raises(ImportError, match=r"pip install gradsum\[ray\]"):
        list(engine.map(lambda k: k, [0]))


def test_engine_for_names_the_option():
    assert isinstance(engine_for("local"), LocalEngine)
    ray = engine_for("ray", address="auto", workers=3, gpus_per_worker=0.5)
    assert isinstance(ray, RayEngine) and (ray.address, ray.workers, ray.gpus_per_worker) == ("auto", 3, 0.5)
    with pytest.raises(ValueError, match=r"--engine must be one of local, ray; got 'dask'"):
        engine_for("dask")
    with pytest.raises(ValueError, match=r"workers \(--workers\) must be a positive integer; got 0"):
        engine_for("ray", workers=0)
    with pytest.raises(ValueError, match=r"\(--gpus-per-worker\) must be a number >= 0; got -1"):
        engine_for("ray", gpus_per_worker=-1)
    with pytest.raises(ValueError, match=r"\(--ray-address\) must be 'local', 'auto', 'ray://HOST:PORT'"):
        engine_for("ray", address="cluster")
    with pytest.raises(ValueError, match=r"--workers only apply to --engine ray"):
        engine_for("local", workers=2)


# -- slow: processes killed during a run -------------------------------------------------------

DRIVER = textwrap.dedent('''
    import sys, time, torch
    from torch import nn
    from gradsum.data.labels import Label, LabelTable
    from gradsum.data.samples import Sample
    from gradsum.run import profile_job
    from gradsum.run.engines import RayEngine

    TABLE = LabelTable("two", [Label(0, "left", "L", 0, (1, 1, 1)), Label(1, "right", "R", 1, (2, 2, 2))])

    class Slow(torch.utils.data.Dataset):
        label_table = TABLE
        def __init__(self, delay):
            self.delay = delay
            self.images = torch.rand(24, 3, 16, 16, generator=torch.Generator().manual_seed(0))
            self.seg = torch.zeros(16, 16, dtype=torch.long)
            self.seg[:, 8:] = 1
        def __len__(self):
            return 24
        def __getitem__(self, i):
            time.sleep(self.delay)
            return Sample(image=self.images[i], id=f"s{i:02d}", segmentation=self.seg)

    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(4, 3)).eval()

    if __name__ == "__main__":
        out, delay, engine = sys.argv[1], float(sys.argv[2]), sys.argv[3]
        engine = RayEngine("local", workers=2) if engine == "ray" else None
        profile_job(model(), Slow(delay), out, methods=["gradcam", "layercam"], layer="1", baseline=2,
                    shard_size=4, batch_size=2, config={"test": "kill"}, engine=engine)
''')


def _driver(script: Path, out: Path, delay: float, engine: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), str(out), str(delay), engine],
                            start_new_session=True)  # its local Ray's processes are in its group


def _kill_group(proc: subprocess.Popen) -> None:
    import contextlib
    import os

    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.slow
def test_sigkill_of_the_driver_then_rerun_gives_the_local_tables(tmp_path):
    pytest.importorskip("ray")
    script = tmp_path / "job.py"
    script.write_text(DRIVER)
    reference = tmp_path / "reference"
    assert _driver(script, reference, 0.0, "local").wait(timeout=300) == 0

    interrupted = tmp_path / "interrupted"
    proc = _driver(script, interrupted, 0.1, "ray")  # ~1.2 s per shard and worker
    shard_dir = interrupted / "shards"
    deadline = time.time() + 240
    while time.time() < deadline and not list(shard_dir.glob("profile_*.parquet")) and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # the driver only; then its Ray goes too (as a killed job's would)
    proc.wait(timeout=30)
    _kill_group(proc)
    finished = sorted(p.name for p in shard_dir.glob("profile_*.parquet"))
    assert 1 <= len(finished) < 6, finished  # killed mid-run
    assert not (interrupted / "profile.parquet").exists()

    assert _driver(script, interrupted, 0.0, "ray").wait(timeout=300) == 0
    for table in PROFILE_TABLES:
        pd.testing.assert_frame_equal(read_table(reference / table), read_table(interrupted / table))


def _crash_once(marker: str, k_crash: int):
    def compute(items):
        import os

        k = items.start // 4
        if k == k_crash and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)  # the worker process dies mid-shard, like a SIGKILL or an OOM kill
        return pd.DataFrame({"item": list(items), "pid": [os.getpid()] * len(items)})

    return compute


@pytest.mark.slow
def test_a_worker_killed_during_a_shard_is_retried_and_nothing_is_duplicated(tmp_path, ray_session):
    marker = str(tmp_path / "crashed")
    job = Job("toy", {}, n_items=16, shard_size=4)
    merged = run_sharded(tmp_path / "run", job, _crash_once(marker, 1), engine=RayEngine(workers=2))
    assert Path(marker).exists()  # shard 1 did kill its worker
    assert merged["item"].tolist() == list(range(16))  # each item once, in order
    assert len(list((tmp_path / "run" / "shards").glob("toy_*.parquet"))) == 4


@pytest.mark.slow
def test_a_shard_that_keeps_killing_its_worker_fails_after_max_retries(tmp_path, ray_session):
    def compute(items):
        import os

        if items.start == 4:
            os._exit(1)
        return pd.DataFrame({"item": list(items)})

    with pytest.raises(RuntimeError, match=r"shard 1 was lost 2 times .* max_retries=1"):
        run_sharded(tmp_path, Job("toy", {}, n_items=8, shard_size=4), compute,
                    engine=RayEngine(workers=1, max_retries=1))


def test_the_cli_on_ray_writes_the_local_tables(ray_session, tmp_path):
    """`gradsum profile|evaluate ... --engine ray --workers 2` and `--engine local` give identical tables."""
    from typer.testing import CliRunner

    import gradsum as gs
    from gradsum.cli import app

    weights = tmp_path / "net.pt"  # one model for both runs (an untrained potholenet is drawn anew each time)
    torch.manual_seed(0)
    torch.save(gs.models.build("potholenet").state_dict(), weights)
    common = ["--model", "potholenet", "--weights", str(weights), "--data", "roads:6:task=pothole,size=32x64",
              "--batch-size", "2", "--shard-size", "2", "--data-workers", "0"]
    for command, extra, tables in (
            ("profile", ["--method", "gradcam,saliency", "--baseline", "1"], ["profile.parquet", "profile_images.parquet"]),
            ("evaluate", ["--methods", "gradcam,saliency", "--metrics", "ebpg,drop", "--target", "1"],
             ["evaluate-gradcam.parquet", "evaluate-saliency.parquet"])):
        for engine in ("local", "ray"):
            args = [command, *common, *extra, "--engine", engine, "--out", str(tmp_path / f"{command}-{engine}")]
            if engine == "ray":
                args += ["--workers", "2"]
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 0, result.output
        for table in tables:
            local, ray = (read_table(tmp_path / f"{command}-{e}" / table) for e in ("local", "ray"))
            if "seconds" in local.columns:
                local, ray = local.drop(columns="seconds"), ray.drop(columns="seconds")
            pd.testing.assert_frame_equal(local, ray)
    bad = CliRunner().invoke(app, ["profile", *common, "--workers", "2", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "--workers only apply to --engine ray" in bad.output
