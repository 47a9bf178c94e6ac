"""Engines that run a sharded job's tasks: in this process, or on a Ray cluster.

An engine receives `task(k) -> result` (self-contained: it closes over the model and the
dataset) and the shard indices still to compute, and yields `(k, result)` as shards finish,
in any order, each shard exactly once. The driver (`run_sharded`) writes every result, so a
distributed engine never touches the run folder.
"""
from __future__ import annotations

import math
import os
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

__all__ = ["Engine", "LocalEngine", "RayEngine", "engine_for", "ENGINES"]

T = TypeVar("T")

ENGINES = ("local", "ray")
_NEEDS_RAY = "the Ray engine needs Ray: pip install gradsum[ray]"
_IDLE: weakref.WeakSet[RayEngine] = weakref.WeakSet()  # engines whose workers wait for their next job


class Engine(Protocol):
    """Runs shard tasks and yields (shard index, result) as they finish. The local engine runs
    them in this process; a distributed engine can run them elsewhere as long as each task is
    self-contained."""

    name: str

    def map(self, task: Callable[[int], T], shards: Sequence[int]) -> Iterator[tuple[int, T]]: ...


class LocalEngine:
    """In-process, one shard after the other."""

    name = "local"

    def map(self, task: Callable[[int], T], shards: Sequence[int]) -> Iterator[tuple[int, T]]:
        for k in shards:
            yield k, task(k)


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # optional extra
        raise ImportError(_NEEDS_RAY) from exc
    return ray


