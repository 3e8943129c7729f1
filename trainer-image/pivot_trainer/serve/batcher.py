"""Dynamic batching: every request's images go into one queue; one task forms batches.

A batch closes when it holds max_batch_size images or when max_delay has passed since its
first image was queued (Triton's and TorchServe's rule): the delay is counted from arrival, so
images that queued while the model was busy run as soon as it is free. Images of one shape run
together; other shapes run separately, in order of arrival. The model runs on one inference
thread (torch releases the GIL in its kernels), so the event loop keeps reading requests and
filling the next batch meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from pivot_trainer.serve.metrics import ServeMetrics

# The model thread's results are defined here, not in model.py, so that the event loop's
# modules import no torch (the port opens before torch has loaded).


@dataclass
class Prediction:
    shape: tuple[int, int]
    candidates: list[dict[str, Any]]
    mask: np.ndarray | None = None  # (H, W) uint8, 255 = probability 1


@dataclass
class BatchResult:
    predictions: list[Prediction]
    inference_s: float
    batch_size: int  # images the model ran on (padding excluded)


@dataclass
class Done:
    """One image's answer with how it was served."""

    prediction: Prediction
    queue_s: float  # queued to its batch's start
    inference_s: float  # its batch's model run
    batch_size: int


@dataclass
class _Job:
    image: np.ndarray
    want_mask: bool
    future: asyncio.Future[Done]
    queued: float  # time.perf_counter() at submit
    deadline: float  # loop time by which its batch must start


RunBatch = Callable[[list[np.ndarray], bool], BatchResult]


class Batcher:
    def __init__(
        self,
        run_batch: RunBatch,
        executor: Executor,
        *,
        max_batch_size: int,
        max_delay_s: float,
        metrics: ServeMetrics,
    ) -> None:
        self._run_batch = run_batch
        self._executor = executor
        self._max = max_batch_size
        self._delay = max_delay_s
        self._metrics = metrics
        self._queue: deque[_Job] = deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="pivot-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def submit(self, image: np.ndarray, want_mask: bool) -> asyncio.Future[Done]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Done] = loop.create_future()
        job = _Job(image, want_mask, future, time.perf_counter(), loop.time() + self._delay)
        self._queue.append(job)
        self._metrics.queue_depth.set(len(self._queue))
        self._arrived.set()
        return future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            deadline = self._queue[0].deadline
            while len(self._queue) < self._max and (left := deadline - loop.time()) > 0:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except TimeoutError:
                    break
            jobs = [self._queue.popleft() for _ in range(min(self._max, len(self._queue)))]
            self._metrics.queue_depth.set(len(self._queue))
            groups: dict[tuple[int, ...], list[_Job]] = {}
            for job in jobs:
                if not job.future.done():  # a cancelled request needs no answer
                    groups.setdefault(job.image.shape, []).append(job)
            for group in groups.values():
                await self._run(loop, group)

    async def _run(self, loop: asyncio.AbstractEventLoop, group: list[_Job]) -> None:
        started = time.perf_counter()
        images = [job.image for job in group]
        want_mask = any(job.want_mask for job in group)
        try:
            result = await loop.run_in_executor(self._executor, self._run_batch, images, want_mask)
        except Exception as exc:  # e.g. out of memory: these requests fail, the server goes on
            for job in group:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        self._metrics.batch_size.observe(result.batch_size)
        self._metrics.inference.observe(result.inference_s)
        self._metrics.images.inc(result.batch_size)
        for job, prediction in zip(group, result.predictions, strict=True):
            if not job.want_mask:
                prediction.mask = None
            if not job.future.done():
                job.future.set_result(
                    Done(prediction, started - job.queued, result.inference_s, result.batch_size)
                )
