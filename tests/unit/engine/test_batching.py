"""The dynamic batcher: batch formation, back-pressure, isolation, cancellation, shutdown.

The batched function here is a plain function (the batcher is generic); the engine's own use is
covered end to end in ``test_server*.py``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest
from prometheus_client import REGISTRY

from aegis.engine.batching import DynamicBatcher
from aegis.engine.errors import EngineShuttingDown, QueueFull

WAIT = 10.0  # seconds: only a guard against a hang, never a measured expectation


class Recorder:
    """Doubles its inputs and records the batches it was given; can be held shut."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, items: list[int]) -> Sequence[int | BaseException]:
        self.entered.set()
        self.gate.wait(WAIT)
        self.batches.append(list(items))
        return [i * 2 for i in items]


def _batcher(run: Recorder, **kw: float) -> DynamicBatcher[int, int]:
    options = {"max_size": 4, "max_latency_ms": 0.0, "queue_limit": 100} | kw
    return DynamicBatcher(run, **options)  # type: ignore[arg-type]


def test_queued_items_run_together_up_to_the_maximum_size() -> None:
    run = Recorder()
    batcher = _batcher(run, max_size=4, max_latency_ms=50)

    results = asyncio.run(asyncio.wait_for(batcher.submit_many(list(range(10))), WAIT))

    assert results == [i * 2 for i in range(10)]
    assert [len(b) for b in run.batches] == [4, 4, 2]
    assert [i for b in run.batches for i in b] == list(range(10))
    batcher.stop()


def test_with_no_wait_a_single_item_runs_at_once() -> None:
    run = Recorder()
    batcher = _batcher(run, max_size=1000, max_latency_ms=0)

    assert asyncio.run(asyncio.wait_for(batcher.submit(21), WAIT)) == 42
    assert run.batches == [[21]]
    batcher.stop()


def test_a_partial_batch_runs_when_its_wait_is_over() -> None:
    run = Recorder()
    batcher = _batcher(run, max_size=1000, max_latency_ms=20)

    async def three() -> list[int]:
        return list(await asyncio.gather(*(batcher.submit(i) for i in range(3))))

    assert asyncio.run(asyncio.wait_for(three(), WAIT)) == [0, 2, 4]
    assert sum(len(b) for b in run.batches) == 3 and all(run.batches)
    batcher.stop()


def test_requests_beyond_the_queue_limit_are_refused_with_retry_after() -> None:
    run = Recorder()
    run.gate.clear()  # the worker will hold its first batch
    batcher = _batcher(run, max_size=1, queue_limit=2)

    async def scenario() -> tuple[list[int], QueueFull]:
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.to_thread(run.entered.wait, WAIT)  # item 0 is running, queue empty
        queued = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFull) as refused:
            await batcher.submit(3)
        run.gate.set()
        done = await asyncio.gather(first, *queued)
        return list(done), refused.value

    done, refused = asyncio.run(asyncio.wait_for(scenario(), WAIT))

    assert done == [0, 2, 4]
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert batcher.depth == 0
    batcher.stop()


def test_a_list_that_does_not_fit_is_refused_whole() -> None:
    run = Recorder()
    run.gate.clear()
    batcher = _batcher(run, max_size=1, queue_limit=3)

    async def scenario() -> None:
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.to_thread(run.entered.wait, WAIT)
        with pytest.raises(QueueFull):
            await batcher.submit_many([1, 2, 3, 4])
        assert batcher.depth == 0  # nothing of the refused list was queued
        run.gate.set()
        await first

    asyncio.run(asyncio.wait_for(scenario(), WAIT))
    batcher.stop()


def test_an_item_that_makes_the_batch_raise_fails_alone() -> None:
    def run(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("unlucky")
        return [i + 1 for i in items]

    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        run, max_size=8, max_latency_ms=50, queue_limit=10
    )

    results = asyncio.run(asyncio.wait_for(batcher.submit_many([1, 13, 2]), WAIT))

    assert results[0] == 2 and results[2] == 3
    assert isinstance(results[1], RuntimeError)
    batcher.stop()


