"""Timing shared by the benchmarks: several functions timed in turns, medians reported."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_medians(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median seconds of each function, timed in turns (a, b, a, b, ...) after one warm-up
    each, so a slow spell of this shared machine hits every side alike."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return [statistics.median(bucket) for bucket in times]
