"""Action requests end to end: policy, approval bound to the diff, dispatch at most once,
kill switch, retries while the executor is down, expiry, and the re-check after acting.

The world (``tests/support/actions.py``): the real backend app, the real executor app with its
`local` backend (in-process over its ASGI interface), the dispatcher driven one tick at a time.
"""

from __future__ import annotations

import functools
import itertools
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from aegis.actions import approvals, jobs, sending
from aegis.actions import service as actions
from aegis.actions.errors import ActionStateConflict
from aegis.actions.models import ActionRequest
from aegis.actions.schemas import ActionCreate
from aegis.auth.schemas import Actor
from aegis.core.config import Settings
from aegis.executor.app import create_app as executor_app
from aegis.executor.backends.local import LocalBackend
from aegis.executor.client import ExecutorClient
from aegis.executor.nonces import RedisNonceStore
from aegis.executor.schemas import ExecutorActionRequest, ExecutorActionResult
from aegis.flags import service as flags
from tests.conftest import require
from tests.support import factories, processes
from tests.support.actions import POLICIES, World, chain_ok, pending_with_hash
from tests.support.races import at_once, race
from tests.support.services import free_port


def test_allowed_action_is_executed_once_and_audited_in_order(world: World) -> None:
    before = world.cluster.deployment("demo", "web")
    created = world.request()
    assert created.status_code == 201
    action = created.json()
    assert action["status"] == "approved" and action["decision"] == "allow"
    assert action["decision_policies"] == [{"id": "demo-restarts", "version": 1}]
    world.tick()
    world.tick()
    done = world.action(action["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 1
    assert world.cluster.deployment("demo", "web")["revision"] == before["revision"] + 1
    chain_ok(world)  # includes: executed only after an allow was recorded


def test_denied_action_is_recorded_and_never_dispatched(world: World) -> None:
    action = world.request(namespace="kube-system", name="coredns").json()
    assert action["status"] == "denied"
    assert "kube-freeze" in action["decision_reason"]
    world.tick()
    assert world.action(action["id"])["status"] == "denied"


def test_approval_is_four_eyes_and_bound_to_the_exact_diff(world: World) -> None:
    action = world.request(action="scale_deployment", params={"replicas": 5}).json()
    assert action["status"] == "pending_approval"
    world.tick()  # the dry run fills in the diff and the hash to approve
    pending = world.action(action["id"])
    assert pending["dry_run_diff"] == [{"path": "spec.replicas", "before": 3, "after": 5}]
    url = f"/api/v1/actions/{action['id']}/approve"
    wrong = world.api.post(url, json={"approval_hash": "0" * 64}, headers=world.approver)
    assert wrong.status_code == 409
    own = world.api.post(
        url, json={"approval_hash": pending["approval_hash"]}, headers=world.operator
    )
    assert own.status_code == 403
    ok = world.api.post(
        url, json={"approval_hash": pending["approval_hash"]}, headers=world.approver
    )
    assert ok.status_code == 200 and ok.json()["approved_by"] == world.approver_name
    world.tick()
    assert world.action(action["id"])["status"] == "succeeded"
    assert world.cluster.deployment("demo", "web")["replicas"] == 5
    chain_ok(world)


@pytest.mark.parametrize("change", ["disabled", "no longer an operator"])
def test_a_request_is_not_approved_once_its_requester_lost_the_right_to_ask(
    world: World, change: str
) -> None:
    # An approval lets the action run now, under the requester's name: a requester who left
    # (disabled) or moved team (role taken) no longer has a request an approver can let through.
    from aegis.auth import service as auth_service

    action = world.request(action="scale_deployment", params={"replicas": 5}).json()
    world.tick()
    pending = world.action(action["id"])
    with world.database.unit_of_work() as session:
        if change == "disabled":
            auth_service.set_disabled(
                session=session, username=world.operator_name, disabled=True, actor="admin"
            )
        else:
            auth_service.set_roles(
                session=session, username=world.operator_name, roles=["viewer"], actor="admin"
            )
    url = f"/api/v1/actions/{action['id']}/approve"
    refused = world.api.post(
        url, json={"approval_hash": pending["approval_hash"]}, headers=world.approver
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "approval_refused"
    assert world.operator_name in refused.json()["error"]["message"]
    world.tick()
    stored = world.api.get(f"/api/v1/actions/{action['id']}", headers=world.approver).json()
    assert stored["status"] == "pending_approval"
    assert world.cluster.deployment("demo", "web")["replicas"] == 3
    chain_ok(world)


def _scale_by_hand(world: World, replicas: int) -> None:
    """Someone scales demo/web with kubectl, outside Aegis."""
    world.cluster.apply(
        ExecutorActionRequest(
            action_id="manual",
            action="scale_deployment",
            namespace="demo",
            name="web",
            params={"replicas": replicas},
            idempotency_key="manual",
            requested_by="kubectl",
        ),
        now=datetime.now(UTC),
    )


def test_approval_is_voided_when_the_cluster_changed_before_acting(world: World) -> None:

    action = world.request(action="scale_deployment", params={"replicas": 5}).json()
    world.tick()
    pending = world.action(action["id"])
    world.api.post(
        f"/api/v1/actions/{action['id']}/approve",
        json={"approval_hash": pending["approval_hash"]},
        headers=world.approver,
    )
    # someone scales web to 4 by hand: the approved change (3 -> 5) is no longer what would run
    _scale_by_hand(world, 4)
    world.tick()
    voided = world.action(action["id"])
    assert voided["status"] == "pending_approval" and voided["approved_by"] is None
    assert voided["dry_run_diff"] == [{"path": "spec.replicas", "before": 4, "after": 5}]
    assert voided["approval_hash"] != pending["approval_hash"]
    assert world.cluster.deployment("demo", "web")["replicas"] == 4


WEEKLY_RESTART: dict[str, Any] = {
    "id": "weekly-restart",
    "effect": "allow",
    "subjects": ["role:operator"],
    "actions": ["restart_deployment"],
    "resources": {"namespaces": ["weekly"], "names": ["*"]},
    "conditions": {"max_actions": {"count": 1, "per_minutes": 7 * 24 * 60}},
}


def _ran_days_ago(world: World, action_id: str, days: int) -> None:
    """``action_id`` was requested, and succeeded, ``days`` ago."""
    then = datetime.now(UTC) - timedelta(days=days)
    with world.database.unit_of_work() as session:
        session.execute(
            update(ActionRequest)
            .where(ActionRequest.id == action_id)
            .values(status="succeeded", created_at=then, updated_at=then)
        )


def test_a_weekly_limit_counts_the_actions_of_the_whole_week(world: World) -> None:
    admin = factories.signed_in(world.api, world.database, "admin")
    assert world.api.post("/api/v1/policy", json=WEEKLY_RESTART, headers=admin).status_code == 201
    first = world.request(namespace="weekly", idempotency_key="weekly-1").json()
    assert first["status"] == "approved"
    _ran_days_ago(world, first["id"], 2)

    second = world.request(namespace="weekly", idempotency_key="weekly-2").json()

    assert second["status"] == "denied"
    assert "1 recent action on the target reaches the limit" in second["decision_reason"]


def test_replay_counts_the_history_before_since_that_a_limit_looks_back_on(world: World) -> None:
    admin = factories.signed_in(world.api, world.database, "admin")
    unlimited = {**WEEKLY_RESTART, "conditions": {}}
    assert world.api.post("/api/v1/policy", json=unlimited, headers=admin).status_code == 201
    first = world.request(namespace="weekly", idempotency_key="weekly-1").json()
    _ran_days_ago(world, first["id"], 2)
    second = world.request(namespace="weekly", idempotency_key="weekly-2").json()
    assert (first["decision"], second["decision"]) == ("allow", "allow")

    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    replayed = world.api.post(
        "/api/v1/policy/replay",
        headers=admin,
        json={"since": since, "policies": [WEEKLY_RESTART], "all": True},
    ).json()

    assert [(r["action_id"], r["candidate"]) for r in replayed["rows"]] == [(second["id"], "deny")]


def test_an_approved_restart_runs_though_each_dry_run_stamps_another_time(world: World) -> None:
    admin = factories.signed_in(world.api, world.database, "admin")
    gated = {**POLICIES[1], "id": "api-restarts-gated", "actions": ["restart_deployment"]}
    gated["resources"] = {"namespaces": ["demo"], "names": ["api"]}
    assert world.api.post("/api/v1/policy", json=gated, headers=admin).status_code == 201
    minutes = itertools.count()  # the executor's clock: a minute later at every call

    def clock() -> datetime:
        return datetime(2026, 11, 23, 10, tzinfo=UTC) + timedelta(minutes=next(minutes))

    backend = LocalBackend(world.cluster, clock=clock)
    revision = world.cluster.deployment("demo", "api")["revision"]
    with TestClient(executor_app(world.settings, backend=backend), base_url="http://ex") as ex:
        executor = ExecutorClient(
            "http://ex", world.settings.secret("executor_hmac_secret"), http=ex
        )
        action = world.request(name="api").json()
        assert action["status"] == "pending_approval"
        world.tick(executor)  # the dry run: restartedAt would become 10:00
        approval = world.action(action["id"])["approval_hash"]
        approved = world.api.post(
            f"/api/v1/actions/{action['id']}/approve",
            json={"approval_hash": approval},
            headers=world.approver,
        )
        assert approved.status_code == 200
        world.tick(executor)  # dry-run again at 10:01, then restart at 10:02

    done = world.action(action["id"])
    assert (done["status"], done["approved_by"]) == ("succeeded", world.approver_name)
    assert world.cluster.deployment("demo", "api")["revision"] == revision + 1


def test_a_voided_approval_waits_for_a_new_one_only_as_long_as_the_ttl_says(
    world: World,
) -> None:
    settings = world.settings.model_copy(update={"action_approval_ttl_s": 60.0})
    action_id, approval = pending_with_hash(world, 5)
    approved = world.api.post(
        f"/api/v1/actions/{action_id}/approve",
        json={"approval_hash": approval},
        headers=world.approver,
    )
    assert approved.status_code == 200
    _scale_by_hand(world, 4)  # the approved change is no longer what would run

    jobs.tick(world.database, settings, world.executor)

    voided = world.action(action_id)
    assert voided["status"] == "pending_approval"
    deadline = datetime.fromisoformat(voided["expires_at"])
    assert actions.aware(deadline) <= datetime.now(UTC) + timedelta(seconds=60)


def test_params_the_executor_would_refuse_are_422_up_front(world: World) -> None:
    response = world.request(action="delete_pod", params={"force": True})
    assert response.status_code == 422
    assert "does not take force" in response.json()["error"]["message"]


def test_a_dry_run_the_executor_refuses_is_shown_to_the_approver(world: World) -> None:
    # policy asks for approval; the executor's own bounds (EXECUTOR_MAX_REPLICAS) refuse it
    capped = world.settings.model_copy(update={"executor_max_replicas": 4})
    action = world.request(action="scale_deployment", params={"replicas": 5}).json()
    url = f"/api/v1/actions/{action['id']}/approve"
    with TestClient(executor_app(capped), base_url="http://executor") as ex:
        world.tick(
            ExecutorClient("http://executor", capped.secret("executor_hmac_secret"), http=ex)
        )

    refused = world.action(action["id"])
    approval = world.api.post(url, json={"approval_hash": "0" * 64}, headers=world.approver)

    assert refused["status"] == "pending_approval" and refused["approval_hash"] is None
    assert "replicas 5 is outside the allowed range 0..4" in refused["error"]
    assert approval.status_code == 409
    assert "replicas 5 is outside the allowed range" in approval.json()["error"]["message"]
    world.tick()  # the executor's bounds were raised: the dry run goes through
    shown = world.action(action["id"])
    assert (shown["error"], shown["dry_run_diff"]) == (
        None,
        [{"path": "spec.replicas", "before": 3, "after": 5}],
    )


def test_a_dry_run_that_fails_is_not_offered_as_no_change_to_approve(world: World) -> None:
    action = world.request(action="scale_deployment", name="ghost", params={"replicas": 2})
    world.tick()

    failed = world.action(action.json()["id"])
    approval = world.api.post(
        f"/api/v1/actions/{failed['id']}/approve",
        json={"approval_hash": "0" * 64},
        headers=world.approver,
    )

    assert (failed["dry_run_diff"], failed["approval_hash"]) == (None, None)
    assert "deployment demo/ghost not found" in failed["error"]
    assert approval.status_code == 409
    assert "deployment demo/ghost not found" in approval.json()["error"]["message"]


def test_rejection_and_self_rejection(world: World) -> None:
    action = world.request(action="scale_deployment", params={"replicas": 4}).json()
    url = f"/api/v1/actions/{action['id']}/reject"
    assert world.api.post(url, json={}, headers=world.operator).status_code == 403
    rejected = world.api.post(url, json={"comment": "not now"}, headers=world.approver)
    assert rejected.json()["status"] == "rejected"
    world.tick()
    assert world.cluster.deployment("demo", "web")["replicas"] == 3


def test_the_action_list_pages_through_every_request_newest_first(world: World) -> None:
    # It showed the newest 100 and no more: during a storm the older pending requests could
    # not be found to approve or reject.
    made = [world.request().json()["id"] for _ in range(7)]
    assert _every_page(world) == list(reversed(made))  # newest first, each once, none left out
    with world.database.unit_of_work() as session:  # requested in the same instant: by id
        session.execute(update(ActionRequest).values(created_at=datetime(2026, 11, 24, tzinfo=UTC)))
    assert _every_page(world) == sorted(made, reverse=True)
    valid_id = "00000000-0000-0000-0000-000000000000"
    for cursor in (
        "x|y",
        f"2026-11-24T00:00:00|{valid_id}",
        f"0001-01-01T00:00:00+14:00|{valid_id}",
    ):
        bad = world.api.get("/api/v1/actions", params={"cursor": cursor}, headers=world.operator)
        assert bad.status_code == 422 and "cursor" in bad.json()["error"]["message"], cursor


def _every_page(world: World) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = world.api.get("/api/v1/actions", params=params, headers=world.operator).json()
        seen += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    return seen


def test_idempotency_key_replays_and_conflicts(world: World) -> None:
    first = world.request(idempotency_key="same")
    again = world.request(idempotency_key="same")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    conflict = world.request(idempotency_key="same", name="api")
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"


def test_another_requesters_idempotency_key_is_a_conflict_not_their_request(
    world: World,
) -> None:
    # two people who happen to pick the same key for the same change: the second is told to
    # pick another, not handed the first one's request as if it were their own
    first = world.request(idempotency_key="restart-web").json()
    other = factories.signed_in(world.api, world.database, "operator")
    body = {
        "action": "restart_deployment",
        "namespace": "demo",
        "name": "web",
        "idempotency_key": "restart-web",
    }
    again = world.api.post("/api/v1/actions", json=body, headers=other)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "idempotency_conflict"
    assert world.action(first["id"])["requested_by"] == world.operator_name


def test_unknown_action_type_is_422_and_audited(world: World) -> None:
    response = world.request(action="format_disk")
    assert response.status_code == 422
    admin_read = world.api.get(
        "/api/v1/audit", params={"type": "request.refused"}, headers=world.approver
    ).json()
    assert admin_read["items"] and "format_disk" in admin_read["items"][-1]["data"]["reason"]


def test_kill_switch_holds_dispatch_until_enabled(world: World) -> None:
    with world.database.unit_of_work() as session:
        flags.set_flag(session=session, name=jobs.KILL_SWITCH_FLAG, value="false", actor="t")
    action = world.request().json()
    world.tick()
    assert world.action(action["id"])["status"] == "approved"  # evaluated, recorded, held
    with world.database.unit_of_work() as session:
        flags.set_flag(session=session, name=jobs.KILL_SWITCH_FLAG, value="true", actor="t")
    world.tick()
    assert world.action(action["id"])["status"] == "succeeded"


@dataclass
class SwitchedOffDuringFirstAction:
    """The real executor client, while an operator runs `aegis executor disable` as soon as the
    first real (not dry-run) action of a dispatch has been sent."""

    world: World

    def submit(self, request: ExecutorActionRequest) -> ExecutorActionResult:
        result = self.world.executor.submit(request)
        if not request.dry_run:
            with self.world.database.unit_of_work() as session:
                flags.set_flag(
                    session=session, name=jobs.KILL_SWITCH_FLAG, value="false", actor="t"
                )
        return result


def test_kill_switch_flipped_mid_dispatch_stops_the_rest_of_the_batch(world: World) -> None:
    ids = [world.request(name=name, idempotency_key=name).json()["id"] for name in ("web", "api")]

    world.tick(SwitchedOffDuringFirstAction(world))

    assert sorted(world.action(i)["status"] for i in ids) == ["approved", "succeeded"]
    with world.database.unit_of_work() as session:
        flags.set_flag(session=session, name=jobs.KILL_SWITCH_FLAG, value="true", actor="t")
    world.tick()
    assert [(world.action(i)["status"], world.action(i)["attempts"]) for i in ids] == [
        ("succeeded", 1),
        ("succeeded", 1),
    ]


def test_executor_down_retries_with_backoff_then_runs_once(world: World) -> None:
    dead = ExecutorClient(
        f"http://127.0.0.1:{free_port()}", world.settings.secret("executor_hmac_secret"), timeout=1
    )
    action = world.request().json()
    world.tick(dead)
    waiting = world.action(action["id"])
    # unreachable after sending: it may have acted, so it stays running and is sent again
    assert waiting["status"] == "running" and waiting["attempts"] == 1
    assert "unreachable" in waiting["error"]
    from datetime import UTC, datetime

    from sqlalchemy import update

    from aegis.actions.models import ActionRequest

    with world.database.unit_of_work() as session:  # skip the backoff wait
        session.execute(update(ActionRequest).values(next_attempt_at=datetime.now(UTC)))
    world.tick()
    world.tick()
    assert world.action(action["id"])["status"] == "succeeded"


def test_an_executor_that_answers_not_now_is_retried_not_failed(world: World) -> None:
    # 503 from the executor (switched off with EXECUTOR_ENABLED=false, or its Redis or database
    # down) executed nothing: like an unreachable executor, the action waits and is retried.
    switched_off = world.settings.model_copy(update={"executor_enabled": False})
    with TestClient(executor_app(switched_off), base_url="http://executor") as ex:
        secret = world.settings.secret("executor_hmac_secret")
        before = world.cluster.deployment("demo", "web")
        action = world.request().json()
        world.tick(ExecutorClient("http://executor", secret, http=ex))
    waiting = world.action(action["id"])
    assert (waiting["status"], waiting["attempts"]) == ("approved", 1)
    assert "disabled" in waiting["error"]
    assert world.cluster.deployment("demo", "web") == before
    with world.database.unit_of_work() as session:  # skip the backoff wait
        session.execute(update(ActionRequest).values(next_attempt_at=datetime.now(UTC)))
    world.tick()
    assert world.action(action["id"])["status"] == "succeeded"


def test_an_executor_whose_redis_forgot_its_nonces_is_retried_when_it_says(
    world: World, tmp_path: Path
) -> None:
    # After its Redis restarts the executor refuses, for a while, what was signed before (it
    # may be a replay): 503 nonce_store_reset with Retry-After. Nothing ran: the dispatcher
    # signs the request again after that wait, not at its shorter backoff, and it succeeds.
    require(shutil.which("redis-server") is not None, "redis-server binary is not installed")
    with processes.restartable_redis(tmp_path / "redis") as redis_server:
        client = redis.Redis.from_url(redis_server.url, socket_timeout=2.0)
        nonces = RedisNonceStore(client, margin_s=3)  # signers may be 3 s ahead of it
        nonces.start()
        app = executor_app(world.settings, nonce_store=nonces)
        with TestClient(app, base_url="http://executor") as ex:
            secret = world.settings.secret("executor_hmac_secret")
            executor = ExecutorClient("http://executor", secret, http=ex)
            redis_server.restart()
            before = world.cluster.deployment("demo", "web")
            action = world.request().json()
            world.tick(executor)
            waiting = world.action(action["id"])
            assert (waiting["status"], waiting["attempts"]) == ("approved", 1)
            assert "nonce store" in waiting["error"]
            assert world.cluster.deployment("demo", "web") == before
            with world.database.unit_of_work() as session:
                request = session.get(ActionRequest, action["id"])
                assert request is not None and request.next_attempt_at is not None
                due = actions.aware(request.next_attempt_at)
                assert due >= actions.aware(request.updated_at) + timedelta(seconds=3)

            processes.wait_until("the retry is due", lambda: datetime.now(UTC) >= due)
            world.tick(executor)
    done = world.action(action["id"])
    assert (done["status"], done["attempts"]) == ("succeeded", 2)
    assert world.cluster.deployment("demo", "web")["revision"] == before["revision"] + 1


def test_unanswered_approval_expires(make_settings: Callable[..., Settings], world: World) -> None:
    action = world.request(action="scale_deployment", params={"replicas": 2}).json()
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from aegis.actions.models import ActionRequest

    with world.database.unit_of_work() as session:
        session.execute(
            update(ActionRequest).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    world.tick()
    assert world.action(action["id"])["status"] == "expired"


def _incident(world: World, name: str, status: str = "firing") -> int:
    from tests.support.alerts import alert, deliver

    token = world.settings.secret("alert_webhook_token")
    response = deliver(
        world.api, token, alert(name, namespace="demo", deployment="web", status=status)
    )
    ids: list[int] = response.json()["incidents"]
    return ids[0] if ids else 0


def test_action_is_effective_when_its_incident_resolves(world: World) -> None:
    incident_id = _incident(world, "PodCrashLooping")
    action = world.request(incident_id=incident_id).json()
    world.tick()
    _incident(world, "PodCrashLooping", status="resolved")
    world.tick()
    assert world.action(action["id"])["effective"] == "effective"
    from aegis.actions import service

    with world.database.unit_of_work() as session:
        stats = service.outcome_stats(session=session)
    assert stats[("PodCrashLooping", "restart_deployment")] == {"successes": 1, "failures": 0}
    shown = world.api.get("/api/v1/actions/outcomes", headers=world.operator).json()
    assert {
        "incident_kind": "PodCrashLooping",
        "action": "restart_deployment",
        "successes": 1,
        "failures": 0,
    } in shown


def test_an_action_naming_an_incident_that_does_not_exist_is_refused(world: World) -> None:
    # its outcome would be learnt under a kind the requester chose, and the re-check would read
    # it again on every pass, for ever, waiting for an incident that never resolves
    sent = world.request(incident_id=987654)
    assert sent.status_code == 422, sent.text
    error = sent.json()["error"]
    assert error["code"] == "action_invalid"
    assert "incident 987654 does not exist" in error["message"]
    listed = world.api.get("/api/v1/actions", headers=world.operator).json()
    assert all(a.get("incident_id") != 987654 for a in listed["items"])


def test_a_person_cannot_name_the_kind_an_outcome_is_learnt_under(world: World) -> None:
    # The engine's confidence for a kind of incident, which min_confidence policies let act
    # without a person, is learnt from outcomes: an operator naming the kind could raise it for
    # any kind. A person's action on an incident is learnt under the incident's own kind.
    from aegis.incidents.models import Incident

    incident_id = _incident(world, "PodCrashLooping")
    with world.database.unit_of_work() as session:  # what the engine said of it
        session.get_one(Incident, incident_id).prediction = {"incident_kind": "crash_loop"}
    named = world.request(incident_id=incident_id, incident_kind="saturation")
    assert named.status_code == 422, named.text
    assert "incident_kind" in named.json()["error"]["message"]
    action = world.request(incident_id=incident_id).json()
    world.tick()
    _incident(world, "PodCrashLooping", status="resolved")
    world.tick()
    from aegis.actions import service

    with world.database.unit_of_work() as session:
        stats = service.outcome_stats(session=session)
    assert world.action(action["id"])["effective"] == "effective"
    assert set(stats) == {("crash_loop", "restart_deployment")}


def test_action_is_ineffective_and_incident_escalates_when_it_stays_open(world: World) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from aegis.actions.models import ActionRequest

    incident_id = _incident(world, "HighLatency")
    action = world.request(incident_id=incident_id).json()
    world.tick()
    with world.database.unit_of_work() as session:  # the watch window has passed
        session.execute(
            update(ActionRequest).values(watch_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    world.tick()
    assert world.action(action["id"])["effective"] == "ineffective"
    detail = world.api.get(f"/api/v1/incidents/{incident_id}", headers=world.operator).json()
    assert detail["severity"] == "critical"


def _while_approving(
    world: World,
    action_id: str,
    approval: str,
    second: Callable[[], Any],
    *,
    then: Callable[[], None] = lambda: None,
) -> Any:
    """Approve ``action_id`` in a transaction held open while ``then`` and ``second`` run;
    ``second`` must wait for the approval, or be done refusing."""
    approver = Actor(name=world.approver_name, roles=frozenset({"approver"}))

    def refused_or(result: Callable[[], Any]) -> Any:
        try:
            return result()
        except ActionStateConflict:
            return "refused"

    with world.database.unit_of_work() as session:
        approvals.approve(
            session=session, action_id=action_id, actor=approver, presented_hash=approval
        )
        then()
        racing = race(lambda: refused_or(second))
        assert racing.waiting or racing.result in ("refused", 0), racing.result
    return racing.done()


def test_an_approval_and_a_rejection_at_once_decide_one_after_the_other(world: World) -> None:
    action_id, approval = pending_with_hash(world, 6)
    other = Actor(name=factories.user(world.database, "approver"), roles=frozenset({"approver"}))

    def reject() -> str:
        with world.database.unit_of_work() as session:
            approvals.reject(session=session, action_id=action_id, actor=other, comment="no")
        return "rejected"

    assert _while_approving(world, action_id, approval, reject) == "refused"
    assert world.action(action_id)["status"] == "approved"
    assert not factories.audit_events(world.database, "action.rejected")


def test_an_approval_at_the_deadline_is_not_overwritten_by_the_expiry(world: World) -> None:
    action_id, approval = pending_with_hash(world, 7)
    deadline = datetime.now(UTC) + timedelta(seconds=1)
    with world.database.unit_of_work() as session:
        row = session.get(ActionRequest, action_id)
        assert row is not None
        row.expires_at = deadline

    def deadline_passes() -> None:  # the approval, just in time, is not committed yet
        time.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()) + 0.01)

    expired = _while_approving(
        world,
        action_id,
        approval,
        lambda: jobs.expire_pending(world.database),
        then=deadline_passes,
    )
    assert expired == 0
    assert world.action(action_id)["status"] == "approved"
    world.tick()
    assert world.action(action_id)["status"] == "succeeded"


def test_outcomes_recorded_at_once_are_all_counted(world: World) -> None:
    # several backends (or the re-check job and a rejection) learning at the same moment
    learnt = ActionRequest(incident_kind="race_kind", action="restart_deployment")

    def record(success: bool) -> None:
        with world.database.unit_of_work() as session:
            actions.record_outcome(session=session, request=learnt, success=success)

    at_once([functools.partial(record, n % 2 == 0) for n in range(8)])
    with world.database.unit_of_work() as session:
        stats = actions.outcome_stats(session=session)
    assert stats[("race_kind", "restart_deployment")] == {"successes": 4, "failures": 4}


def test_a_retry_racing_the_original_request_is_its_replay(world: World) -> None:
    # a client that timed out resends the same request while the first is still being recorded
    operator = Actor(name=world.operator_name, roles=frozenset({"operator"}))
    body = ActionCreate(
        action="restart_deployment", namespace="demo", name="web", idempotency_key="retry-1"
    )

    def retry() -> tuple[str, bool]:
        with world.database.unit_of_work() as session:
            request, created = actions.request_action(
                session=session, settings=world.settings, body=body, actor=operator
            )
            return request.id, created

    with world.database.unit_of_work() as session:
        original, created = actions.request_action(
            session=session, settings=world.settings, body=body, actor=operator
        )
        session.flush()
        first_id = original.id
        racing = race(retry)

    assert created is True
    assert racing.done() == (first_id, False)
    assert len(factories.audit_events(world.database, "action.requested")) == 1


def test_two_re_checks_at_once_count_an_outcome_once(world: World) -> None:
    incident_id = _incident(world, "PodOOMKilled")
    action_id = world.request(incident_id=incident_id).json()["id"]
    world.tick()  # executed; the incident is still open
    _incident(world, "PodOOMKilled", status="resolved")

    # another backend's re-check is judging this action right now
    with world.database.unit_of_work() as session:
        judged = session.scalars(
            select(ActionRequest).where(ActionRequest.id == action_id).with_for_update()
        ).one()
        actions.record_outcome(session=session, request=judged, success=True)
        judged.effective = "effective"
        session.flush()
        racing = race(lambda: jobs.recheck(world.database))
    racing.done()

    with world.database.unit_of_work() as session:
        stats = actions.outcome_stats(session=session)
    assert stats[("PodOOMKilled", "restart_deployment")] == {"successes": 1, "failures": 0}


def _claimed_by_a_backend_that_stops(world: World) -> str:
    action_id: str = world.request().json()["id"]
    assert jobs._due(world.database) == [action_id]
    assert jobs._claim(world.database, action_id)  # claimed ('running'), then nothing
    return action_id


def _lease_runs_out(world: World, action_id: str) -> None:
    with world.database.unit_of_work() as session:
        request = actions.get(session=session, action_id=action_id)
        request.updated_at = actions.now() - timedelta(seconds=jobs.RUNNING_LEASE_S + 1)


def test_an_action_left_running_by_a_stopped_backend_is_dispatched_again(world: World) -> None:
    before = world.cluster.deployment("demo", "web")["revision"]
    action_id = _claimed_by_a_backend_that_stops(world)

    world.tick()  # within the lease the claim is respected
    held = world.action(action_id)
    _lease_runs_out(world, action_id)
    world.tick()
    world.tick()

    assert held["status"] == "running"
    assert world.action(action_id)["status"] == "succeeded"
    assert world.cluster.deployment("demo", "web")["revision"] == before + 1
    reclaimed = factories.audit_events(world.database, "action.dispatch_reclaimed")
    assert [json.loads(e.data)["action_id"] for e in reclaimed] == [action_id]
    chain_ok(world)


def test_a_stopped_backend_that_had_already_acted_is_not_acted_on_twice(world: World) -> None:
    before = world.cluster.deployment("demo", "web")["revision"]
    action_id = _claimed_by_a_backend_that_stops(world)
    with world.database.unit_of_work() as session:  # it reached the executor, then stopped
        request = actions.get(session=session, action_id=action_id)
        outgoing = sending.executor_request(request, dry_run=False, key=request.id)
    assert world.executor.submit(outgoing).status == "succeeded"

    _lease_runs_out(world, action_id)
    world.tick()
    world.tick()

    done = world.action(action_id)
    assert done["status"] == "succeeded"
    assert done["result"]["idempotent_replay"] is True
    assert world.cluster.deployment("demo", "web")["revision"] == before + 1