class _ShardWorker:
    """Body of the Ray actor: loads a task once (its model and dataset are deserialised once per
    worker and job), then runs shards on request. The worker process outlives one task, so an
    evaluation of several methods starts its workers once."""

    def __init__(self, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self._task: Any = None
        self._error: BaseException | None = None
        self._serial = -1

    def load(self, serial: int, payload: bytes) -> None:
        from ray import cloudpickle

        self._task, self._error, self._serial = None, None, serial
        try:
            self._task = cloudpickle.loads(payload)
        except Exception as exc:  # reported by every run() of this task, with its cause
            self._error = exc

    def unload(self) -> None:
        self._task, self._error, self._serial = None, None, -1

    def run(self, serial: int, k: int) -> Any:
        if serial != self._serial:
            raise RuntimeError(f"RayEngine: a worker holds task {self._serial} but was sent shard {k} of task "
                               f"{serial}")
        if self._error is not None:
            raise RuntimeError(f"RayEngine: a worker could not load the task ({type(self._error).__name__}: "
                               f"{self._error}); every worker needs gradsum and the modules the model and the "
                               "dataset come from, and the data at the same paths") from self._error
        return self._task(k)


def _check_number(value: Any, what: str, option: str, *, zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value >= 0 if zero else value > 0)
    if not ok:
        expected = "a number >= 0" if zero else "a positive number"
        raise ValueError(f"RayEngine: {what} ({option}) must be {expected}; got {value!r}")


class RayEngine:
    """Shards as calls on Ray actors (Moritz et al. 2018, "Ray: a distributed framework for
    emerging AI applications"). One actor per worker; for each job the task is cloudpickled and
    `ray.put` once, and each actor deserialises it once (the model and the dataset are loaded
    once per worker), then is kept busy with one shard after another; results come back to the
    driver as they finish. A shard whose worker dies (process killed, out of memory, node lost)
    is resubmitted to a fresh actor, at most `max_retries` times; each shard is yielded once, so
    nothing is duplicated. An exception raised by the task itself is raised, not retried.

    address: None — join the cluster in $RAY_ADDRESS if set, else start a local Ray; "local" —
    start a local Ray (num_cpus = workers x cpus_per_worker, or every core); "auto" — join the
    running cluster on this machine; "ray://HOST:PORT" — a Ray client connection. Ray is
    initialised only if it is not already (`init_options` go to `ray.init`); `close()` stops the
    workers and shuts down only a Ray this engine started. workers: actors to start (default:
    as many as the cluster's CPUs allow, or its GPUs when gpus_per_worker > 0; never more than
    the shards to run). Each actor reserves cpus_per_worker CPUs (torch uses as many threads)
    and gpus_per_worker GPUs (Ray sets CUDA_VISIBLE_DEVICES). Results equal the local engine's:
    the shards and the task are the same, and each task depends only on its items.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        gpus_per_worker: float = 0,
        cpus_per_worker: float = 1,
        max_retries: int = 2,
        init_options: dict[str, Any] | None = None,
    ) -> None:
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
            raise ValueError(f"RayEngine: workers (--workers) must be a positive integer; got {workers!r}")
        _check_number(gpus_per_worker, "gpus_per_worker", "--gpus-per-worker", zero=True)
        _check_number(cpus_per_worker, "cpus_per_worker", "--cpus-per-worker")
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise ValueError(f"RayEngine: max_retries must be an integer >= 0; got {max_retries!r}")
        if address is not None and (not isinstance(address, str) or (
                address not in ("local", "auto") and not address.startswith("ray://") and ":" not in address)):
            raise ValueError(f"RayEngine: address (--ray-address) must be 'local', 'auto', 'ray://HOST:PORT' or the "
                             f"HOST:PORT of a running cluster's head; got {address!r}")
        self.address = address
        self.workers = workers
        self.gpus_per_worker = gpus_per_worker
        self.cpus_per_worker = cpus_per_worker
        self.max_retries = max_retries
        self.init_options = dict(init_options or {})
        self._started = False  # this engine called ray.init for a local Ray
        self._actors: list[Any] = []
        self._session: Any = None  # the Ray job the actors belong to
        self._serial = 0

    def __repr__(self) -> str:
        return (f"RayEngine(address={self.address!r}, workers={self.workers!r}, "
                f"gpus_per_worker={self.gpus_per_worker!r}, cpus_per_worker={self.cpus_per_worker!r})")

    # -- the Ray session and the workers -------------------------------------------------------
    def _connect(self) -> Any:
        ray = _ray()
        if ray.is_initialized():
            return ray
        options: dict[str, Any] = {"logging_level": "WARNING"}
        address = self.address or os.environ.get("RAY_ADDRESS") or "local"
        if address == "local":  # a cluster that is joined has its own resources and dashboard
            cpus = self.workers * self.cpus_per_worker if self.workers else os.cpu_count() or 1
            options.update(num_cpus=max(1, math.ceil(cpus)), include_dashboard=False)
        options.update(self.init_options)
        ray.init(address=address, **options)
        self._started = address == "local"
        return ray

    def close(self) -> None:
        """Stop this engine's workers; shut down the local Ray it started (a cluster it joined is
        left running)."""
        self._stop_workers()
        if self._started:
            ray = _ray()
            if ray.is_initialized():
                ray.shutdown()
            self._started = False

    def _stop_workers(self) -> None:
        _IDLE.discard(self)
        if self._actors:
            ray = _ray()
            if ray.is_initialized() and self._pool(ray):
                self._release(ray)
            self._actors = []

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _n_workers(self, ray: Any, n_shards: int) -> int:
        if self.workers is not None:
            n = self.workers
        else:
            resources = ray.cluster_resources()
            if self.gpus_per_worker > 0:
                n = int(resources.get("GPU", 0) // self.gpus_per_worker)
                if n < 1:
                    raise ValueError(f"RayEngine: the Ray cluster has {resources.get('GPU', 0):g} GPU(s), fewer than "
                                     f"--gpus-per-worker {self.gpus_per_worker:g}; add GPU nodes or lower "
                                     "--gpus-per-worker (0 runs on CPUs)")
            else:
                n = max(1, int(resources.get("CPU", 1) // self.cpus_per_worker))
        return max(1, min(n, n_shards))

    def _pool(self, ray: Any) -> list[Any]:
        """The actors this engine started in the current Ray session (stale handles dropped)."""
        context = ray.get_runtime_context()
        session = (context.get_node_id(), context.get_job_id())  # a new local Ray may reuse the job id
        if self._session != session:
            self._actors, self._session = [], session
        return self._actors

    def _spawn(self, ray: Any) -> Any:
        actor_class = ray.remote(num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker,
                                 max_restarts=0, max_task_retries=0)(_ShardWorker)
        return actor_class.remote(max(1, int(self.cpus_per_worker)))

    def _release(self, ray: Any) -> None:
        for actor in self._actors:
            ray.kill(actor, no_restart=True)
        self._actors = []

    # -- the engine ----------------------------------------------------------------------------
    def map(self, task: Callable[[int], T], shards: Sequence[int]) -> Iterator[tuple[int, T]]:
        shards = list(shards)
        if not shards:
            return
        ray = self._connect()
        from ray import cloudpickle
        from ray.exceptions import NodeDiedError, ObjectLostError, RayActorError, WorkerCrashedError

        lost = (RayActorError, WorkerCrashedError, ObjectLostError, NodeDiedError)
        _IDLE.discard(self)
        actors = self._pool(ray)
        n = self._n_workers(ray, len(shards))
        free = ray.available_resources()
        missing = max(0, n - len(actors))
        if (free.get("CPU", 0) < missing * self.cpus_per_worker or free.get("GPU", 0) < missing * self.gpus_per_worker):
            for other in list(_IDLE):  # other engines' idle workers hold the CPUs/GPUs these need
                other._stop_workers()
        actors.extend(self._spawn(ray) for _ in range(n - len(actors)))
        self._serial += 1
        serial = self._serial
        payload = ray.put(cloudpickle.dumps(task))  # once; each worker fetches it once
        todo = deque(shards)
        failures: dict[int, int] = {}  # shard -> times its worker died under it
        deaths = [0] * n  # per slot: workers that died while loading the task
        # ref -> (shard, actor slot); shard None: the actor's `load` call. Shards go only to an actor
        # whose load has finished, so an actor still waiting for resources holds none back.
        running: dict[Any, tuple[int | None, int]] = {}

        def load(slot: int) -> None:
            running[actors[slot].load.remote(serial, payload)] = (None, slot)

        def submit(slot: int) -> None:
            if todo:
                k = todo.popleft()
                running[actors[slot].run.remote(serial, k)] = (k, slot)

        def replace(slot: int) -> None:
            ray.kill(actors[slot], no_restart=True)
            actors[slot] = self._spawn(ray)  # a fresh worker, which loads the task again
            load(slot)

        finished = False
        try:
            for slot in range(n):
                load(slot)  # an actor runs one caller's calls in order: load, then shards
            done: set[int] = set()
            while todo or any(k is not None for k, _ in running.values()):
                ready, _ = ray.wait(list(running), num_returns=1)
                k, slot = running.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except lost as exc:
                    why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    if k is None:
                        deaths[slot] += 1
                        if deaths[slot] > self.max_retries:
                            raise RuntimeError(f"RayEngine: {deaths[slot]} workers died while loading the task "
                                               f"({why}); check their memory (the model and the dataset are loaded "
                                               "in each) and the worker logs (`ray logs`)") from exc
                    else:
                        failures[k] = failures.get(k, 0) + 1
                        if failures[k] > self.max_retries:
                            raise RuntimeError(
                                f"RayEngine: shard {k} was lost {failures[k]} times (its worker died: {why}); giving "
                                f"up after max_retries={self.max_retries}. Check the worker logs (`ray logs`), its "
                                "memory and its GPU") from exc
                        todo.appendleft(k)
                    replace(slot)
                    continue
                submit(slot)  # keep the actor busy while the driver writes this shard
                if k is not None and k not in done:
                    done.add(k)
                    yield k, result
            finished = True
        finally:
            if finished:  # idle workers stay for this engine's next job, without this one's model and data
                for actor in actors[:n]:
                    actor.unload.remote()
                _IDLE.add(self)
            else:  # failed, or abandoned by the caller: the workers go, their running shards with them
                self._release(ray)


def engine_for(name: str, address: str | None = None, workers: int | None = None,
               gpus_per_worker: float = 0) -> Engine:
    """The engine named on the command line: "local" (this process) or "ray" (`RayEngine`)."""
    if name not in ENGINES:
        raise ValueError(f"--engine must be one of {', '.join(ENGINES)}; got {name!r}")
    if name == "local":
        unused = [option for option, value, default in (("--ray-address", address, None), ("--workers", workers, None),
                                                        ("--gpus-per-worker", gpus_per_worker, 0)) if value != default]
        if unused:
            raise ValueError(f"{', '.join(unused)} only apply to --engine ray; got --engine local. Add --engine ray, "
                             "or drop them")
        return LocalEngine()
    return RayEngine(address=address, workers=workers, gpus_per_worker=gpus_per_worker)