def test_an_exception_returned_for_one_item_is_raised_for_that_item_only() -> None:
    def run(items: list[int]) -> list[int | BaseException]:
        return [KeyError(i) if i < 0 else i for i in items]

    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        run, max_size=8, max_latency_ms=50, queue_limit=10
    )

    async def scenario() -> tuple[int, int]:
        good = asyncio.ensure_future(batcher.submit(5))
        with pytest.raises(KeyError):
            await batcher.submit(-1)
        return await good, len(await batcher.submit_many([7, -2]))

    assert asyncio.run(asyncio.wait_for(scenario(), WAIT)) == (5, 2)
    batcher.stop()


def test_a_request_whose_client_left_is_dropped_before_its_batch() -> None:
    run = Recorder()
    run.gate.clear()
    batcher = _batcher(run, max_size=1)

    async def scenario() -> None:
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.to_thread(run.entered.wait, WAIT)
        gone = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0)
        gone.cancel()
        kept = asyncio.ensure_future(batcher.submit(2))
        await asyncio.sleep(0)
        run.gate.set()
        await first
        await kept

    asyncio.run(asyncio.wait_for(scenario(), WAIT))

    assert run.batches == [[0], [2]]
    batcher.stop()


def test_a_request_whose_client_left_gives_its_place_in_the_queue_back_at_once() -> None:
    run = Recorder()
    run.gate.clear()
    batcher = _batcher(run, max_size=1, queue_limit=2)

    async def scenario() -> tuple[int, int, int]:
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.to_thread(run.entered.wait, WAIT)  # the worker is busy with item 0
        gone = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2)]  # the queue is full
        await asyncio.sleep(0)
        for request in gone:
            request.cancel()
        await asyncio.gather(*gone, return_exceptions=True)
        depth = batcher.depth
        kept = asyncio.ensure_future(batcher.submit(3))  # a place the leavers gave back
        await asyncio.sleep(0)
        run.gate.set()
        return depth, await first, await kept

    assert asyncio.run(asyncio.wait_for(scenario(), WAIT)) == (0, 0, 6)
    assert run.batches == [[0], [3]]
    batcher.stop()


def test_stopping_fails_the_queued_items_and_refuses_new_ones() -> None:
    run = Recorder()
    run.gate.clear()
    batcher = _batcher(run, max_size=1)

    async def scenario() -> None:
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.to_thread(run.entered.wait, WAIT)
        queued = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0)
        stopper = asyncio.ensure_future(asyncio.to_thread(batcher.stop))
        with pytest.raises(EngineShuttingDown):
            await queued
        with pytest.raises(EngineShuttingDown):
            await batcher.submit(2)
        run.gate.set()
        assert await first == 0  # the running batch finishes
        await stopper

    asyncio.run(asyncio.wait_for(scenario(), WAIT))


def test_requests_from_different_event_loops_are_served() -> None:
    run = Recorder()
    batcher = _batcher(run)

    assert asyncio.run(batcher.submit(1)) == 2
    assert asyncio.run(batcher.submit(2)) == 4  # a new loop: results still come back
    batcher.stop()


def _batch_cpu_seconds() -> float:
    return REGISTRY.get_sample_value("aegis_inference_batch_cpu_seconds_total") or 0.0


def test_the_worker_counts_the_cpu_time_of_its_batches_not_their_wall_time() -> None:
    def busy(items: list[int]) -> list[int]:
        started = time.thread_time()
        while time.thread_time() - started < 0.2:
            pass
        return items

    def asleep(items: list[int]) -> list[int]:
        time.sleep(0.2)
        return items

    spent = []
    for run in (busy, asleep):
        batcher: DynamicBatcher[int, int] = DynamicBatcher(
            run, max_size=4, max_latency_ms=0.0, queue_limit=10
        )
        before = _batch_cpu_seconds()
        assert asyncio.run(asyncio.wait_for(batcher.submit(1), WAIT)) == 1
        spent.append(_batch_cpu_seconds() - before)
        batcher.stop()

    assert spent[0] >= 0.2  # the busy batch's CPU time, counted before its result is posted
    assert spent[1] < 0.1  # a batch that waits costs no CPU


def test_settings_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError):
        _batcher(Recorder(), max_size=0)
    with pytest.raises(ValueError):
        _batcher(Recorder(), max_latency_ms=-1)
