"""Serialise model calls through one thread and batch concurrent requests.

FunASR's ``generate()`` and SpeechBrain's interfaces are not thread-safe, and
on a 2-core host two concurrent forward passes only fight over the cores. So
every model call goes through one :class:`BatchWorker`: requests wait in a
bounded queue (overflow raises :class:`~services.common.errors.Overloaded`,
i.e. ``RESOURCE_EXHAUSTED``), the worker drains up to ``max_batch`` of them
(waiting at most ``max_wait_ms`` for company), drops the ones whose caller has
gone (cancelled) or whose deadline passed, and runs the rest as one call in a
single-thread executor, never on the event loop.

Usage::

    worker = BatchWorker("asr", engine.transcribe_batch, BatchOptions(max_batch=4))
    await worker.start()
    result = await worker.submit(request, deadline_s=time.monotonic() + 5)

A worker serving one engine that is built on that thread (emotion, speaker) wraps
it in :class:`BatchedModel`, which builds the engine once, also lazily on the
first request, and feeds it the batches::

    model = BatchedModel("emotion", build_engine, EmotionEngine.classify_batch, BatchOptions())
    await model.load()                      # before SERVING, or never (lazy)
    result = await model.submit(samples, deadline_s)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Generic, Hashable, Iterator, Sequence, TypeVar

from services.common.errors import DeadlineExceeded, NotReady, Overloaded
from services.common.metrics import MODEL_CALL_S, MODEL_LOADS, QUEUE_DEPTH, observe_model_compute

__all__ = ["BatchOptions", "BatchWorker", "BatchedModel", "chunked"]

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")
Engine = TypeVar("Engine")


def chunked(items: Sequence[In], size: int) -> Iterator[Sequence[In]]:
    """Consecutive slices of ``items``, each at most ``size`` long (itertools.batched from 3.12)."""
    for first in range(0, len(items), size):
        yield items[first:first + size]


@dataclass(frozen=True)
class BatchOptions:
    max_batch: int = 4
    """Most requests run in one model call (1 disables batching)."""
    max_wait_ms: int = 10
    """How long the first request of a batch waits for others to join."""
    max_queue: int = 16
    """Waiting requests beyond this are refused with RESOURCE_EXHAUSTED."""


@dataclass
class _Job(Generic[In, Out]):
    item: In
    future: asyncio.Future
    deadline_s: float | None  # time.monotonic() value


class BatchWorker(Generic[In, Out]):
    """One model, one thread, a bounded queue, batches grouped by ``key``.

    ``process_batch`` receives a list of items sharing one key and returns one
    result per item, in order; a result that is an ``Exception`` fails only its
    own request.
    """

    def __init__(self, name: str, process_batch: Callable[[list[In]], Sequence[Out | Exception]],
                 options: BatchOptions, key: Callable[[In], Hashable] = lambda _item: None,
                 measure: Callable[[In], tuple[str, float]] | None = None):
        self.name = name
        # item -> (model name, audio seconds): model calls are counted per model as compute
        # seconds and audio seconds (speech_model_*_seconds_total, their ratio the RTF).
        self._measure = measure
        self._process_batch = process_batch
        self._options = options
        self._key = key
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=options.max_queue)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-model")
        self._task: asyncio.Task | None = None
        self.calls = 0  # model calls made; read by tests and benchmarks

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"{self.name}-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def run_exclusive(self, fn: Callable[[], Out]) -> Out:
        """Run ``fn`` on the model thread (e.g. loading or warm-up)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    async def submit(self, item: In, deadline_s: float | None = None) -> Out:
        if self._task is None:
            await self.start()
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Job(item, future, deadline_s))
        except asyncio.QueueFull:
            raise Overloaded(
                f"{self.name} worker is busy ({self._options.max_queue} requests queued); "
                "retry later or add replicas") from None
        QUEUE_DEPTH.labels(self.name).set(self._queue.qsize())
        try:
            return await future
        except asyncio.CancelledError:
            future.cancel()  # the batcher skips cancelled jobs: a gone caller costs no compute
            raise

    async def _collect(self) -> list[_Job]:
        jobs = [await self._queue.get()]
        wait_until = time.monotonic() + self._options.max_wait_ms / 1000
        while len(jobs) < self._options.max_batch:
            remaining = wait_until - time.monotonic()
            try:
                if remaining <= 0:
                    jobs.append(self._queue.get_nowait())
                else:
                    jobs.append(await asyncio.wait_for(self._queue.get(), remaining))
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
        QUEUE_DEPTH.labels(self.name).set(self._queue.qsize())
        return jobs

    def _live(self, jobs: list[_Job]) -> list[_Job]:
        now = time.monotonic()
        live = []
        for job in jobs:
            if job.future.done():
                continue  # cancelled by its caller
            if job.deadline_s is not None and job.deadline_s <= now:
                job.future.set_exception(DeadlineExceeded(
                    f"{self.name}: deadline expired while queued; raise the client deadline"))
                continue
            live.append(job)
        return live

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = self._live(await self._collect())
            groups: dict[Hashable, list[_Job]] = defaultdict(list)
            for job in jobs:
                groups[self._key(job.item)].append(job)
            for group in groups.values():
                group = self._live(group)
                if not group:
                    continue
                started = time.monotonic()
                try:
                    results = await loop.run_in_executor(
                        self._executor, self._process_batch, [job.item for job in group])
                except Exception as exc:  # noqa: BLE001 - delivered to every caller
                    log.exception("%s: model call failed for a batch of %d", self.name, len(group))
                    results = [exc] * len(group)
                self.calls += 1
                elapsed_s = time.monotonic() - started
                MODEL_CALL_S.labels(self.name).observe(elapsed_s)
                if self._measure is not None:
                    measured = [self._measure(job.item) for job in group]
                    observe_model_compute(measured[0][0], elapsed_s, sum(audio_s for _, audio_s in measured))
                for job, result in zip(group, results):
                    if job.future.done():
                        continue
                    if isinstance(result, Exception):
                        job.future.set_exception(result)
                    else:
                        job.future.set_result(result)


