"""``ExecutorClient``: what the backend uses to ask for an action."""

from __future__ import annotations

import pytest

from aegis.core.logging import request_id_var
from aegis.executor.client import MAX_ANSWER_BYTES, ExecutorClient
from aegis.executor.errors import ExecutorRejected, ExecutorUnreachable
from aegis.executor.schemas import ExecutorActionRequest, ExecutorLogsRequest
from tests.support.floods import flooding
from tests.support.services import free_port
from tests.unit.executor.conftest import SECRET, ExecutorHarness, action_body


@pytest.fixture
def db_backend() -> str:
    return "sqlite"


def _client(executor: ExecutorHarness, secret: str = SECRET) -> ExecutorClient:
    return ExecutorClient("http://testserver", secret, 5.0, http=executor.client)


def test_submit_runs_the_action_and_returns_the_result(executor: ExecutorHarness) -> None:
    result = _client(executor).submit(ExecutorActionRequest.model_validate(action_body()))

    assert result.status == "succeeded"
    assert result.kube_audit_ids
    assert executor.fake.deployment("demo", "web")["spec"]["replicas"] == 5


def test_submit_forwards_the_request_id(executor: ExecutorHarness) -> None:
    token = request_id_var.set("req-from-the-backend-123")
    try:
        result = _client(executor).submit(ExecutorActionRequest.model_validate(action_body()))
    finally:
        request_id_var.reset(token)

    assert result.request_id == "req-from-the-backend-123"


def test_a_refusal_raises_with_the_executors_status_and_code(executor: ExecutorHarness) -> None:
    request = ExecutorActionRequest.model_validate(action_body(namespace="kube-system"))

    with pytest.raises(ExecutorRejected) as caught:
        _client(executor).submit(request)

    assert (caught.value.executor_status, caught.value.code) == (403, "namespace_not_allowed")


def test_a_client_with_the_wrong_secret_is_refused(executor: ExecutorHarness) -> None:
    client = _client(executor, secret="not-the-secret-" + "q" * 30)

    with pytest.raises(ExecutorRejected) as caught:
        client.submit(ExecutorActionRequest.model_validate(action_body()))

    assert caught.value.executor_status == 401
    assert executor.fake.mutating_requests() == []


def test_an_unreachable_executor_raises_executor_unreachable() -> None:
    with (
        ExecutorClient(f"http://127.0.0.1:{free_port()}", SECRET, 2.0) as client,
        pytest.raises(ExecutorUnreachable, match="same idempotency key"),
    ):
        client.submit(ExecutorActionRequest.model_validate(action_body()))


def test_an_answer_that_never_ends_is_cut_off_and_the_executor_taken_as_unreachable() -> None:
    """Something at EXECUTOR_URL streaming without end fills neither the backend's memory nor
    its time: the client reads MAX_ANSWER_BYTES of each answer, closes the connection, and
    says the executor did not answer (an action's outcome is unknown: retry with its key)."""
    cap = 4 * MAX_ANSWER_BYTES  # far past what the client reads, short of a hung test
    logs = ExecutorLogsRequest(namespace="demo", pod="web-1", requested_by="ai-engine")
    with flooding(start=b'{"status": "succeeded", "diff": "', cap=cap) as executor:
        with ExecutorClient(executor.url, SECRET, 5.0) as client:
            with pytest.raises(ExecutorUnreachable) as submitted:
                client.submit(ExecutorActionRequest.model_validate(action_body()))
            with pytest.raises(ExecutorUnreachable) as read:
                client.logs(logs)
        cut_off = executor.answers(2)

    assert submitted.value.message == (
        "executor unreachable (answered more than 32 MiB); the action may or may not have run: "
        "retry with the same idempotency key"
    )
    assert read.value.message == "executor unreachable (answered more than 32 MiB)"
    assert cut_off == [True, True] and max(executor.sent) < cap


def test_an_empty_secret_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="EXECUTOR_HMAC_SECRET"):
        ExecutorClient("http://127.0.0.1:1", "", 1.0)


@pytest.mark.parametrize(
    "body", [b"<html><body>502 Bad Gateway</body></html>", b'{"status": "succ', b"{}"]
)
def test_a_200_that_is_not_a_result_is_taken_as_no_answer(body: bytes) -> None:
    """Something else answering 200 at EXECUTOR_URL (a proxy's page, a cut-off or foreign body)
    is no result: the outcome is unknown, so the action is retried with its key, never crashed
    on or recorded as done."""
    logs = ExecutorLogsRequest(namespace="demo", pod="web-1", requested_by="ai-engine")
    with flooding(start=body, cap=1) as executor, ExecutorClient(executor.url, SECRET) as client:
        with pytest.raises(ExecutorUnreachable) as submitted:
            client.submit(ExecutorActionRequest.model_validate(action_body()))
        with pytest.raises(ExecutorUnreachable) as read:
            client.logs(logs)

    assert submitted.value.message == (
        "executor answered 200 without a readable ExecutorActionResult; the action may or may "
        "not have run: retry with the same idempotency key"
    )
    assert read.value.message == (
        "executor answered 200 without a readable ExecutorLogsResult; no log lines were read"
    )
