"""At most once per idempotency key, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from aegis.database.core import Database
from aegis.executor import service
from aegis.executor.errors import IdempotencyInProgress
from aegis.executor.schemas import ExecutorActionRequest, ExecutorActionResult
from tests.unit.executor.conftest import ExecutorHarness, action_body


def test_same_key_and_body_returns_the_stored_result_without_acting_again(
    executor: ExecutorHarness,
) -> None:
    first = executor.post(action_body())
    writes = len(executor.fake.mutating_requests())
    executor.fake.deployments[("demo", "web")]["spec"]["replicas"] = 3  # someone scaled back

    second = executor.post(action_body())  # a new nonce: a legitimate retry

    assert first.status_code == second.status_code == 200
    assert len(executor.fake.mutating_requests()) == writes
    assert executor.fake.deployment("demo", "web")["spec"]["replicas"] == 3
    replay = second.json()
    assert replay["idempotent_replay"] is True
    assert {**replay, "idempotent_replay": False} == first.json()


def test_same_key_with_a_different_body_is_409_and_nothing_runs(
    executor: ExecutorHarness,
) -> None:
    executor.post(action_body())
    before = executor.fake.snapshot()
    writes = len(executor.fake.mutating_requests())

    response = executor.post(action_body(params={"replicas": 7}))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_conflict"
    assert executor.fake.snapshot() == before
    assert len(executor.fake.mutating_requests()) == writes


def test_a_key_still_in_progress_is_409(executor: ExecutorHarness, db_url: str) -> None:
    request = ExecutorActionRequest.model_validate(action_body())
    database = Database(db_url)
    try:
        with database.unit_of_work() as session:  # an executor that died mid-action
            assert service.claim(session=session, request=request, digest=request.digest()) is None
    finally:
        database.dispose()

    response = executor.post(action_body())

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_in_progress"
    assert executor.fake.mutating_requests() == []


def test_a_failed_action_is_not_retried_under_the_same_key(executor: ExecutorHarness) -> None:
    first = executor.post(action_body(name="later"))
    executor.fake.add_deployment("demo", "later", replicas=1)

    second = executor.post(action_body(name="later"))

    assert first.json()["status"] == second.json()["status"] == "failed"
    assert second.json()["idempotent_replay"] is True
    assert executor.fake.deployment("demo", "later")["spec"]["replicas"] == 1


def test_rejected_requests_do_not_consume_the_key(executor: ExecutorHarness) -> None:
    refused = executor.post(action_body(params={"replicas": 50}))
    accepted = executor.post(action_body(params={"replicas": 5}))

    assert refused.status_code == 422
    assert accepted.status_code == 200
    assert executor.fake.deployment("demo", "web")["spec"]["replicas"] == 5


def test_concurrent_requests_with_one_key_act_exactly_once(executor: ExecutorHarness) -> None:
    runtime: service.Executor = executor.client.app.state.ctx.extras["executor"]  # type: ignore[attr-defined]
    request = ExecutorActionRequest.model_validate(action_body())
    outcomes: list[object] = []

    def attempt() -> None:
        try:
            outcomes.append(service.run_once(runtime, request))
        except IdempotencyInProgress as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    fresh = [o for o in outcomes if isinstance(o, ExecutorActionResult) and not o.idempotent_replay]
    assert len(outcomes) == 4
    assert len(fresh) == 1
    assert len(executor.fake.mutating_requests()) == 1