class BatchedModel(Generic[Engine, In, Out]):
    """One engine behind one :class:`BatchWorker`, built once on the worker's model thread.

    ``build_engine`` (blocking: load and warm up) runs on the model thread the first
    time :meth:`load` is awaited, by the server before SERVING or, with lazy loading,
    by the first request; concurrent callers wait for that one load. A failed load
    is reported to those waiting as :class:`NotReady` and tried again by the next
    caller. ``process_batch(engine, items)`` is the engine's batch method.
    """

    def __init__(self, part: str, build_engine: Callable[[], Engine],
                 process_batch: Callable[[Engine, list[In]], Sequence[Out | Exception]],
                 options: BatchOptions, measure: Callable[[In], tuple[str, float]] | None = None):
        self.part = part
        self.engine: Engine | None = None
        self._build_engine = build_engine
        self._process_batch = process_batch
        self.worker: BatchWorker[In, Out] = BatchWorker(part, self._batch, options, measure=measure)
        self._loading: asyncio.Future | None = None

    def _batch(self, items: list[In]) -> Sequence[Out | Exception]:
        assert self.engine is not None  # submit() waits for load()
        return self._process_batch(self.engine, items)

    async def load(self) -> Engine:
        """The engine, built by the first caller; concurrent callers wait for the same load."""
        if self.engine is not None:
            return self.engine
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load())
        loading = self._loading
        try:
            # shield: a caller that gives up (deadline, cancel) must not cancel the load
            return await asyncio.shield(loading)
        except Exception as exc:
            if self._loading is loading:
                self._loading = None  # let a later request try again
            raise NotReady(f"{self.part} model failed to load ({exc}); see the worker log") from exc

    async def _load(self) -> Engine:
        started = time.monotonic()
        log.info("loading %s model", self.part)
        try:
            engine = await self.worker.run_exclusive(self._build_engine)
        except Exception:
            log.exception("loading the %s model failed", self.part)
            raise
        self.engine = engine
        MODEL_LOADS.labels(self.part).inc()
        log.info("%s model ready in %.1f s", self.part, time.monotonic() - started)
        return engine

    async def submit(self, item: In, deadline_s: float | None) -> Out:
        """One item's result, from a batch; loads the engine first if nobody has."""
        await self.load()
        return await self.worker.submit(item, deadline_s)

    async def stop(self) -> None:
        await self.worker.stop()
