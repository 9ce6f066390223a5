"""Dynamic batching: requests queue up and run together on one worker thread.

A batch starts when ``max_size`` items are queued or the oldest has waited ``max_latency_ms``,
whichever comes first (``max_latency_ms = 0``: no waiting, run whatever is queued). While a batch
runs, new requests queue for the next one, so under load batches fill by themselves.

* **Back-pressure**: at most ``queue_limit`` items wait; a request that does not fit raises
  :class:`~aegis.engine.errors.QueueFull` (503 + ``Retry-After``) at once. Memory is bounded by
  the queue limit times the request size limit, never by the offered load.
* **Isolation**: ``run`` returns one result *or exception* per item. If ``run`` itself raises,
  every item of the batch is run again on its own, so only the culprit fails. A request whose
  client went away (its future cancelled) leaves the queue at once: it is never run, and its
  place counts neither in the depth nor against ``queue_limit``.
* **Event loops**: the worker is a thread, results go back with
  ``loop.call_soon_threadsafe``, so any event loop may submit (uvicorn's, or each of a test
  client's) and scoring never blocks the loop that parses HTTP.

Metrics: ``aegis_inference_batch_size`` per batch, ``aegis_inference_batch_queue_depth`` on
every change, ``aegis_inference_batch_cpu_seconds_total``: the worker thread's CPU time in
batches (scoring), so that the engine's CPU splits into scoring and serving (HTTP, validation).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from aegis.core import metrics
from aegis.core.logging import get_logger
from aegis.engine.errors import EngineShuttingDown, QueueFull

T = TypeVar("T")
R = TypeVar("R")
log = get_logger(__name__)


@dataclass
class _Entry(Generic[T]):
    item: T
    future: asyncio.Future[object]
    loop: asyncio.AbstractEventLoop
    queued_at: float


def _deliver(future: asyncio.Future[object], result: object) -> None:
    if future.done():  # cancelled: the client went away
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class DynamicBatcher(Generic[T, R]):
    """Queue items, run them in batches of up to ``max_size`` on one worker thread."""

    def __init__(
        self,
        run: Callable[[list[T]], Sequence[R | BaseException]],
        *,
        max_size: int,
        max_latency_ms: float,
        queue_limit: int,
        name: str = "engine-batcher",
    ) -> None:
        if max_size < 1 or queue_limit < 1 or max_latency_ms < 0:
            raise ValueError("max_size and queue_limit must be >= 1, max_latency_ms >= 0")
        self._run = run
        self.max_size = max_size
        self.max_latency_s = max_latency_ms / 1000.0
        self.queue_limit = queue_limit
        self._name = name
        self._queue: deque[_Entry[T]] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.batches_run = 0

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        with self._cond:
            self._closed = False
            self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Refuse new items, fail the queued ones, let the running batch finish."""
        with self._cond:
            self._closed = True
            dropped = list(self._queue)
            self._queue.clear()
            metrics.BATCH_QUEUE_DEPTH.set(0)
            self._cond.notify_all()
            thread = self._thread
        for entry in dropped:
            self._post(entry, EngineShuttingDown())
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    @property
    def depth(self) -> int:
        """Items waiting for a batch (not counting the batch that is running)."""
        return len(self._queue)

    # --- submitting ----------------------------------------------------------------------------

    async def submit(self, item: T) -> R:
        """Run ``item`` in a batch; its result, or its exception raised here."""
        future = self._enqueue([item])[0]
        return await future  # type: ignore[return-value]

    async def submit_many(self, items: Sequence[T]) -> list[R | BaseException]:
        """Run ``items`` (admitted all together or not at all); one result or exception each."""
        futures = self._enqueue(items)
        done = await asyncio.gather(*futures, return_exceptions=True)
        return list(done)  # type: ignore[arg-type]

    def _enqueue(self, items: Sequence[T]) -> list[asyncio.Future[object]]:
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        with self._cond:
            if self._closed:
                raise EngineShuttingDown()
            if len(self._queue) + len(items) > self.queue_limit:
                raise QueueFull(
                    f"the inference queue is full ({len(self._queue)} waiting, "
                    f"limit {self.queue_limit}); retry shortly"
                )
            self._ensure_thread()
            futures = []
            for item in items:
                future: asyncio.Future[object] = loop.create_future()
                self._queue.append(_Entry(item, future, loop, now))
                future.add_done_callback(self._forget)
                futures.append(future)
            metrics.BATCH_QUEUE_DEPTH.set(len(self._queue))
            self._cond.notify()
        return futures

    def _forget(self, future: asyncio.Future[object]) -> None:
        """Take a cancelled item out of the queue (if it is still there)."""
        if not future.cancelled():
            return
        with self._cond:
            for entry in self._queue:
                if entry.future is future:
                    self._queue.remove(entry)
                    metrics.BATCH_QUEUE_DEPTH.set(len(self._queue))
                    break

    # --- the worker ----------------------------------------------------------------------------

    def _take(self) -> list[_Entry[T]] | None:
        """Wait for a batch to be due and take it (None: stopped)."""
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            if self.max_latency_s > 0:
                deadline = self._queue[0].queued_at + self.max_latency_s
                while len(self._queue) < self.max_size and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._queue:
                        break
                    self._cond.wait(remaining)
            batch: list[_Entry[T]] = []
            while self._queue and len(batch) < self.max_size:
                entry = self._queue.popleft()
                if not entry.future.cancelled():
                    batch.append(entry)
            metrics.BATCH_QUEUE_DEPTH.set(len(self._queue))
            return batch

    def _work(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if not batch:
                continue
            metrics.BATCH_SIZE.observe(len(batch))
            started = time.thread_time()
            results = self._run_isolated([entry.item for entry in batch])
            metrics.BATCH_CPU.inc(time.thread_time() - started)
            self.batches_run += 1
            for entry, result in zip(batch, results, strict=True):
                self._post(entry, result)

    def _run_isolated(self, items: list[T]) -> list[R | BaseException]:
        try:
            results = list(self._run(items))
            if len(results) == len(items):
                return results
            log.error("batch_result_count_mismatch", items=len(items), results=len(results))
        except Exception as exc:
            log.error("batch_failed", size=len(items), exc_info=exc)
        if len(items) == 1:
            return [RuntimeError("inference failed")]
        return [self._run_isolated([item])[0] for item in items]

    @staticmethod
    def _post(entry: _Entry[T], result: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            entry.loop.call_soon_threadsafe(_deliver, entry.future, result)
