"""The backend asks the real engine about incidents; recommendations go through policy;
without the engine, incidents are kept and say why (fallback mode)."""

from __future__ import annotations

import http.server
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from aegis.actions.models import ActionOutcome
from aegis.backend_app import create_app
from aegis.core.config import Settings
from aegis.database.core import Database
from aegis.engine.app import create_app as engine_app
from aegis.engine.model import train
from aegis.engine.schemas import MAX_OUTCOME_STATS
from aegis.engine.state import ModelHolder
from aegis.incidents import engine_client, jobs
from aegis.incidents.models import Incident
from tests.support import factories
from tests.support.alerts import alert, deliver
from tests.support.fake_kube import FakeKubeApiServer
from tests.support.floods import flooding
from tests.support.pipeline import executor_over
from tests.support.services import free_port, serving

ALLOW_AI = {
    "id": "ai-restarts",
    "effect": "allow",
    "subjects": ["principal:ai-engine"],
    "actions": ["*"],
    "resources": {"namespaces": ["demo"], "names": ["*"]},
}
# KubePodCrashLooping (kube-state-metrics) names the pod: the target of the engine's delete_pod
CRASHING_POD = "web-5d4f8b7c9-x2k4q"


def _seed(
    api: TestClient,
    settings: Settings,
    database: Database,
    name: str,
    starts_at: str | None = None,
    **labels: str,
) -> dict[str, str]:
    admin = factories.signed_in(api, database, "admin")
    api.post("/api/v1/policy", json=ALLOW_AI, headers=admin)
    raised = alert(name, namespace="demo", deployment="web", severity="critical", **labels)
    if starts_at is not None:
        raised["startsAt"] = starts_at
    deliver(api, settings.secret("alert_webhook_token"), raised)
    return admin


def _asking(make_settings: Callable[..., Settings], db_url: str) -> Settings:
    """A backend's settings that ask the engine at the URL :func:`_engine` serves."""
    settings: Settings = make_settings(
        database_url=db_url, ai_engine_enabled=True, ai_engine_url="http://engine"
    )
    return settings


def _engine(settings: Settings, holder: ModelHolder | None = None) -> TestClient:
    """The real engine app, serving a freshly trained model (or ``holder``'s), at the URL the
    backend is configured with."""
    if holder is None:
        holder = ModelHolder()
        holder.swap(train())
    return TestClient(engine_app(settings, holder=holder), base_url="http://engine")


