"""Writers at the same moment, for the tests of what keeps them correct on PostgreSQL.

* :func:`race`: a second writer runs in a thread while the caller's transaction is still open.
  Where the code takes a lock, the second writer waits for that transaction; without the lock
  it would finish at once (wrongly). ``race(...).waiting`` tells which.
* :func:`at_once`: several writers released together by a barrier.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar, cast

T = TypeVar("T")
HELD_S = 1.0  # how long the first transaction waits for the second before going on
DONE_S = 30.0  # a guard against hangs, not a measured expectation


class Race(Generic[T]):
    """``second`` running in its own thread: what it returned, or what it raised."""

    def __init__(self, second: Callable[[], T]) -> None:
        self._second = second
        self.result: T | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            self.result = self._second()
        except BaseException as exc:
            self.error = exc

    @property
    def waiting(self) -> bool:
        """Whether the second writer is still running (waiting for the first one's lock)."""
        return self._thread.is_alive()

    def done(self) -> T:
        """Wait for the second writer; its result, or the exception it raised, raised again."""
        self._thread.join(timeout=DONE_S)
        assert not self._thread.is_alive(), "the second writer never finished"
        if self.error is not None:
            raise self.error
        return cast(T, self.result)


def race(second: Callable[[], T]) -> Race[T]:
    """Start ``second`` and give it :data:`HELD_S` to finish (call inside the first writer's
    transaction, then :meth:`Race.done` after it ends)."""
    started = Race(second)
    started._thread.start()
    started._thread.join(timeout=HELD_S)
    return started


def at_once(writers: list[Callable[[], T]]) -> list[T]:
    """Run ``writers`` in threads released together; their results in order (the first
    exception any raised is raised again)."""
    gate = threading.Barrier(len(writers))

    def released(writer: Callable[[], T]) -> Callable[[], T]:
        def run() -> T:
            gate.wait()
            return writer()

        return run

    runs = [Race(released(writer)) for writer in writers]
    for run in runs:
        run._thread.start()
    return [run.done() for run in runs]
