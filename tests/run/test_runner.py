"""The sharded runner: atomic shards, resume after SIGKILL with identical tables."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from gradsum.run import Job, RunFolderError, read_table, run_sharded

SCRIPT = textwrap.dedent('''
    import sys, time, torch
    from torch import nn
    from gradsum.data.labels import Label, LabelTable
    from gradsum.data.samples import Sample
    from gradsum.run import profile_job

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
        out, delay = sys.argv[1], float(sys.argv[2])
        profile_job(model(), Slow(delay), out, methods=["gradcam", "layercam"], layer="1", baseline=2,
                    shard_size=4, batch_size=2, config={"test": "kill"})
''')


def _run(script: Path, out: Path, delay: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), str(out), str(delay)])


def test_sigkill_then_rerun_gives_the_uninterrupted_tables(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    reference = tmp_path / "reference"
    assert _run(script, reference, 0.0).wait(timeout=300) == 0

    interrupted = tmp_path / "interrupted"
    proc = _run(script, interrupted, 0.05)  # 4 images x 3 models per shard: ~0.6 s per shard
    shard_dir = interrupted / "shards"
    deadline = time.time() + 240
    while time.time() < deadline and not list(shard_dir.glob("profile_*.parquet")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    finished = sorted(p.name for p in shard_dir.glob("profile_*.parquet"))
    assert 1 <= len(finished) < 6, finished  # killed mid-run
    assert not (interrupted / "profile.parquet").exists()
    for shard in finished:
        read_table(shard_dir / shard)  # every finished shard is a complete Parquet file

    assert _run(script, interrupted, 0.0).wait(timeout=300) == 0
    for table in ("profile.parquet", "profile_images.parquet", "profile_summary.parquet", "baseline_summary.parquet"):
        pd.testing.assert_frame_equal(read_table(reference / table), read_table(interrupted / table))


def test_rerun_skips_finished_shards_and_refuses_a_different_job(tmp_path):
    calls = []

    def compute(items):
        calls.append(list(items))
        return pd.DataFrame({"item": list(items), "double": [2 * i for i in items]})

    job = Job("toy", {"a": 1}, n_items=10, shard_size=4)
    first = run_sharded(tmp_path, job, compute)
    assert first["item"].tolist() == list(range(10)) and len(calls) == 3
    (tmp_path / "shards" / "toy_00001.parquet").unlink()  # as if killed during shard 1
    again = run_sharded(tmp_path, job, compute)
    assert calls[-1] == [4, 5, 6, 7] and len(calls) == 4
    pd.testing.assert_frame_equal(first, again)
    with pytest.raises(RunFolderError, match="different toy job"):
        run_sharded(tmp_path, Job("toy", {"a": 2}, n_items=10, shard_size=4), compute)
    other = run_sharded(tmp_path, Job("toy", {"a": 2}, n_items=10, shard_size=4), compute, overwrite=True)
    assert len(other) == 10 and len(calls) == 7
    with pytest.raises(ValueError, match="at least one item"):
        Job("toy", {}, n_items=0)


def _toy(calls):
    def compute(items):
        calls.append(list(items))
        return pd.DataFrame({"item": list(items)})

    return compute


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_shards_without_a_readable_manifest_are_never_mixed_in(tmp_path, damage):
    calls: list = []
    job = Job("toy", {"seed": 1}, n_items=8, shard_size=4)
    run_sharded(tmp_path, job, _toy(calls))
    manifest = tmp_path / "manifest.json"
    if damage == "missing":
        manifest.unlink()
    else:
        manifest.write_text("{ not json")
    other = Job("toy", {"seed": 2}, n_items=8, shard_size=4)
    word = "missing" if damage == "missing" else "unreadable"
    with pytest.raises(RunFolderError, match=rf"holds 2 toy shard\(s\) but its manifest.json is {word}"):
        run_sharded(tmp_path, other, _toy(calls))
    assert len(calls) == 2
    again = run_sharded(tmp_path, other, _toy(calls), overwrite=True)  # recomputed from scratch
    assert len(again) == 8 and len(calls) == 4


def test_leftover_temporary_files_are_removed_on_resume(tmp_path):
    calls: list = []
    job = Job("toy", {}, n_items=8, shard_size=4)
    run_sharded(tmp_path, job, _toy(calls))
    leftover = tmp_path / "shards" / ".toy_00001.parquet.abc123.tmp"
    leftover.write_bytes(b"half a shard")
    run_sharded(tmp_path, job, _toy(calls))
    assert not leftover.exists() and len(calls) == 2


def test_batch_size_is_part_of_the_profile_job(tmp_path):
    import torch
    from torch import nn

    from gradsum.data import RoadScenes
    from gradsum.run import profile_job

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 2)).eval()
    data = RoadScenes(4, size=(16, 32), seed=0, task="pothole")
    profile_job(model, data, tmp_path, layer="1", batch_size=2)
    with pytest.raises(RunFolderError, match="different profile job"):
        profile_job(model, data, tmp_path, layer="1", batch_size=4)


def test_shards_are_verified_on_resume(tmp_path):
    import shutil

    calls: list = []
    job = Job("toy", {"seed": 1}, n_items=12, shard_size=4)
    first = run_sharded(tmp_path, job, _toy(calls))
    shards = tmp_path / "shards"
    shards.joinpath("toy_00001.parquet").write_bytes(b"PAR1 damaged")  # corrupt: recomputed
    again = run_sharded(tmp_path, job, _toy(calls))
    assert calls[-1] == [4, 5, 6, 7] and len(calls) == 4
    pd.testing.assert_frame_equal(first, again)
    shutil.copy(shards / "toy_00000.parquet", shards / "toy_00002.parquet")  # a valid shard copied over another
    with pytest.raises(RunFolderError, match="holds items 0-4, not 8-12"):
        run_sharded(tmp_path, job, _toy(calls))
    foreign = tmp_path / "other"
    run_sharded(foreign, Job("toy", {"seed": 2}, n_items=12, shard_size=4), _toy(calls))
    shutil.copy(foreign / "shards" / "toy_00002.parquet", shards / "toy_00002.parquet")  # another job's shard
    with pytest.raises(RunFolderError, match="was written by another job"):
        run_sharded(tmp_path, job, _toy(calls))