def test_incident_gets_a_prediction_and_the_recommendation_becomes_an_action(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    settings = _asking(make_settings, db_url)
    with (
        TestClient(create_app(settings)) as api,
        _engine(settings) as engine,
    ):
        admin = _seed(api, settings, database, "KubePodCrashLooping", pod=CRASHING_POD)
        assert jobs.predict_pending(database, settings, engine) == 1
        incident: dict[str, Any] = api.get("/api/v1/incidents", headers=admin).json()["items"][0]
        actions = api.get("/api/v1/actions", headers=admin).json()["items"]
    assert incident["prediction_status"] == "ok", incident["prediction_note"]
    prediction = incident["prediction"]
    assert prediction["recommendations"] and prediction["model"]["digest"]
    assert len(actions) == 1
    action = actions[0]
    assert action["requested_by"] == "ai-engine"
    assert action["decision"] == "allow"
    assert action["model_digest"] == prediction["model"]["digest"][:128]
    assert action["action"] == prediction["recommendations"][0]["action"]
    assert action["confidence"] == prediction["recommendations"][0]["confidence"]
    assert (action["namespace"], action["name"]) == ("demo", CRASHING_POD)


def test_without_the_engine_incidents_are_kept_and_say_why(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    down = make_settings(
        database_url=db_url, ai_engine_enabled=True, ai_engine_url=f"http://127.0.0.1:{free_port()}"
    )
    with TestClient(create_app(down)) as api:
        admin = _seed(api, down, database, "HighErrorRate")
        jobs.predict_pending(database, down)
        incident = api.get("/api/v1/incidents", headers=admin).json()["items"][0]
    assert incident["prediction_status"] == "unavailable"
    assert "stored without a prediction" in incident["prediction_note"]


def test_engine_calls_can_be_switched_off(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    off = make_settings(database_url=db_url, ai_engine_enabled=False)
    with TestClient(create_app(off)) as api:
        admin = _seed(api, off, database, "HighErrorRate")
        jobs.predict_pending(database, off)
        incident = api.get("/api/v1/incidents", headers=admin).json()["items"][0]
    assert incident["prediction_status"] == "disabled"


def test_the_engine_reads_the_workloads_log_lines_through_the_executor(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    """Backend -> executor (signed ``/v1/logs``, kubernetes backend on the FAKE API server) ->
    the engine mines the lines: a panic that only appears after the alert began is new."""
    settings = make_settings(
        database_url=db_url,
        ai_engine_enabled=True,
        ai_engine_url="http://engine",
        executor_backend="kubernetes",
        executor_allowed_namespaces=["demo"],
    )
    now = time.time()
    with FakeKubeApiServer() as fake:
        fake.add_deployment("demo", "web", replicas=2)
        for pod in fake.pod_names("demo"):
            quiet = [(now - 3000 + i * 30, b"GET /health 200 in 3ms") for i in range(90)]
            broken = [
                (now - 60 + i, b"panic: runtime error: invalid memory address") for i in range(8)
            ]
            fake.add_log_lines("demo", pod, quiet + broken)
        with (
            TestClient(create_app(settings)) as api,
            _engine(settings) as engine,
            executor_over(settings, fake) as executor,
        ):
            started = datetime.fromtimestamp(now - 120, tz=UTC).isoformat()
            admin = _seed(api, settings, database, "WorkloadDegraded", started)
            assert jobs.predict_pending(database, settings, engine, executor=executor) == 1
            incident = api.get("/api/v1/incidents", headers=admin).json()["items"][0]
        log_reads = [r for r in fake.requests if r.path.endswith("/log")]

    assert incident["prediction_status"] == "ok"
    assert incident["prediction_note"].endswith("; 196 log lines from 2 pods")
    logs = incident["prediction"]["logs"]
    assert logs["lines"] == 196
    panic = next(e for e in logs["evidence"] if e["template"].startswith("panic:"))
    assert panic["kind"] == "new" and panic["recent_count"] == 16
    assert "crash" in panic["signatures"]
    assert len(log_reads) == 2 and all(r.query["timestamps"] == "true" for r in log_reads)


# --- several backends ------------------------------------------------------------------------


def test_two_backends_ask_the_engine_about_an_incident_once(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    """The second backend's pass runs while the first one is waiting for the engine: it finds
    the incident claimed and leaves it (without the claim it would ask again)."""
    settings = _asking(make_settings, db_url)
    holder = ModelHolder()
    holder.swap(train())
    asked: list[str] = []
    second_pass: list[int] = []
    with (
        TestClient(create_app(settings)) as api,
        _engine(settings, holder) as first,
        _engine(settings, holder) as second,
    ):

        def first_waits(request: httpx.Request) -> None:
            asked.append("first")
            if len(second_pass) == 0:
                second_pass.append(jobs.predict_pending(database, settings, second))

        first.event_hooks["request"].append(first_waits)
        second.event_hooks["request"].append(lambda _: asked.append("second"))
        admin = _seed(api, settings, database, "KubePodCrashLooping", pod=CRASHING_POD)
        assert jobs.predict_pending(database, settings, first) == 1
        incident = api.get("/api/v1/incidents", headers=admin).json()["items"][0]
        actions = api.get("/api/v1/actions", headers=admin).json()["items"]

    assert second_pass == [0]
    assert asked == ["first"]
    assert incident["prediction_status"] == "ok"
    assert len(actions) == 1


def _age_claim(database: Database, incident_id: int, seconds: float) -> None:
    with database.unit_of_work() as session:
        incident = session.get_one(Incident, incident_id)
        assert incident.prediction_claimed_at is not None
        incident.prediction_claimed_at -= timedelta(seconds=seconds)


def test_a_dead_backends_claim_is_taken_over_once_its_lease_runs_out(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    settings = make_settings(database_url=db_url, ai_engine_enabled=False)
    with TestClient(create_app(settings)) as api:
        admin = _seed(api, settings, database, "HighErrorRate")
        incident_id = api.get("/api/v1/incidents", headers=admin).json()["items"][0]["id"]
        dead = jobs._claim(database, incident_id)  # a backend that claimed it, then died
        assert dead is not None

        fresh_pass = jobs.predict_pending(database, settings)
        held = api.get(f"/api/v1/incidents/{incident_id}", headers=admin).json()
        _age_claim(database, incident_id, jobs.PREDICTION_LEASE_S + 1)
        late_pass = jobs.predict_pending(database, settings)
        taken_over = api.get(f"/api/v1/incidents/{incident_id}", headers=admin).json()

    assert (fresh_pass, held["prediction_status"]) == (0, "predicting")
    assert (late_pass, taken_over["prediction_status"]) == (1, "disabled")


def test_a_backend_that_lost_its_claim_does_not_store_its_answer(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    settings = make_settings(database_url=db_url, ai_engine_enabled=False)
    with TestClient(create_app(settings)) as api:
        admin = _seed(api, settings, database, "HighErrorRate")
        incident_id = api.get("/api/v1/incidents", headers=admin).json()["items"][0]["id"]
        slow = jobs._claim(database, incident_id)
        assert slow is not None
        _age_claim(database, incident_id, jobs.PREDICTION_LEASE_S + 1)
        other = jobs._claim(database, incident_id)
        assert other is not None

        stored_late = jobs._store(database, slow, None, "unavailable", "the slow backend's")
        stored = jobs._store(database, other, None, "unavailable", "the other backend's")
        incident = api.get(f"/api/v1/incidents/{incident_id}", headers=admin).json()

    assert (stored_late, stored) == (False, True)
    assert incident["prediction_note"] == "the other backend's"


def test_a_large_outcome_table_sends_the_best_known_counts_and_still_predicts(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    """A kind per alert name and action can outgrow what one request may carry: the counts
    with the most outcomes behind them are sent, the prediction is still made."""
    settings = _asking(make_settings, db_url)
    known = MAX_OUTCOME_STATS + 500  # more than the engine takes in one request
    with database.unit_of_work() as session:
        session.execute(
            insert(ActionOutcome),
            [
                {"incident_kind": f"Alert{i:05d}", "action": "restart_deployment"}
                | {"successes": i, "failures": 0}
                for i in range(known)
            ],
        )
    sent: list[dict[str, Any]] = []
    with (
        TestClient(create_app(settings)) as api,
        _engine(settings) as engine,
    ):
        engine.event_hooks["request"].append(lambda r: sent.append(json.loads(r.read())))
        admin = _seed(api, settings, database, "KubePodCrashLooping")
        assert jobs.predict_pending(database, settings, engine) == 1
        incident = api.get("/api/v1/incidents", headers=admin).json()["items"][0]

    assert incident["prediction_status"] == "ok", incident["prediction_note"]
    kinds = {s["incident_kind"] for s in sent[0]["outcome_stats"]}
    assert len(kinds) == engine_client.MAX_STATS_SENT
    assert f"Alert{known - 1:05d}" in kinds and "Alert00000" not in kinds


def test_an_incident_resolved_before_it_was_asked_about_says_so(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    settings = _asking(make_settings, db_url)
    asked: list[httpx.Request] = []
    with (
        TestClient(create_app(settings)) as api,
        _engine(settings) as engine,
    ):
        engine.event_hooks["request"].append(asked.append)
        admin = _seed(api, settings, database, "KubePodCrashLooping")
        resolved = alert(
            "KubePodCrashLooping",
            status="resolved",
            namespace="demo",
            deployment="web",
            severity="critical",
        )
        deliver(api, settings.secret("alert_webhook_token"), resolved)
        handled = jobs.predict_pending(database, settings, engine)
        incident = api.get("/api/v1/incidents", headers=admin).json()["items"][0]
        actions = api.get("/api/v1/actions", headers=admin).json()["items"]

    assert (handled, asked, actions) == (0, [], [])
    assert incident["status"] == "resolved"
    assert incident["prediction_status"] == "skipped"
    assert "resolved before" in incident["prediction_note"]


def test_a_recommendation_acts_only_on_the_target_the_alert_names(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    """An alert naming no deployment or pod (here a scrape job's) is grouped under that job's
    name, but the engine's recommendation has no target: no action is requested on a pod or
    deployment of the job's name, which the alert never concerned."""
    settings = _asking(make_settings, db_url)
    raised = alert("KubePodCrashLooping", namespace="demo", severity="critical")
    del raised["labels"]["deployment"]
    raised["labels"]["job"] = "kube-state-metrics"
    with (
        TestClient(create_app(settings)) as api,
        _engine(settings) as engine,
    ):
        admin = factories.signed_in(api, database, "admin")
        api.post("/api/v1/policy", json=ALLOW_AI, headers=admin)
        deliver(api, settings.secret("alert_webhook_token"), raised)
        assert jobs.predict_pending(database, settings, engine) == 1
        incident = api.get("/api/v1/incidents", headers=admin).json()["items"][0]
        actions = api.get("/api/v1/actions", headers=admin).json()["items"]

    assert incident["workload"] == "kube-state-metrics"
    assert incident["prediction_status"] == "ok"
    assert incident["prediction"]["recommendations"][0]["action"] != "none"
    assert actions == []


@contextmanager
def _answering(body: bytes, status: int = 200) -> Iterator[str]:
    """Not an engine: an HTTP server answering every POST with ``status`` and ``body`` (a
    proxy's page, a service put at the wrong URL, an engine gone wrong). Yields its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    with serving(Handler) as url:
        yield url


def _pass_over_two_incidents(
    make_settings: Callable[..., Settings],
    db_url: str,
    database: Database,
    answer: bytes,
    status: int = 200,
) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
    """Two incidents (a crash loop, an error rate) predicted in one pass by an engine that
    answers ``status`` and ``answer``: how many the pass handled, the incidents and the action
    requests."""
    with _answering(answer, status) as url:
        settings = make_settings(database_url=db_url, ai_engine_enabled=True, ai_engine_url=url)
        with TestClient(create_app(settings)) as api:
            admin = _seed(api, settings, database, "KubePodCrashLooping")
            deliver(
                api,
                settings.secret("alert_webhook_token"),
                alert("HighErrorRate", namespace="demo", deployment="api"),
            )
            handled = jobs.predict_pending(database, settings)
            incidents = api.get("/api/v1/incidents", headers=admin).json()["items"]
            actions = api.get("/api/v1/actions", headers=admin).json()["items"]
    return handled, incidents, actions


@pytest.mark.parametrize(
    "answer",
    [
        b"<html>Welcome to nginx!</html>",
        b"[]",
        b'{"severity": "high"}',
        b'{"recommendations": ["restart everything"]}',
        b'{"recommendations": [{"action": "delete_pod", "target": "demo/web"}]}',
        b'{"severity": {"level": ["critical"]}}',
        # not JSON (RFC 8259), though Python reads them: PostgreSQL refused to store them
        b'{"severity": {"level": "critical"}, "recommendations": [], "score": NaN}',
        b'{"severity": {"level": "critical"}, "recommendations": [], "score": 1e999}',
        # stored, these made the incident list answer 500 to everyone
        b'{"severity": {"level": "critical"}, "recommendations": [], "note": "\\ud800"}',
        b'{"recommendations": [], "evidence": ' + b"[" * 300 + b"]" * 300 + b"}",
        # past Python's recursion limit: reading it raised, which ended the pass
        b'{"recommendations": [], "evidence": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
    ids=lambda answer: answer[:80].decode(),
)
def test_an_answer_that_is_not_a_prediction_is_the_fallback(
    make_settings: Callable[..., Settings], db_url: str, database: Database, answer: bytes
) -> None:
    """Every incident of the pass is stored without a prediction and says why; none is left
    claimed (``predicting``) until its lease runs out, to be asked again and again."""
    handled, incidents, actions = _pass_over_two_incidents(make_settings, db_url, database, answer)

    assert handled == 2
    assert [i["prediction_status"] for i in incidents] == ["unavailable", "unavailable"]
    assert all(
        i["prediction_note"].startswith(
            "stored without a prediction: AI engine answered 200 without a prediction ("
        )
        for i in incidents
    )
    assert actions == []


def test_an_error_answer_nested_past_pythons_limit_is_the_fallback(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    # reading the error's message raised RecursionError, which ended the pass
    answer = b'{"error": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    handled, incidents, _ = _pass_over_two_incidents(
        make_settings, db_url, database, answer, status=503
    )

    assert handled == 2
    assert [i["prediction_status"] for i in incidents] == ["unavailable", "unavailable"]
    assert all("AI engine answered 503: HTTP 503" in i["prediction_note"] for i in incidents)


def test_a_prediction_without_a_severity_is_stored_and_the_alerts_severity_kept(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    """``severity`` may be null in a prediction (as its schema allows): the incident keeps the
    alert's severity. Storing it raised, which left the incident claimed (``predicting``) to be
    asked again once its lease ran out, and ended the pass for the incidents after it."""
    handled, incidents, _ = _pass_over_two_incidents(
        make_settings, db_url, database, b'{"severity": null, "recommendations": []}'
    )

    assert handled == 2
    assert [i["prediction_status"] for i in incidents] == ["ok", "ok"]
    assert [i["severity"] for i in incidents] == ["warning", "critical"]


def test_policy_decides_the_ai_action_with_the_severity_the_incident_shows(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    """The engine rates a warning alert critical: the incident shows critical, and policy
    decides the action request with that severity too (``severities: [critical]``). It was
    decided with the alert's warning, read from the incident before the prediction was stored."""
    answer = {
        "severity": {"level": "critical"},
        "recommendations": [
            {
                "action": "delete_pod",
                "target": {"namespace": "demo", "name": CRASHING_POD},
                "confidence": 0.9,
            }
        ],
    }
    with _answering(json.dumps(answer).encode()) as url:
        settings = make_settings(database_url=db_url, ai_engine_enabled=True, ai_engine_url=url)
        with TestClient(create_app(settings)) as api:
            admin = factories.signed_in(api, database, "admin")
            critical_only = {**ALLOW_AI, "conditions": {"severities": ["critical"]}}
            api.post("/api/v1/policy", json=critical_only, headers=admin)
            raised = alert("KubePodCrashLooping", namespace="demo", pod=CRASHING_POD)
            deliver(api, settings.secret("alert_webhook_token"), raised)
            assert jobs.predict_pending(database, settings) == 1
            incident = api.get("/api/v1/incidents", headers=admin).json()["items"][0]
            actions = api.get("/api/v1/actions", headers=admin).json()["items"]

    assert incident["severity"] == "critical"
    assert [a["decision"] for a in actions] == ["allow"], actions[0]["decision_reason"]


def test_a_recommendation_that_cannot_be_an_action_request_does_not_stop_the_pass(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    """A namespace label longer than Kubernetes allows makes a target no action request can
    have: that incident keeps its prediction without an action, and the next one is asked."""
    settings = _asking(make_settings, db_url)
    token = settings.secret("alert_webhook_token")
    with (
        TestClient(create_app(settings)) as api,
        _engine(settings) as engine,
    ):
        admin = factories.signed_in(api, database, "admin")
        api.post("/api/v1/policy", json=ALLOW_AI, headers=admin)
        deliver(api, token, alert("KubePodCrashLooping", namespace="n" * 70, pod=CRASHING_POD))
        deliver(api, token, alert("KubePodCrashLooping", namespace="demo", pod=CRASHING_POD))
        handled = jobs.predict_pending(database, settings, engine)
        incidents = api.get("/api/v1/incidents", headers=admin).json()["items"]
        actions = api.get("/api/v1/actions", headers=admin).json()["items"]

    assert handled == 2
    assert [i["prediction_status"] for i in incidents] == ["ok", "ok"]
    assert [(a["namespace"], a["name"]) for a in actions] == [("demo", CRASHING_POD)]


def test_an_engine_answer_that_never_ends_is_cut_off_and_is_the_fallback(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    """The backend reads at most MAX_ANSWER_BYTES of it and closes the connection: its memory
    is not the engine's to fill, and the incident goes on without a prediction."""
    cap = 8 * engine_client.MAX_ANSWER_BYTES  # far past what is read, short of a hung test
    with flooding(start=b'{"recommendations": [', cap=cap) as engine:
        settings = make_settings(
            database_url=db_url, ai_engine_enabled=True, ai_engine_url=engine.url
        )
        with TestClient(create_app(settings)) as api:
            admin = _seed(api, settings, database, "KubePodCrashLooping")
            handled = jobs.predict_pending(database, settings)
            incident = api.get("/api/v1/incidents", headers=admin).json()["items"][0]
        cut_off = engine.answers(1)

    assert handled == 1
    assert incident["prediction_status"] == "unavailable"
    assert incident["prediction_note"] == (
        "stored without a prediction: AI engine answered more than 16 MiB"
    )
    assert cut_off == [True] and engine.sent[0] < cap


def test_an_engine_answer_trickling_in_past_the_timeout_is_the_fallback(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    """Each byte comes within the read timeout, the whole answer does not: the backend stops
    waiting after AI_ENGINE_TIMEOUT_S rather than holding the prediction job for as long as
    the engine keeps sending."""
    cap = 600  # bytes, one every 50 ms: half a minute
    with flooding(cap=cap, piece=b" ", every_s=0.05) as engine:
        settings = make_settings(
            database_url=db_url,
            ai_engine_enabled=True,
            ai_engine_url=engine.url,
            ai_engine_timeout_s=0.5,
        )
        with TestClient(create_app(settings)) as api:
            admin = _seed(api, settings, database, "KubePodCrashLooping")
            jobs.predict_pending(database, settings)
            incident = api.get("/api/v1/incidents", headers=admin).json()["items"][0]
        cut_off = engine.answers(1)

    assert incident["prediction_status"] == "unavailable"
    assert incident["prediction_note"] == (
        "stored without a prediction: AI engine took longer than 0.5 s to answer"
    )
    assert cut_off == [True] and engine.sent[0] < cap
