"""Action requests whose values pass JSON parsing but cannot be hashed, stored or compared:
refused with one 422 line, never a 500."""

from __future__ import annotations

import pytest

from aegis.actions.service import STATUSES as ACTION_STATUSES
from tests.support.actions import World

# Python's JSON parser takes NaN, Infinity and a number past a float's range (read as
# Infinity), and an escaped half of a surrogate pair: none has a canonical JSON form, which the
# request's hash (its idempotency check) and the audit record are computed over.
UNHASHABLE_PARAMS = [
    '{"replicas": NaN}',
    '{"replicas": Infinity}',
    '{"replicas": -Infinity}',
    '{"replicas": 1e400}',
    '{"replicas": 3, "nested": {"list": [NaN]}}',
    '{"replicas": "\\ud800"}',
    '{"\\udfff": 1, "replicas": 3}',
]


@pytest.mark.parametrize("params", UNHASHABLE_PARAMS)
def test_params_without_a_canonical_json_form_are_422(world: World, params: str) -> None:
    body = (
        '{"action": "scale_deployment", "namespace": "demo", "name": "web", '
        f'"idempotency_key": "k-unhashable", "reason": "test", "params": {params}}}'
    )
    sent = world.api.post(
        "/api/v1/actions",
        content=body.encode(),
        headers={**world.operator, "Content-Type": "application/json"},
    )
    assert sent.status_code == 422, sent.text
    error = sent.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"].startswith("params: ")
    assert "NaN, Infinity" in error["message"]
    assert "\n" not in error["message"]


@pytest.mark.parametrize(
    "incident_id", [0, -1, -(2**63), -(2**70), 2**31, 3_000_000_000, 2**63 - 1, 2**64]
)
def test_an_incident_id_no_incident_can_have_is_refused_the_same_on_both(
    world: World, incident_id: int
) -> None:
    # Below 1: SQLite could not bind an id below its 64-bit integers (a 500), PostgreSQL refused
    # to compare it (422 invalid_value). Past incidents.id's 32 bits: PostgreSQL refused to
    # compare it, SQLite found no such incident. No incident has such an id.
    sent = world.request(incident_id=incident_id)
    assert sent.status_code == 422, sent.text
    error = sent.json()["error"]
    assert error["code"] == "action_invalid"
    assert f"incident {incident_id} does not exist" in error["message"]


@pytest.mark.parametrize("status", ["pending", "PENDING_APPROVAL", "", "abc", "approved,denied"])
def test_listing_by_a_status_no_request_can_have_is_422(world: World, status: str) -> None:
    # it was an empty page (or, for "", every request): a typo read as "nothing pending"
    world.request()
    listed = world.api.get("/api/v1/actions", params={"status": status}, headers=world.operator)
    assert listed.status_code == 422, listed.text
    error = listed.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"].startswith("query.status: ")


def test_listing_by_each_status_a_request_can_have_is_answered(world: World) -> None:
    approved = world.request().json()
    assert approved["status"] == "approved"
    for status in ACTION_STATUSES:
        listed = world.api.get("/api/v1/actions", params={"status": status}, headers=world.operator)
        assert listed.status_code == 200, listed.text
        shown = [a["id"] for a in listed.json()["items"]]
        assert shown == ([approved["id"]] if status == "approved" else [])


DIGEST = "sha256:" + "0123456789abcdef" * 4


def test_a_model_digest_of_the_digests_shape_is_recorded(world: World) -> None:
    sent = world.request(model_digest=DIGEST)
    assert sent.status_code == 201, sent.text
    assert world.action(sent.json()["id"])["model_digest"] == DIGEST


@pytest.mark.parametrize(
    "digest",
    [
        "",
        "sha256:abc",
        "sha256:" + "0" * 63,
        "sha256:" + "0" * 65,
        "SHA256:" + "0" * 64,
        "sha256:" + "A" * 64,
        "md5:" + "0" * 32,
        "0" * 64,
        "sha256:" + "0" * 63 + "\n",
    ],
)
def test_a_model_digest_without_the_digests_shape_is_422(world: World, digest: str) -> None:
    # it is what the audit log shows as the model that recommended the action: sha256:<64 hex>,
    # as the engine names its model (the signed archive's digest)
    sent = world.request(model_digest=digest)
    assert sent.status_code == 422, sent.text
    error = sent.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"].startswith("model_digest: ")
