"""How the ``kubernetes`` backend reads the API server's answers, checked against the FAKE API
server misbehaving as a broken API server (or a proxy in front of it) would."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aegis.executor.backends.kube_transport import MAX_ANSWER_BYTES
from aegis.executor.backends.kubernetes import KubernetesBackend
from aegis.executor.errors import ActionFailed, LogsUnavailable
from aegis.executor.schemas import ExecutorLogsRequest
from tests.support.fake_kube import FakeKubeApiServer
from tests.unit.executor.conftest import ExecutorHarness, action_body, action_request

KiB = 1024


@pytest.fixture
def small_cap(fake_kube: FakeKubeApiServer) -> Iterator[KubernetesBackend]:
    """A backend that reads at most 64 KiB of an answer, with a 0.5 s read timeout."""
    backend = KubernetesBackend(
        fake_kube.api_client(), timeout=(2.0, 0.5), max_answer_bytes=64 * KiB
    )
    yield backend
    backend.close()


def test_an_answer_over_the_cap_fails_the_action_before_anything_is_written(
    small_cap: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    fake_kube.answer_padding = 1 << 20

    with pytest.raises(ActionFailed) as caught:
        small_cap.execute(action_request("scale_deployment", replicas=5))

    assert caught.value.message == (
        "read deployment demo/web: the kubernetes API answered more than 64 KiB; not read"
    )
    assert caught.value.audit_ids == [fake_kube.requests[-1].audit_id]
    assert fake_kube.mutating_requests() == []


def test_an_endless_answer_is_cut_at_the_cap(
    small_cap: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    fake_kube.endless_answers = True

    with pytest.raises(ActionFailed, match=r"answered more than 64 KiB; not read$"):
        small_cap.execute(action_request("restart_deployment"))

    assert fake_kube.mutating_requests() == []


def test_an_answer_trickling_in_for_longer_than_the_read_timeout_is_refused(
    small_cap: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    fake_kube.endless_answers = True
    fake_kube.trickle_s = 0.01  # each byte well inside the read timeout, the whole never done

    with pytest.raises(ActionFailed) as caught:
        small_cap.execute(action_request("delete_pod", name="web-1"))

    assert caught.value.message == (
        "read pod demo/web-1: the kubernetes API took longer than 0.5 s to answer; not read"
    )


def test_a_log_answer_over_the_cap_is_a_one_line_refusal(
    small_cap: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    fake_kube.endless_answers = True
    request = ExecutorLogsRequest(namespace="demo", pod="web-1", requested_by="ai-engine")

    with pytest.raises(LogsUnavailable) as caught:
        small_cap.logs(request)

    assert caught.value.message == (
        "reading logs in demo: the kubernetes API answered more than 64 KiB; not read"
    )


def test_an_answer_over_the_default_cap_is_a_failed_result_stored_like_any_other(
    executor: ExecutorHarness,
) -> None:
    executor.fake.answer_padding = MAX_ANSWER_BYTES

    first = executor.post(action_body())
    again = executor.post(action_body())

    assert first.status_code == 200
    result = first.json()
    assert result["status"] == "failed"
    assert result["error"] == (
        "read deployment demo/web: the kubernetes API answered more than 32 MiB; not read"
    )
    assert result["kube_audit_ids"] == [executor.fake.requests[0].audit_id]
    assert again.json()["idempotent_replay"] is True
    assert executor.fake.mutating_requests() == []


# --- retries -----------------------------------------------------------------------------------


def test_a_delete_whose_answer_never_comes_is_sent_once_and_reported_as_unknown(
    fake_kube: FakeKubeApiServer,
) -> None:
    fake_kube.add_pod("demo", "web-1")
    fake_kube.stalled_methods = {"DELETE"}  # the pod is deleted; the answer is lost
    backend = KubernetesBackend(fake_kube.api_client(), timeout=(2.0, 0.3))
    try:
        with pytest.raises(ActionFailed) as caught:
            backend.execute(action_request("delete_pod", name="web-1"))
    finally:
        backend.close()

    assert [r.method for r in fake_kube.requests] == ["GET", "DELETE"]
    assert caught.value.message == (
        "delete pod demo/web-1: no answer from the kubernetes API (ReadTimeoutError); "
        "it may or may not have acted: check the target"
    )
    assert "web-1" not in fake_kube.pod_names("demo")  # it did act


@pytest.mark.parametrize("status", [429, 503])
def test_a_busy_answer_asking_to_retry_in_an_hour_fails_the_action_at_once(
    kube_backend: KubernetesBackend,
    fake_kube: FakeKubeApiServer,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
) -> None:
    # urllib3 honoured Retry-After on a GET answered 429 or 503: it slept an hour (up to six)
    # before each of its three retries while the action, and its executor thread, waited.
    slept: list[float] = []
    monkeypatch.setattr("urllib3.util.retry.time.sleep", slept.append)  # noted, not slept
    fake_kube.busy = (status, 3600)

    with pytest.raises(ActionFailed) as caught:
        kube_backend.execute(action_request("restart_deployment"))

    assert slept == []
    assert [(r.method, r.status) for r in fake_kube.requests] == [("GET", status)]
    assert caught.value.message.startswith(f"read deployment demo/web: {status} ")
    assert caught.value.audit_ids == [fake_kube.requests[0].audit_id]


# --- what an error answer may put into a result -------------------------------------------------


def test_an_api_error_message_of_any_length_becomes_a_bounded_one_line_failure(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    fake_kube.admission_denial = "[replica-cap] at most 4 replicas\n" * 20_000  # ~660 KB

    with pytest.raises(ActionFailed) as caught:
        kube_backend.execute(action_request("scale_deployment", replicas=5))

    message = caught.value.message
    assert message.startswith(
        'patch deployment demo/web scale: 403 admission webhook "validation.gatekeeper.sh" '
        "denied the request: [replica-cap] at most 4 replicas [replica-cap]"
    )
    assert message.endswith("… (660064 characters in all)")
    assert len(message) < 1100
    assert "\n" not in message


def test_an_error_answer_nested_past_the_parsers_limit_is_a_failure_with_its_status(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    fake_kube.admission_denial = "refused"
    fake_kube.error_body = b"[" * 200_000 + b"]" * 200_000  # json.loads: RecursionError

    with pytest.raises(ActionFailed) as caught:
        kube_backend.execute(action_request("scale_deployment", replicas=5))

    assert caught.value.message == "patch deployment demo/web scale: 403 Forbidden"


# --- a 2xx answer that is not what was asked for -------------------------------------------------


PROXY_PAGE = (200, b"<html>upstream connect error</html>")
DEPLOYMENT = "/apis/apps/v1/namespaces/demo/deployments/web"


def test_a_read_answered_with_something_that_is_not_the_object_fails_with_one_line(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    fake_kube.replaced_answers[("GET", DEPLOYMENT)] = PROXY_PAGE

    with pytest.raises(ActionFailed) as caught:
        kube_backend.execute(action_request("scale_deployment", replicas=5))

    assert caught.value.message == (
        "read deployment demo/web: the kubernetes API answered 200 with something that is "
        "not a V1Deployment"
    )
    assert caught.value.audit_ids == [fake_kube.requests[0].audit_id]
    assert fake_kube.mutating_requests() == []


def test_a_write_answered_with_something_unreadable_keeps_its_audit_ids_and_says_it_may_have_acted(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    fake_kube.replaced_answers[("PATCH", f"{DEPLOYMENT}/scale")] = PROXY_PAGE

    with pytest.raises(ActionFailed) as caught:
        kube_backend.execute(action_request("scale_deployment", replicas=5))

    assert caught.value.message == (
        "patch deployment demo/web scale: the kubernetes API answered 200 with something that "
        "is not a V1Scale; it may or may not have acted: check the target"
    )
    assert caught.value.audit_ids == [r.audit_id for r in fake_kube.requests]
    assert caught.value.before["replicas"] == 3
    assert fake_kube.deployment("demo", "web")["spec"]["replicas"] == 5  # it did act


@pytest.mark.parametrize("target", ["pod", "deployment"])
def test_a_log_read_answered_with_something_unreadable_is_a_502_not_a_500(
    executor: ExecutorHarness, target: str
) -> None:
    executor.fake.add_pod("demo", "web")
    read = "/api/v1/namespaces/demo/pods/web" if target == "pod" else DEPLOYMENT
    executor.fake.replaced_answers[("GET", read)] = PROXY_PAGE

    response = executor.post(
        {"namespace": "demo", target: "web", "requested_by": "ai-engine"}, path="/v1/logs"
    )

    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "logs_unavailable"
    assert response.json()["error"]["message"] == (
        "reading logs in demo: the kubernetes API answered 200 with something that is not a "
        f"{'V1Pod' if target == 'pod' else 'V1Deployment'}"
    )
