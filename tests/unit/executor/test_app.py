"""``POST /v1/actions`` end to end: signed requests act on the FAKE cluster, everything else is
refused with one line and leaves the cluster exactly as it was."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from prometheus_client import REGISTRY

from aegis.core.config import Settings
from aegis.core.errors import ConfigError
from aegis.executor.app import create_app
from aegis.executor.backends.local import LocalCluster, default_state_path
from aegis.executor.signing import NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_request
from tests.support.hostile import HOSTILE_VALUES, leaves, replaced
from tests.unit.executor.conftest import PREVIOUS_SECRET, SECRET, ExecutorHarness, action_body


@pytest.fixture
def db_backend() -> str:
    """HTTP-level behaviour does not depend on the database; idempotency tests run on both."""
    return "sqlite"


def _error(response_json: dict[str, object]) -> dict[str, str]:
    error = response_json["error"]
    assert isinstance(error, dict)
    return error


def _unchanged(executor: ExecutorHarness, before: dict[str, object]) -> None:
    assert executor.fake.snapshot() == before
    assert executor.fake.mutating_requests() == []


def _actions_count(action: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "aegis_executor_actions_total", {"action": action, "outcome": outcome}
    )
    return value or 0.0


def test_signed_request_scales_the_deployment_and_captures_audit_ids(
    executor: ExecutorHarness,
) -> None:
    response = executor.post(action_body())

    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "succeeded"
    assert result["backend"] == "kubernetes"
    assert result["dry_run"] is False
    assert executor.fake.deployment("demo", "web")["spec"]["replicas"] == 5
    assert len(executor.fake.pod_names("demo")) == 5 + 2  # web + api
    assert result["diff"] == [{"path": "spec.replicas", "before": 3, "after": 5}]
    assert result["before"]["replicas"] == 3 and result["after"]["replicas"] == 5
    assert result["kube_audit_ids"] == [r.audit_id for r in executor.fake.requests]
    assert result["requested_by"] == "alice" and result["action_id"] == "act-1"


def test_health_is_ok_and_names_the_backend(executor: ExecutorHarness) -> None:
    body = executor.client.get("/health").json()
    assert body["status"] == "ok" and body["enabled"] is True and body["backend"] == "kubernetes"


def test_request_without_signature_is_rejected(executor: ExecutorHarness) -> None:
    before = executor.fake.snapshot()
    response = executor.post(action_body(), headers={})

    assert response.status_code == 401
    assert _error(response.json())["code"] == "signature_missing"
    _unchanged(executor, before)


def test_request_signed_with_the_wrong_secret_is_rejected(executor: ExecutorHarness) -> None:
    before = executor.fake.snapshot()
    response = executor.post(action_body(), secret="not-the-executor-secret-" + "x" * 20)

    assert response.status_code == 401
    assert _error(response.json()) | {"request_id": None} == {
        "code": "signature_invalid",
        "message": "signature does not match",
        "request_id": None,
    }
    _unchanged(executor, before)


def test_body_tampered_after_signing_is_rejected(executor: ExecutorHarness) -> None:
    before = executor.fake.snapshot()
    signed_for = action_body(params={"replicas": 4})
    tampered = action_body(params={"replicas": 20})

    response = executor.post(signed_for, send_body=json.dumps(tampered).encode())

    assert response.status_code == 401
    assert _error(response.json())["code"] == "signature_invalid"
    _unchanged(executor, before)


@pytest.mark.parametrize("offset", [-61, 61, -3600])
def test_timestamp_outside_sixty_seconds_is_rejected(
    executor: ExecutorHarness, offset: int
) -> None:
    before = executor.fake.snapshot()
    response = executor.post(action_body(), timestamp=int(time.time()) + offset)

    assert response.status_code == 401
    error = _error(response.json())
    assert error["code"] == "timestamp_out_of_window"
    assert error["message"] == "timestamp outside ±60 s of the executor clock"
    _unchanged(executor, before)


def test_replayed_nonce_is_rejected(executor: ExecutorHarness) -> None:
    body = json.dumps(action_body()).encode()
    first = executor.post(body)
    writes_after_first = len(executor.fake.mutating_requests())
    replay = executor.client.post(
        "/v1/actions",
        content=body,
        headers={**executor.sent[0], "Content-Type": "application/json"},
    )

    assert first.status_code == 200
    assert replay.status_code == 401
    assert _error(replay.json())["code"] == "nonce_replayed"
    assert len(executor.fake.mutating_requests()) == writes_after_first


def test_previous_secret_is_accepted_during_rotation(executor: ExecutorHarness) -> None:
    response = executor.post(action_body(), secret=PREVIOUS_SECRET)

    assert response.status_code == 200
    assert executor.fake.deployment("demo", "web")["spec"]["replicas"] == 5


def test_previous_secret_is_refused_once_rotation_is_over(
    make_executor: Callable[..., ExecutorHarness],
) -> None:
    executor = make_executor(executor_hmac_secret_previous=None)
    response = executor.post(action_body(), secret=PREVIOUS_SECRET)

    assert response.status_code == 401


@pytest.mark.parametrize("namespace", ["kube-system", "production", "staging"])
def test_namespace_outside_the_allow_list_is_forbidden(
    executor: ExecutorHarness, namespace: str
) -> None:
    before = executor.fake.snapshot()
    response = executor.post(action_body(namespace=namespace, name="coredns"))

    assert response.status_code == 403
    error = _error(response.json())
    assert error["code"] == "namespace_not_allowed"
    assert namespace in error["message"]
    _unchanged(executor, before)


def test_glob_pattern_in_the_allow_list_matches(executor: ExecutorHarness) -> None:
    response = executor.post(action_body(namespace="staging-eu"))

    assert response.status_code == 200
    assert executor.fake.deployment("staging-eu", "web")["spec"]["replicas"] == 5


def test_action_type_outside_the_allow_list_is_forbidden(
    make_executor: Callable[..., ExecutorHarness],
) -> None:
    executor = make_executor(executor_allowed_actions=["scale_deployment"])
    before = executor.fake.snapshot()
    response = executor.post(action_body(action="restart_deployment", params={}))

    assert response.status_code == 403
    assert _error(response.json())["code"] == "action_not_allowed"
    _unchanged(executor, before)


@pytest.mark.parametrize("replicas", [21, 500])
def test_scale_above_the_bound_is_refused(executor: ExecutorHarness, replicas: int) -> None:
    before = executor.fake.snapshot()
    response = executor.post(action_body(params={"replicas": replicas}))

    assert response.status_code == 422
    error = _error(response.json())
    assert error["code"] == "replicas_out_of_bounds"
    assert error["message"] == f"replicas {replicas} is outside the allowed range 0..20"
    _unchanged(executor, before)


def test_scale_below_a_configured_minimum_is_refused(
    make_executor: Callable[..., ExecutorHarness],
) -> None:
    executor = make_executor(executor_min_replicas=2, executor_max_replicas=6)
    before = executor.fake.snapshot()
    response = executor.post(action_body(params={"replicas": 1}))

    assert response.status_code == 422
    assert "2..6" in _error(response.json())["message"]
    _unchanged(executor, before)


def test_unknown_action_type_is_422(executor: ExecutorHarness) -> None:
    before = executor.fake.snapshot()
    response = executor.post(action_body(action="drain_node", params={}))

    assert response.status_code == 422
    message = _error(response.json())["message"]
    assert message.startswith("unknown action type 'drain_node'")
    assert "\n" not in message
    _unchanged(executor, before)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "params: scale_deployment needs params.replicas"),
        ({"replicas": "5"}, "params.replicas must be an integer >= 0"),
        ({"replicas": True}, "params.replicas must be an integer >= 0"),
        ({"replicas": 2, "force": True}, "params: scale_deployment does not take force"),
    ],
)
def test_malformed_params_are_422(
    executor: ExecutorHarness, params: dict[str, object], message: str
) -> None:
    before = executor.fake.snapshot()
    response = executor.post(action_body(params=params))

    assert response.status_code == 422
    assert _error(response.json())["message"] == message
    _unchanged(executor, before)


def test_kill_switch_refuses_every_action_and_health_says_disabled(
    make_executor: Callable[..., ExecutorHarness],
) -> None:
    executor = make_executor(executor_enabled=False)
    before = executor.fake.snapshot()
    response = executor.post(action_body())
    health = executor.client.get("/health")

    assert response.status_code == 503
    assert _error(response.json())["message"] == "executor disabled"
    assert health.status_code == 200
    assert health.json()["enabled"] is False and health.json()["actions"] == "disabled"
    _unchanged(executor, before)


def test_dry_run_changes_nothing_and_returns_the_diff(executor: ExecutorHarness) -> None:
    before = executor.fake.snapshot()
    response = executor.post(action_body(dry_run=True))

    assert response.status_code == 200
    result = response.json()
    assert result["dry_run"] is True and result["status"] == "succeeded"
    assert result["diff"] == [{"path": "spec.replicas", "before": 3, "after": 5}]
    assert executor.fake.snapshot() == before
    writes = executor.fake.mutating_requests()
    assert writes and all(w.query.get("dryRun") == "All" for w in writes)


def test_rollback_picks_the_previous_revision(executor: ExecutorHarness) -> None:
    response = executor.post(action_body(action="rollback_deployment", params={}))

    assert response.status_code == 200
    result = response.json()
    assert result["after"]["rollback_to_revision"] == 1
    assert result["diff"] == [
        {
            "path": "spec.template.spec.containers[web].image",
            "before": "nginx:1.27",
            "after": "nginx:1.26",
        }
    ]
    deployment = executor.fake.deployment("demo", "web")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"


def test_action_that_fails_on_the_cluster_is_a_failed_result(executor: ExecutorHarness) -> None:
    response = executor.post(action_body(name="missing"))

    assert response.status_code == 200
    result = response.json()
    assert result["status"] == "failed"
    assert (
        result["error"] == 'read deployment demo/missing: 404 deployments.apps "missing" not found'
    )
    assert result["kube_audit_ids"] == [executor.fake.requests[-1].audit_id]


def test_every_action_and_rejection_is_counted(executor: ExecutorHarness) -> None:
    succeeded = _actions_count("scale_deployment", "succeeded")
    rejected = _actions_count("scale_deployment", "rejected")
    unknown = _actions_count("unknown", "rejected")

    executor.post(action_body())
    executor.post(action_body(idempotency_key="idem-2", params={"replicas": 99}))
    executor.post(action_body(), secret="wrong-secret-" + "w" * 30)

    assert _actions_count("scale_deployment", "succeeded") == succeeded + 1
    assert _actions_count("scale_deployment", "rejected") == rejected + 1
    assert _actions_count("unknown", "rejected") == unknown + 1


def test_default_backend_in_embedded_mode_is_the_local_workload(
    make_settings: Callable[..., Settings], db_url: str
) -> None:
    settings = make_settings(database_url=db_url)
    body = json.dumps(action_body()).encode()
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").json()["backend"] == "local"
        headers = sign_request(secret=SECRET, method="POST", path="/v1/actions", body=body)
        response = client.post("/v1/actions", content=body, headers=headers)

    assert response.status_code == 200
    assert response.json()["backend"] == "local"
    cluster = LocalCluster(default_state_path(settings.data_dir))
    assert cluster.deployment("demo", "web")["replicas"] == 5


def test_missing_tables_stop_start_up_with_one_line(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(database_url=f"sqlite+pysqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(ConfigError, match="aegis db upgrade"):
        create_app(settings)


def test_unknown_action_in_the_allow_list_stops_start_up(
    make_settings: Callable[..., Settings], db_url: str
) -> None:
    settings = make_settings(database_url=db_url, executor_allowed_actions=["drain_node"])
    with pytest.raises(ConfigError, match="drain_node"):
        create_app(settings)


def test_headers_are_case_insensitive_and_named_as_documented(executor: ExecutorHarness) -> None:
    response = executor.post(action_body())
    sent = executor.sent[0]

    assert set(sent) == {TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER}
    assert sent[SIGNATURE_HEADER].startswith("v1=")
    assert response.status_code == 200


@pytest.mark.parametrize("header", [SIGNATURE_HEADER, NONCE_HEADER, TIMESTAMP_HEADER])
def test_a_signature_header_sent_twice_is_refused_whichever_copy_is_valid(
    executor: ExecutorHarness, header: str
) -> None:
    # Repeated, a header means its values joined by ", " (RFC 9110 5.3), as a proxy may send
    # it: not one of the documented shapes. Only the first copy used to be read.
    raw = json.dumps(action_body()).encode()
    signed = sign_request(secret=SECRET, method="POST", path="/v1/actions", body=raw)
    other = {SIGNATURE_HEADER: "v1=" + "0" * 64, NONCE_HEADER: "n" * 32, TIMESTAMP_HEADER: "1"}
    before = executor.fake.snapshot()

    response = executor.client.post(
        "/v1/actions",
        content=raw,
        headers=[*signed.items(), (header.lower(), other[header])],
    )

    assert response.status_code == 401, response.text
    assert _error(response.json()) | {"request_id": ""} == {
        "code": "signature_invalid",
        "message": f"malformed {header} header: more than one value",
        "request_id": "",
    }
    _unchanged(executor, before)


def test_failure_series_exist_before_the_first_failure(executor: ExecutorHarness) -> None:
    metrics_text = executor.client.get("/metrics").text

    for action in ("restart_deployment", "scale_deployment", "delete_pod", "rollback_deployment"):
        assert f'aegis_executor_actions_total{{action="{action}",outcome="failed"}}' in metrics_text


# --- POST /v1/logs (read only) ---------------------------------------------------------------


def _logs_body(**over: object) -> dict[str, Any]:
    return {"namespace": "demo", "deployment": "web", "requested_by": "ai-engine"} | over


def _read_logs(
    executor: ExecutorHarness, body: dict[str, Any], *, secret: str = SECRET
) -> Response:
    return executor.post(body, path="/v1/logs", secret=secret)


def test_signed_log_request_returns_the_workloads_lines_and_changes_nothing(
    executor: ExecutorHarness,
) -> None:
    pod = sorted(p for p in executor.fake.pod_names("demo") if p.startswith("web-"))[0]
    executor.fake.add_log_lines("demo", pod, [(time.time() - 5, b"panic: runtime error")])
    before = executor.fake.snapshot()

    response = _read_logs(executor, _logs_body())

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["backend"] == "kubernetes" and pod in answer["pods"]
    assert [line["message"] for line in answer["lines"]] == ["panic: runtime error"]
    assert answer["lines"][0]["timestamp"] == pytest.approx(time.time() - 5, abs=60)
    _unchanged(executor, before)


def test_log_requests_need_a_valid_signature_and_a_fresh_nonce(executor: ExecutorHarness) -> None:
    body = json.dumps(_logs_body()).encode()
    unsigned = executor.client.post("/v1/logs", content=body)
    wrong = _read_logs(executor, _logs_body(), secret="x" * 40)
    first = _read_logs(executor, _logs_body())
    replay = executor.client.post(
        "/v1/logs",
        content=json.dumps(_logs_body()).encode(),
        headers={**executor.sent[-1], "Content-Type": "application/json"},
    )
    # a signature for /v1/actions does not open /v1/logs
    elsewhere = executor.client.post(
        "/v1/logs",
        content=body,
        headers={
            **sign_request(secret=SECRET, method="POST", path="/v1/actions", body=body),
            "Content-Type": "application/json",
        },
    )

    assert [r.status_code for r in (unsigned, wrong, first, replay, elsewhere)] == [
        401,
        401,
        200,
        401,
        401,
    ]
    assert _error(replay.json())["code"] == "nonce_replayed"


def test_logs_outside_the_allow_list_are_forbidden(executor: ExecutorHarness) -> None:
    response = _read_logs(executor, _logs_body(namespace="kube-system", deployment="coredns"))

    assert response.status_code == 403
    assert _error(response.json())["code"] == "namespace_not_allowed"
    assert not any(r.path.endswith("/log") for r in executor.fake.requests)


# Names the API server refuses (apimachinery's IsDNS1123Subdomain: DNS-1123 labels joined by
# single dots, at most 253 characters), which the pattern of one character class let through.
NOT_SUBDOMAINS = ["a..b", "a.-b", "a-.b", "web.", "a." + "b" * 252]


@pytest.mark.parametrize("action", ["restart_deployment", "delete_pod"])
@pytest.mark.parametrize("name", NOT_SUBDOMAINS)
def test_a_name_kubernetes_would_refuse_is_422_before_anything_is_sent(
    executor: ExecutorHarness, action: str, name: str
) -> None:
    before = executor.fake.snapshot()
    response = executor.post(action_body(action=action, name=name, params={}))

    assert response.status_code == 422
    error = _error(response.json())
    assert error["code"] == "invalid_action_request"
    assert error["message"].startswith("name: ")
    assert "\n" not in error["message"]
    assert executor.fake.requests == []
    _unchanged(executor, before)


@pytest.mark.parametrize("target", ["deployment", "pod"])
@pytest.mark.parametrize("name", NOT_SUBDOMAINS)
def test_a_log_request_naming_a_name_kubernetes_would_refuse_is_422(
    executor: ExecutorHarness, target: str, name: str
) -> None:
    response = _read_logs(executor, {"namespace": "demo", target: name, "requested_by": "ai"})

    assert response.status_code == 422
    assert _error(response.json())["message"].startswith(f"{target}: ")
    assert executor.fake.requests == []


@pytest.mark.parametrize("name", ["web", "web-1", "a.b", "9to5.example-app", "x" * 70 + ".y"])
def test_a_dns_subdomain_is_a_valid_name(executor: ExecutorHarness, name: str) -> None:
    """A subdomain's parts may be longer than 63 characters: the API server checks only the
    whole (IsDNS1123Subdomain), so the executor must not refuse what kubectl can act on."""
    response = executor.post(action_body(action="restart_deployment", name=name, params={}))

    assert response.status_code != 422, response.text


@pytest.mark.parametrize(
    ("over", "why"),
    [
        ({"pod": "web-1"}, "name exactly one of deployment and pod"),
        ({"deployment": None}, "name exactly one of deployment and pod"),
        ({"max_lines": 0}, "max_lines"),
        ({"deployment": "Web"}, "deployment"),
    ],
)
def test_a_bad_log_request_is_422_with_one_line(
    executor: ExecutorHarness, over: dict[str, object], why: str
) -> None:
    response = _read_logs(executor, _logs_body(**over))

    assert response.status_code == 422
    assert why in _error(response.json())["message"]


def test_the_kill_switch_stops_actions_not_reading_logs(
    make_executor: Callable[..., ExecutorHarness],
) -> None:
    executor = make_executor(executor_enabled=False)

    assert _read_logs(executor, _logs_body()).status_code == 200
    assert executor.post(action_body()).status_code == 503


@pytest.mark.parametrize("path", ["/v1/actions", "/v1/logs"])
def test_a_signed_body_with_a_hostile_value_anywhere_is_refused_before_the_cluster(
    executor: ExecutorHarness, path: str
) -> None:
    # what a compromised or buggy backend could sign: one hostile value in one field
    valid = action_body(params={"replicas": 4}) if path == "/v1/actions" else _logs_body()
    statuses = set()
    for n, (where, value) in enumerate(
        (where, value) for where in leaves(valid) for value in HOSTILE_VALUES
    ):
        body = replaced(valid, where, value)
        if path == "/v1/actions" and where != ("idempotency_key",):
            body["idempotency_key"] = f"fuzz-{n}"  # each request is a new action
        mutations = len(executor.fake.mutating_requests())
        response = executor.post(body, path=path)
        statuses.add(response.status_code)
        shown = f"{'.'.join(map(str, where))} = {str(value)[:20]!r}"
        assert response.status_code in (200, 403, 409, 422), f"{shown}: {response.text[:300]}"
        if value == "nul\x00byte":  # no identifier, name or requester holds a control character
            assert response.status_code == 422, shown
        if response.status_code != 200:
            assert "\n" not in _error(response.json())["message"], shown
            assert len(executor.fake.mutating_requests()) == mutations, shown
    assert 422 in statuses
