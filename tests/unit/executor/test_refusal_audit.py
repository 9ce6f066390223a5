"""The executor audits who it refused: bad signatures and signed requests outside its own
allow-list land in the audit chain (repeats folded, the folded count written at shutdown); what
the backend sent and gets answered (kill switch, malformed bodies) is the backend's to audit."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aegis.audit import verify
from aegis.database.core import Database
from tests.support.factories import audit_events
from tests.unit.executor.conftest import SECRET, ExecutorHarness, action_body

WRONG_SECRET = "not-the-executor-secret-" + "x" * 20


def _records(harness: ExecutorHarness, event_type: str) -> list[dict[str, Any]]:
    database = Database(harness.settings.effective_database_url)
    try:
        return [
            {"actor": e.actor, "resource": e.resource, **json.loads(e.data)}
            for e in audit_events(database, event_type)
        ]
    finally:
        database.dispose()


def test_a_bad_signature_is_audited_and_repeats_are_counted_by_shutdown(
    executor: ExecutorHarness,
) -> None:
    for _ in range(3):
        assert executor.post(action_body(), secret=WRONG_SECRET).status_code == 401

    [first] = _records(executor, "authentication.failed")
    assert first["actor"] == "anonymous"
    assert first["resource"] == "POST /v1/actions"
    assert first["service"] == "executor"
    assert first["code"] == "signature_invalid"
    assert first["ip"] == "testclient"
    assert first["repeats"] == 0
    assert SECRET not in json.dumps(first) and WRONG_SECRET not in json.dumps(first)

    executor.client.__exit__(None, None, None)  # shutdown writes what was folded

    _, folded = _records(executor, "authentication.failed")
    assert (folded["repeats"], folded.get("flushed")) == (2, True)


def test_a_replayed_request_is_audited(executor: ExecutorHarness) -> None:
    assert executor.post(action_body()).status_code == 200
    replay = executor.client.post(
        "/v1/actions",
        content=json.dumps(action_body()).encode(),
        headers={**executor.sent[-1], "Content-Type": "application/json"},
    )

    assert replay.status_code == 401
    [record] = _records(executor, "authentication.failed")
    assert record["code"] == "nonce_replayed"


def test_a_signed_request_outside_the_allow_list_is_denied_to_its_requester(
    executor: ExecutorHarness,
) -> None:
    namespace = executor.post(action_body(namespace="kube-system", name="coredns"))
    bounds = executor.post(action_body(params={"replicas": 10_000}, idempotency_key="idem-2"))
    logs = executor.post(
        {"namespace": "kube-system", "deployment": "coredns", "requested_by": "bob"},
        path="/v1/logs",
    )

    assert [r.status_code for r in (namespace, bounds, logs)] == [403, 422, 403]
    denied = _records(executor, "access.denied")
    assert [(d["actor"], d["code"], d["resource"]) for d in denied] == [
        ("alice", "namespace_not_allowed", "POST /v1/actions"),
        ("alice", "replicas_out_of_bounds", "POST /v1/actions"),
        ("bob", "namespace_not_allowed", "POST /v1/logs"),
    ]


def test_the_kill_switch_and_a_malformed_body_are_not_audited_here(
    make_executor: Callable[..., ExecutorHarness],
) -> None:
    stopped = make_executor(executor_enabled=False)
    running = make_executor()

    assert stopped.post(action_body()).status_code == 503
    assert running.post(action_body(action="drop_database")).status_code == 422
    assert _records(running, "authentication.failed") == []
    assert _records(running, "access.denied") == []


def test_the_chain_stays_verifiable_under_refusals(executor: ExecutorHarness) -> None:
    for i in range(5):
        executor.post(action_body(idempotency_key=f"k{i}"), secret=WRONG_SECRET)
        executor.post(action_body(namespace="kube-system", idempotency_key=f"n{i}"))
    executor.client.__exit__(None, None, None)

    database = Database(executor.settings.effective_database_url)
    try:
        with database.unit_of_work() as session:
            report = verify.verify(session=session, store=None, public_key=None)
    finally:
        database.dispose()
    assert report.ok, report.problems
    assert report.entries == 4  # two kinds: a record at once and one at shutdown each
