"""Promotion over the API: operators request, a different approver approves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aegis.backend_app import create_app
from aegis.core.config import Settings
from aegis.database.core import Database
from aegis.registry import catalog
from aegis.registry.cosign_keys import generate_private_key, public_key_pem
from aegis.registry.keyset import load_keyset
from tests.support import factories
from tests.unit.registry.test_catalog_loader import _build


def test_four_eyes_promotion_over_the_api(
    make_settings: Callable[..., Settings], db_url: str, database: Database, tmp_path: Path
) -> None:
    key = generate_private_key()
    pub = tmp_path / "cosign.pub"
    pub.write_bytes(public_key_pem(key.public_key()))
    archive, sig = _build(tmp_path, key)
    with database.unit_of_work() as session:
        catalog.push(
            session=session,
            archive=archive,
            signature=sig,
            to=(tmp_path / "store").as_uri(),
            keyset=load_keyset(str(pub)),
            actor="ci",
        )
    both = factories.user(database, "operator", "approver")
    approver = factories.user(database, "approver")
    with TestClient(create_app(make_settings(database_url=db_url))) as client:
        mine = factories.bearer(factories.login(client, both))
        other = factories.bearer(factories.login(client, approver))
        created = client.post(
            "/api/v1/models/example_multimodal/0.1/promotions",
            json={"to": "production"},
            headers=mine,
        )
        assert created.status_code == 201
        promotion = created.json()["id"]
        own = client.post(f"/api/v1/models/promotions/{promotion}/approve", json={}, headers=mine)
        assert own.status_code == 403
        approved = client.post(
            f"/api/v1/models/promotions/{promotion}/approve",
            json={"comment": "reviewed eval report"},
            headers=other,
        )
        assert approved.status_code == 200 and approved.json()["stage"] == "production"
        listed = client.get("/api/v1/models", headers=other).json()
        assert [m["stage"] for m in listed] == ["production"]
        audit = client.get("/api/v1/audit", params={"type": "model"}, headers=other).json()
    assert [e["event_type"] for e in audit["items"]] == [
        "model.pushed",
        "model.promotion_requested",
        "model.promotion_approved",
        "model.promoted",
    ]


@pytest.mark.parametrize("promotion_id", [2**31 - 1, 2**31, 3_000_000_000, 2**63 - 1])
def test_a_promotion_id_past_the_column_is_not_found(
    make_settings: Callable[..., Settings], db_url: str, database: Database, promotion_id: int
) -> None:
    """Promotion ids are 32-bit: a larger one cannot exist, on PostgreSQL (which refused to
    compare it, a 422 invalid_value) as on SQLite."""
    with TestClient(create_app(make_settings(database_url=db_url))) as client:
        approver = factories.signed_in(client, database, "approver")
        answers = [
            client.post(
                f"/api/v1/models/promotions/{promotion_id}/{verb}", json={}, headers=approver
            )
            for verb in ("approve", "reject")
        ]
    assert [a.status_code for a in answers] == [404, 404], [a.text for a in answers]
    assert {a.json()["error"]["code"] for a in answers} == {"model_not_found"}
