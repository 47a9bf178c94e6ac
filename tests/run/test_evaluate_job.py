"""The resumable evaluation: SIGKILL at several moments, then the same command, gives the
tables of an uninterrupted run; each method is its own job in the run folder."""
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

from gradsum.data.samples import Sample
from gradsum.run import RunFolderError, evaluate_job, read_table

SCRIPT = textwrap.dedent('''
    import sys, time, torch
    from torch import nn
    from gradsum.data.samples import Sample
    from gradsum.run import evaluate_job

    class Slow(torch.utils.data.Dataset):
        def __init__(self, delay):
            self.delay = delay
            self.images = torch.rand(24, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        def __len__(self):
            return 24
        def __getitem__(self, i):
            time.sleep(self.delay)
            box = torch.tensor([[i % 8, 2.0, i % 8 + 6, 12.0]])
            return Sample(image=self.images[i], id=f"s{i:02d}", boxes=box)

    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(4, 3)).eval()

    if __name__ == "__main__":
        out, delay = sys.argv[1], float(sys.argv[2])
        evaluate_job(model(), Slow(delay), out, methods=["gradcam", "rise"], layer="1",
                     metrics=["ebpg", "drop", "deletion"], method_options={"rise": {"n_masks": 64}},
                     shard_size=4, batch_size=2, config={"test": "kill"})
''')
TABLES = ("evaluate-gradcam.parquet", "evaluate-rise.parquet")


def _run(script: Path, out: Path, delay: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), str(out), str(delay)])


def _without_timing(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns="seconds")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    script = root / "job.py"
    script.write_text(SCRIPT)
    assert _run(script, root / "reference", 0.0).wait(timeout=300) == 0
    return script, root / "reference"


@pytest.mark.parametrize("moment", ["first shard", "second method"])
def test_sigkill_then_rerun_gives_the_uninterrupted_tables(reference, tmp_path, moment):
    script, reference_dir = reference
    out = tmp_path / "interrupted"
    proc = _run(script, out, 0.04)  # 4 images per shard: ~0.2 s of reading per shard
    pattern = "evaluate-gradcam_*.parquet" if moment == "first shard" else "evaluate-rise_*.parquet"
    deadline = time.time() + 240
    while time.time() < deadline and not list((out / "shards").glob(pattern)):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    written = sorted(p.name for p in (out / "shards").glob("*.parquet"))
    assert 1 <= len(written) < 12, written  # killed mid-run
    assert (out / "evaluate-gradcam.parquet").exists() == (moment == "second method")
    assert not (out / "evaluate-rise.parquet").exists()
    assert _run(script, out, 0.0).wait(timeout=300) == 0
    for table in TABLES:
        pd.testing.assert_frame_equal(_without_timing(read_table(reference_dir / table)),
                                      _without_timing(read_table(out / table)))


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3)).eval()


class _Counting(torch.utils.data.Dataset):
    def __init__(self, n: int = 6):
        self.images = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(1))
        self.reads = 0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        self.reads += 1
        return Sample(image=self.images[i], id=f"s{i}", boxes=torch.tensor([[2.0, 2.0, 10.0, 10.0]]))


def test_each_method_is_its_own_job(tmp_path):
    data = _Counting()
    first = evaluate_job(_model(), data, tmp_path, methods=["gradcam"], layer="1", metrics=["ebpg", "drop"],
                         shard_size=4, batch_size=2)
    reads = data.reads
    # adding a method computes only that method; the first one is read back from its shards
    both = evaluate_job(_model(), data, tmp_path, methods=["gradcam", "saliency"], layer="1",
                        metrics=["ebpg", "drop"], shard_size=4, batch_size=2)
    assert data.reads == 2 * reads
    pd.testing.assert_frame_equal(first.table().drop(columns="seconds_per_image"),
                                  both.table().loc[["gradcam"]].drop(columns="seconds_per_image"))
    # another option, metric or batch size for a method already in the folder is another job
    with pytest.raises(RunFolderError, match="different evaluate-gradcam job"):
        evaluate_job(_model(), data, tmp_path, methods=["gradcam"], layer="1", metrics=["ebpg"],
                     shard_size=4, batch_size=2)
    with pytest.raises(RunFolderError, match="different evaluate-gradcam job"):
        evaluate_job(_model(), data, tmp_path, methods=["gradcam"], layer="1", metrics=["ebpg", "drop"],
                     shard_size=4, batch_size=3)
    with pytest.raises(RunFolderError, match="different evaluate-gradcam job"):
        evaluate_job(_model(), data, tmp_path, methods=["gradcam"], layer="1", metrics=["ebpg", "drop"],
                     method_options={"gradcam": {"fusion": "max"}}, shard_size=4, batch_size=2)


def test_benchmark_never_runs_more_than_batch_size_images_at_once():
    from gradsum.metrics import benchmark

    seen: list[int] = []

    def counting(model):
        def explain(x, target=None):
            seen.append(x.shape[0])
            return x.mean(dim=1)

        return explain

    x = torch.rand(10, 3, 16, 16)
    forwards: list[int] = []
    model = _model()
    model.register_forward_pre_hook(lambda module, args: forwards.append(args[0].shape[0]))
    result = benchmark(model, x, {"mean": counting}, ["drop", "deletion"], batch_size=4,
                       metric_options={"drop": {"batch_size": 4}, "deletion": {"step": 64, "batch_size": 4}})
    assert seen == [4, 4, 2] and max(forwards) <= 4
    assert result.cost.loc[0, "images"] == 10
