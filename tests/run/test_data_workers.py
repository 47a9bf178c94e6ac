"""Worker processes read the samples (a torch DataLoader): the results do not depend on how
many there are."""
from __future__ import annotations

import pandas as pd
import torch

import gradsum as gs
from gradsum.data.samples import batches_by_size
from mixed_data import make_voc
from testmodels import voc_net


def test_gradsum_with_two_workers_equals_the_main_process(tmp_path):
    data = gs.data.load_dataset(f"voc:{make_voc(tmp_path / 'voc')}:split=test")  # 5 photos of 4 sizes
    model = voc_net(20)
    kwargs = dict(method=["gradcam", "saliency"], layer="2", target="label", batch_size=2, baseline=1)
    alone = gs.gradsum(model, data, **kwargs)
    workers = gs.gradsum(model, data, num_workers=2, **kwargs)
    pd.testing.assert_frame_equal(alone.images, workers.images)
    pd.testing.assert_frame_equal(alone.baseline, workers.baseline)
    bench = [gs.metrics.benchmark(model, data, ["gradcam"], ["ebpg", "drop"], layer="2", batch_size=2,
                                  num_workers=n).per_image for n in (0, 2)]
    pd.testing.assert_frame_equal(*bench)


def test_batches_by_size_groups_sizes_and_bounds_what_waits():
    class Mixed:
        def __len__(self):
            return 9

        def __getitem__(self, i):
            side = (8, 12, 16)[i % 3]
            return gs.data.Sample(image=torch.full((3, side, side), i / 10), id=str(i))

    seen = list(batches_by_size(Mixed(), range(9), batch_size=2, max_pending=3))
    assert sorted(p for positions, _ in seen for p in positions) == list(range(9))
    for positions, batch in seen:
        assert len({tuple(batch.images.shape[-2:])}) == 1 and len(positions) <= 2
        assert batch.ids == [str(p) for p in positions]
    one_size = list(batches_by_size([gs.data.Sample(image=torch.zeros(3, 4, 4), id=str(i)) for i in range(5)],
                                    range(5), batch_size=2))
    assert [positions for positions, _ in one_size] == [[0, 1], [2, 3], [4]]
