"""Backup test helpers: seed a database through the real services, read every table without the
backup code, re-pack artifacts."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr

from aegis.actions import service as actions_service
from aegis.actions.schemas import ActionCreate
from aegis.audit import service as audit_service
from aegis.auth import service as auth_service
from aegis.auth.schemas import Actor
from aegis.core.config import Settings
from aegis.database.core import Database, make_engine
from aegis.database.models import metadata
from aegis.executor import service as executor_service
from aegis.executor.nonces import DatabaseNonceStore
from aegis.executor.schemas import ExecutorActionRequest
from aegis.flags import service as flags_service
from aegis.incidents import service as incidents_service
from aegis.incidents.schemas import WebhookPayload
from aegis.policy import service as policy_service
from aegis.policy.loader import parse_policies
from tests.support.alerts import alert, payload

KEY = "backup-key-" + "k" * 40
OTHER_KEY = "another-backup-key-" + "o" * 40
PASSWORD = "correct-horse-battery-staple"
POLICY = {
    "id": "demo-restarts",
    "effect": "allow",
    "subjects": ["role:operator"],
    "actions": ["restart_deployment"],
    "resources": {"namespaces": ["demo"], "names": ["*"]},
}


def seed(database: Database, settings: Settings) -> None:
    """A little of everything, written by each domain's own service."""
    with database.unit_of_work() as session:
        auth_service.create_user(
            session=session, username="alice", password=PASSWORD, roles=["admin"], actor="t"
        )
        auth_service.create_user(
            session=session, username="bob", password=PASSWORD, roles=["viewer"], actor="t"
        )
        auth_service.set_disabled(session=session, username="bob", disabled=True, actor="t")
    with database.unit_of_work() as session:  # auth_sessions, refresh_tokens
        auth_service.login(
            session=session, settings=settings, username="alice", password=PASSWORD, client_ip="::1"
        )
    with database.unit_of_work() as session:  # incidents (JSON null prediction), alerts
        result = incidents_service.ingest(
            session=session,
            payload=WebhookPayload.model_validate(
                payload(alert("HighErrorRate"), alert("PodCrashLooping", severity="critical"))
            ),
        )
        incident_id = result.incidents[0]
    with database.unit_of_work() as session:
        for policy in parse_policies(json.dumps([POLICY]), source="test"):
            policy_service.create(session=session, policy=policy, actor="alice")
    with database.unit_of_work() as session:  # action_requests (SQL NULL JSON), action_outcomes
        request, _ = actions_service.request_action(
            session=session,
            settings=settings,
            body=ActionCreate(
                action="restart_deployment",
                namespace="demo",
                name="web",
                idempotency_key="idem-1",
                reason="réseau lent — restart",
                incident_id=incident_id,
                confidence=0.8125,
                severity="critical",
            ),
            actor=Actor(name="carol", roles=frozenset({"operator"})),
        )
        actions_service.record_outcome(session=session, request=request, success=True)
    with database.unit_of_work() as session:
        flags_service.set_flag(session=session, name="executor_enabled", value="true", actor="t")
        executor_service.claim(
            session=session,
            request=ExecutorActionRequest(
                action_id="a-1",
                action="restart_deployment",
                namespace="demo",
                name="web",
                idempotency_key="idem-x",
                requested_by="carol",
            ),
            digest="d" * 64,
        )
        audit_service.record_audit_event(
            session=session,
            category="system",
            event_type="test.unicode",
            actor="t",
            data={"text": "ünïcödé ☃ \u2028", "n": 1.5, "nested": {"list": [1, None, True]}},
        )
    assert DatabaseNonceStore(database).claim("nonce-1", ttl_s=3600, signed_at=0)


def dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, read without the backup code: JSON columns as their parsed
    stored text (so SQL NULL and JSON null differ), timestamps as aware UTC."""
    engine = make_engine(url)
    out: dict[str, list[tuple[Any, ...]]] = {}
    try:
        with engine.connect() as conn:
            for table in metadata.sorted_tables:
                cols = [
                    sa.cast(c, sa.Text).label(c.name) if isinstance(c.type, sa.JSON) else c
                    for c in table.columns
                ]
                rows = conn.execute(sa.select(*cols).order_by(*table.primary_key.columns))
                out[table.name] = [
                    tuple(
                        _normal(col, value) for col, value in zip(table.columns, row, strict=True)
                    )
                    for row in rows
                ]
    finally:
        engine.dispose()
    return out


def _normal(column: sa.Column[Any], value: Any) -> Any:
    if value is None:
        return None
    if isinstance(column.type, sa.JSON):
        return ("json", json.loads(value))
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def read_members(path: Path) -> list[tuple[str, bytes]]:
    with gzip.open(path, "rb") as gz, tarfile.open(fileobj=gz, mode="r|") as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]


def write_members(path: Path, members: list[tuple[str, bytes]]) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buffer.getvalue()))


def repack(path: Path, table: str, change: Callable[[bytes], bytes], *, fix_manifest: bool) -> None:
    """Rewrite a plain artifact with one table member changed; with ``fix_manifest`` the
    manifest's SHA-256, size and row count are recomputed, so only deeper checks can tell."""
    members = read_members(path)
    name = f"tables/{table}.jsonl"
    members = [(n, change(d) if n == name else d) for n, d in members]
    if fix_manifest:
        data = dict(members)[name]
        manifest = json.loads(dict(members)["manifest.json"])
        for entry in manifest["tables"]:
            if entry["name"] == table:
                entry["sha256"] = hashlib.sha256(data).hexdigest()
                entry["bytes"] = len(data)
                entry["rows"] = data.count(b"\n")
        members = [
            (n, json.dumps(manifest).encode() if n == "manifest.json" else d) for n, d in members
        ]
    write_members(path, members)


def local_path(uri: str) -> Path:
    assert uri.startswith("file://")
    return Path(uri.removeprefix("file://"))


def build_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "jwt_secret": SecretStr("test-jwt-secret-" + "a" * 32),
        "jwt_refresh_secret": SecretStr("test-refresh-secret-" + "b" * 32),
        "executor_hmac_secret": SecretStr("test-hmac-secret-" + "c" * 32),
        "api_key": SecretStr("test-api-key-" + "d" * 32),
        "alert_webhook_token": SecretStr("test-webhook-token-" + "e" * 32),
        "ai_engine_enabled": False,
        "background_jobs": False,
    }
    values.update(overrides)
    data_dir.mkdir(parents=True, exist_ok=True)
    return Settings(_env_file=None, **values)
