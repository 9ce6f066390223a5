"""Request fields holding text no database can keep: a NUL character (PostgreSQL's text cannot
hold one, SQLite's can) and half of a surrogate pair (JSON's ``"\\ud800"``, which Python's
parser takes). Each field gets the same answer on both databases (docs/security.md, Bad input):
an identifier, key, digest or hash is 422 ``invalid_request`` naming the field; free text is
stored with U+FFFD where the character was."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from aegis.core.config import Settings
from aegis.database.core import Database
from tests.support import factories
from tests.support.actions import World, pending_with_hash, world_of
from tests.support.alerts import WEBHOOK_PATH, alert, payload
from tests.support.releases import MODEL, Releases

UNSTORABLE = {"nul": "a\x00b", "surrogate": "a\ud800b"}
KEPT = "a\ufffdb"
_KEYS = itertools.count(1)


@dataclass
class Place:
    world: World
    admin: dict[str, str]
    engine: dict[str, str]
    webhook: dict[str, str]
    tmp: Path

    def post(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        # json.dumps escapes a lone surrogate as "\ud800", as a client's JSON would
        content = json.dumps(body).encode()
        answer: httpx.Response = self.world.api.post(
            url, content=content, headers={**headers, "Content-Type": "application/json"}
        )
        return answer

    def action(self, headers: dict[str, str] | None = None, /, **over: Any) -> httpx.Response:
        body = {
            "action": "restart_deployment",
            "namespace": "demo",
            "name": "web",
            "idempotency_key": f"unstorable-{next(_KEYS)}",
            "reason": "test",
            **over,
        }
        return self.post("/api/v1/actions", body, headers or self.world.operator)


@pytest.fixture
def place(
    make_settings: Callable[..., Settings], db_url: str, database: Database, tmp_path: Path
) -> Iterator[Place]:
    settings = make_settings(database_url=db_url, executor_backend="local")
    with world_of(settings, database) as world:
        yield Place(
            world=world,
            admin=factories.signed_in(world.api, database, "admin"),
            engine={"X-API-Key": settings.secret("api_key")},
            webhook={"Authorization": f"Bearer {settings.secret('alert_webhook_token')}"},
            tmp=tmp_path,
        )


# -- identifiers, keys, digests, hashes: refused ------------------------------------------------


def _incident_kind(place: Place, value: str) -> httpx.Response:
    return place.action(place.engine, incident_kind=value)  # only the engine names one


def _approval_hash(place: Place, value: str) -> httpx.Response:
    action_id, good = pending_with_hash(place.world, 2)
    return place.post(
        f"/api/v1/actions/{action_id}/approve",
        {"approval_hash": good[:-1] + value[1], "comment": ""},
        place.world.approver,
    )


def _login_username(place: Place, value: str) -> httpx.Response:
    return place.post("/api/v1/auth/login", {"username": value, "password": "x" * 12}, {})


def _target(field: str) -> Callable[[Place, str], httpx.Response]:
    return lambda place, value: place.action(**{field: value})


REFUSED: dict[str, Callable[[Place, str], httpx.Response]] = {
    "action": _target("action"),
    "namespace": _target("namespace"),
    "name": _target("name"),
    "idempotency_key": _target("idempotency_key"),
    "incident_kind": _incident_kind,
    "model_digest": _target("model_digest"),
    "approval_hash": _approval_hash,
    "username": _login_username,
}


@pytest.mark.parametrize("value", UNSTORABLE.values(), ids=UNSTORABLE.keys())
@pytest.mark.parametrize("field", REFUSED)
def test_an_identifier_holding_unstorable_text_is_422_naming_it(
    place: Place, field: str, value: str
) -> None:
    sent = REFUSED[field](place, value)
    assert sent.status_code == 422, sent.text
    error = sent.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"].startswith(f"{field}: ")
    assert "\n" not in error["message"]


# -- free text: kept, with U+FFFD for the character --------------------------------------------


def _reason(place: Place, value: str) -> str:
    sent = place.action(reason=value)
    assert sent.status_code == 201, sent.text
    return str(place.world.action(sent.json()["id"])["reason"])


EVENTS = {"approve": "action.approved", "reject": "action.rejected"}


def _action_comment(decision: str) -> Callable[[Place, str], str]:
    def send(place: Place, value: str) -> str:
        action_id, good = pending_with_hash(place.world, 2)
        body = {"approval_hash": good} if decision == "approve" else {}
        sent = place.post(
            f"/api/v1/actions/{action_id}/{decision}",
            {**body, "comment": value},
            place.world.approver,
        )
        assert sent.status_code == 200, sent.text
        (event,) = factories.audit_events(place.world.database, EVENTS[decision])
        return str(json.loads(event.data)["comment"])

    return send


def _drill_note(place: Place, value: str) -> str:
    sent = place.post("/api/v1/safety/drill", {"note": value}, place.admin)
    assert sent.status_code == 201, sent.text
    return str(sent.json()["excerpt"])


def _review_note(place: Place, value: str) -> str:
    flag = place.post("/api/v1/safety/drill", {"note": "drill"}, place.admin).json()
    sent = place.post(
        f"/api/v1/safety/flags/{flag['id']}/review",
        {"verdict": "dismissed", "note": value},
        place.world.approver,
    )
    assert sent.status_code == 200, sent.text
    return str(sent.json()["review_note"])


def _promotion_comment(decision: str) -> Callable[[Place, str], str]:
    def send(place: Place, value: str) -> str:
        Releases.start(place.tmp, place.world.database).push("0.1")
        models = f"/api/v1/models/{MODEL}/0.1/promotions"
        asked = place.post(models, {"to": "production"}, place.world.operator).json()
        sent = place.post(
            f"/api/v1/models/promotions/{asked['id']}/{decision}",
            {"comment": value},
            place.world.approver,
        )
        assert sent.status_code == 200, sent.text
        listed = place.world.api.get("/api/v1/models/promotions", headers=place.admin).json()
        return str(listed[0]["comment"])

    return send


def _webhook(field: str) -> Callable[[Place, str], str]:
    def send(place: Place, value: str) -> str:
        firing = alert("Unstorable", namespace="demo")
        body = payload(firing)
        if field in body:
            body[field] = value
        else:
            firing[field] = value
        sent = place.post(WEBHOOK_PATH, body, place.webhook)
        assert sent.status_code == 200, sent.text
        if field != "fingerprint":
            return KEPT  # not shown anywhere: what counts is that the alert was taken
        incident = sent.json()["incidents"][0]
        detail = place.world.api.get(f"/api/v1/incidents/{incident}", headers=place.admin)
        return str(detail.json()["alerts"][0]["fingerprint"])

    return send


KEPT_AS_TEXT: dict[str, Callable[[Place, str], str]] = {
    "action reason": _reason,
    "action approve comment": _action_comment("approve"),
    "action reject comment": _action_comment("reject"),
    "safety drill note": _drill_note,
    "safety review note": _review_note,
    "promotion approve comment": _promotion_comment("approve"),
    "promotion reject comment": _promotion_comment("reject"),
    "alert fingerprint": _webhook("fingerprint"),
    "alert generatorURL": _webhook("generatorURL"),
    "webhook groupKey": _webhook("groupKey"),
    "webhook receiver": _webhook("receiver"),
}


@pytest.mark.parametrize("value", UNSTORABLE.values(), ids=UNSTORABLE.keys())
@pytest.mark.parametrize("field", KEPT_AS_TEXT)
def test_free_text_holding_unstorable_text_is_kept_with_a_replacement_character(
    place: Place, field: str, value: str
) -> None:
    assert KEPT_AS_TEXT[field](place, value) == KEPT
