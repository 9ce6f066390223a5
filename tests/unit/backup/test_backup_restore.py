"""Backups of a database seeded by the real services, restored into fresh databases of both
backends: every row comes back, and every way an artifact can be wrong is refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select, text

from aegis.audit import canonical, keys
from aegis.audit.checkpoint import write_checkpoint
from aegis.audit.models import AuditEntry
from aegis.backup import drill, restore, service, snapshot
from aegis.backup.errors import (
    BackupCorrupt,
    BackupError,
    BackupKeyInvalid,
    RestoreTargetNotEmpty,
)
from aegis.core.config import Settings
from aegis.database.core import Database
from aegis.database.models import metadata
from aegis.flags import service as flags_service
from aegis.incidents import service as incidents_service
from aegis.incidents.schemas import WebhookPayload
from aegis.storage.service import ObjectStore, open_store
from tests.support.alerts import alert, payload
from tests.unit.backup.support import (
    OTHER_KEY,
    dump,
    local_path,
    read_members,
    repack,
    write_members,
)

ACTOR = "test:backup"


def _audit_tail(url: str, n: int = 1) -> list[AuditEntry]:
    database = Database(url)
    try:
        with database.unit_of_work() as session:
            stmt = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(n)
            return list(session.scalars(stmt))
    finally:
        database.dispose()


def _backup(settings: Settings) -> service.BackupResult:
    return service.create(settings=settings, actor=ACTOR)


def _restore(settings: Settings, artifact: str, target: str) -> restore.RestoreResult:
    return restore.restore(settings=settings, artifact=artifact, actor=ACTOR, target_url=target)


def test_round_trip_preserves_every_row_of_every_table(
    settings: Settings, source_url: str, target_url: str
) -> None:
    result = _backup(settings)
    before = dump(source_url)
    assert all(before[t] for t in ("users", "alerts", "action_requests", "refresh_tokens"))
    restored = _restore(settings, result.uri, target_url)
    after = dump(target_url)
    # The restore appends its own audit event; everything else is identical.
    backed_up_audit = [
        row for row in before["audit_log"] if row[0] <= result.manifest.audit_head.seq
    ]
    assert after.pop("audit_log")[:-1] == backed_up_audit
    before.pop("audit_log")
    assert after == before
    assert restored.chain.ok, restored.chain.problems
    assert result.manifest.total_rows == sum(t.rows for t in result.manifest.tables)


def test_backup_and_restore_are_audit_events(
    settings: Settings, source_url: str, target_url: str
) -> None:
    result = _backup(settings)
    created = _audit_tail(source_url)[0]
    assert (created.category, created.event_type) == ("system", "backup.created")
    assert json.loads(created.data)["sha256"] == result.sha256
    _restore(settings, result.uri, target_url)
    restored = _audit_tail(target_url)[0]
    assert restored.event_type == "backup.restored"
    assert json.loads(restored.data)["backup_id"] == result.manifest.backup_id


def test_encrypted_round_trip(
    encrypted_settings: Settings, source_url: str, target_url: str
) -> None:
    result = _backup(encrypted_settings)
    assert result.encrypted and result.uri.endswith(".tar.gz.enc")
    assert local_path(result.uri).read_bytes().startswith(b"AEGISENC")
    restored = _restore(encrypted_settings, result.uri, target_url)
    assert restored.chain.ok
    assert dump(target_url)["users"] == dump(source_url)["users"]


def test_wrong_key_fails_and_writes_nothing(encrypted_settings: Settings, target_url: str) -> None:
    result = _backup(encrypted_settings)
    wrong = encrypted_settings.model_copy(update={"backup_encryption_key": SecretStr(OTHER_KEY)})
    with pytest.raises(BackupKeyInvalid, match="not the key"):
        _restore(wrong, result.uri, target_url)
    missing = encrypted_settings.model_copy(update={"backup_encryption_key": None})
    with pytest.raises(BackupKeyInvalid, match="encrypted"):
        _restore(missing, result.uri, target_url)
    assert not any(dump(target_url).values())


def test_unencrypted_artifact_is_refused_when_a_key_is_configured(
    settings: Settings, encrypted_settings: Settings, target_url: str
) -> None:
    result = _backup(settings)
    with pytest.raises(BackupKeyInvalid, match="not encrypted"):
        _restore(encrypted_settings, result.uri, target_url)
    restore.restore(
        settings=encrypted_settings,
        artifact=result.uri,
        actor=ACTOR,
        target_url=target_url,
        allow_unencrypted=True,
    )


def test_tampered_member_fails_its_checksum(settings: Settings, target_url: str) -> None:
    result = _backup(settings)
    repack(
        local_path(result.uri),
        "users",
        lambda data: data.replace(b"viewer", b"admin"),
        fix_manifest=False,
    )
    with pytest.raises(BackupCorrupt, match=r"tables/users\.jsonl: SHA-256"):
        _restore(settings, result.uri, target_url)
    assert not any(dump(target_url).values())


def test_truncated_archive_fails(
    settings: Settings, encrypted_settings: Settings, target_url: str
) -> None:
    for config in (settings, encrypted_settings):
        result = _backup(config)
        path = local_path(result.uri)
        path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
        with pytest.raises(BackupCorrupt, match="truncated"):
            _restore(config, result.uri, target_url)
    assert not any(dump(target_url).values())


def test_restore_refuses_a_database_with_aegis_rows(
    settings: Settings, source_url: str, target_url: str
) -> None:
    result = _backup(settings)
    with pytest.raises(RestoreTargetNotEmpty, match="users: 2"):
        _restore(settings, result.uri, source_url)


def test_force_clean_replaces_what_the_target_held(
    settings: Settings, source_url: str, target_url: str
) -> None:
    result = _backup(settings)
    target = Database(target_url)
    with target.unit_of_work() as session:
        flags_service.set_flag(session=session, name="stale", value="1", actor="t")
    target.dispose()
    restore.restore(
        settings=settings, artifact=result.uri, actor=ACTOR, target_url=target_url, force_clean=True
    )
    assert dump(target_url)["runtime_flags"] == dump(source_url)["runtime_flags"]


def test_restore_into_a_database_with_no_schema_runs_the_migrations(
    settings: Settings, source_url: str, bare_url: str
) -> None:
    result = _backup(settings)
    restored = _restore(settings, result.uri, bare_url)
    assert restored.chain.ok
    assert dump(bare_url)["policy_versions"] == dump(source_url)["policy_versions"]


def test_new_rows_get_fresh_ids_after_a_restore(settings: Settings, target_url: str) -> None:
    _restore(settings, _backup(settings).uri, target_url)
    target = Database(target_url)
    with target.unit_of_work() as session:  # PostgreSQL: the sequence was moved past max(id)
        result = incidents_service.ingest(
            session=session,
            payload=WebhookPayload.model_validate(payload(alert("Other", deployment="db"))),
        )
    target.dispose()
    assert result.incidents == [2]


def test_cross_dialect_restore(settings: Settings, source_url: str, other_backend_url: str) -> None:
    result = _backup(settings)
    restored = _restore(settings, result.uri, other_backend_url)
    assert restored.chain.ok, restored.chain.problems
    before, after = dump(source_url), dump(other_backend_url)
    after.pop("audit_log")
    before.pop("audit_log")
    assert after == before


def test_drill_passes_on_a_good_backup(settings: Settings, source_url: str) -> None:
    result = _backup(settings)
    report = drill.drill(settings=settings, actor=ACTOR)
    assert report.ok, report.problems
    assert report.artifact == result.uri
    assert report.manifest is not None and report.manifest.backup_id == result.manifest.backup_id
    assert all(t.found == t.expected for t in report.tables)
    assert report.rto_s > 0
    event = _audit_tail(source_url)[0]
    assert (event.event_type, event.outcome) == ("backup.drill", "ok")
    assert not Path(report.scratch.removeprefix("sqlite+pysqlite:///")).exists()


def test_drill_fails_when_an_audit_row_was_altered(settings: Settings, source_url: str) -> None:
    result = _backup(settings)
    # Change one recorded event and re-pack with a correct member hash and manifest entry.
    repack(
        local_path(result.uri),
        "audit_log",
        lambda data: data.replace(b'"actor":"carol"', b'"actor":"alice"', 1),
        fix_manifest=True,
    )
    report = drill.drill(settings=settings, actor=ACTOR, artifact=result.uri)
    assert not report.ok
    assert any("modified" in p for p in report.problems), report.problems
    assert _audit_tail(source_url)[0].outcome == "failed"


def test_drill_fails_when_a_backup_is_corrupt(settings: Settings, source_url: str) -> None:
    result = _backup(settings)
    path = local_path(result.uri)
    path.write_bytes(path.read_bytes()[:-20])
    report = drill.drill(settings=settings, actor=ACTOR)
    assert not report.ok and report.problems[0].startswith("restore failed")


def test_retention_keeps_the_newest(settings: Settings, source_url: str) -> None:
    now = datetime.now(UTC)
    ages = [40, 30, 20]  # all older than the 14-day retention
    for days in ages:
        service.create(settings=settings, actor=ACTOR, now=now - timedelta(days=days), prune=False)
    recent = service.create(
        settings=settings, actor=ACTOR, now=now - timedelta(days=1), prune=False
    )
    deleted = service.prune_backups(settings=settings, actor=ACTOR, now=now)
    assert len(deleted) == 3
    left = service.list_backups(store=_store(settings))
    assert [b.uri for b in left] == [recent.uri]
    # With only stale backups left, the newest one still stays.
    deleted_all_old = service.prune_backups(
        settings=settings, actor=ACTOR, now=now + timedelta(days=100)
    )
    assert deleted_all_old == []
    assert _audit_tail(source_url)[0].event_type == "backup.pruned"


def _store(settings: Settings) -> ObjectStore:
    return open_store(service.default_url(settings))


def test_backup_refuses_a_table_no_model_declares(settings: Settings, source_url: str) -> None:
    database = Database(source_url)
    with database.engine.begin() as conn:
        conn.execute(text("CREATE TABLE stray (id INTEGER PRIMARY KEY)"))
    database.dispose()
    with pytest.raises(BackupError, match="stray"):
        _backup(settings)


def test_snapshot_does_not_see_or_block_concurrent_writes(source_url: str) -> None:
    flags = metadata.tables["runtime_flags"]
    writer = Database(source_url)
    with snapshot.snapshot(source_url) as conn:
        before = [row["name"] for row in snapshot.read_table(conn, flags)]
        # A writer commits while the snapshot is open (it is not blocked) ...
        with writer.unit_of_work() as session:
            flags_service.set_flag(session=session, name="zz-later", value="1", actor="t")
        # ... and the snapshot still sees the database as it was.
        assert snapshot.count_rows(conn, flags) == len(before)
        assert [row["name"] for row in snapshot.read_table(conn, flags)] == before
    writer.dispose()
    assert len(dump(source_url)["runtime_flags"]) == len(before) + 1


def test_seed_holds_both_kinds_of_null(source_url: str) -> None:
    """The seed has a JSON null and an SQL NULL in JSON columns, so the round trips check that
    the codec keeps them apart."""
    rows = dump(source_url)
    incidents = [c.name for c in metadata.tables["incidents"].columns]
    actions = [c.name for c in metadata.tables["action_requests"].columns]
    assert rows["incidents"][0][incidents.index("prediction")] == ("json", None)
    assert rows["action_requests"][0][actions.index("dry_run_diff")] is None


def _rewrite_chain(data: bytes) -> bytes:
    """Change one audit row and recompute every hash after it: a chain that verifies on its own
    and differs from what was signed."""
    rows = [json.loads(line) for line in data.splitlines()]
    rows[1]["actor"] = "someone-else"
    prev = rows[0]["entry_hash"]
    for row in rows[1:]:
        row["prev_hash"] = prev
        fields = {k: row[k] for k in ("seq", "event_id", "category", "event_type", "actor")}
        row["entry_hash"] = canonical.entry_hash(
            **fields,
            created_at=datetime.fromisoformat(row["created_at"]),
            resource=row["resource"],
            outcome=row["outcome"],
            data=row["data"],
            prev_hash=row["prev_hash"],
        )
        prev = row["entry_hash"]
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


def _checkpoint(settings: Settings, url: str) -> None:
    """A signed checkpoint of the chain in the database at ``url``, in the audit store."""
    source = Database(url)
    with source.unit_of_work() as session:
        write_checkpoint(
            session=session,
            store=open_store(settings.effective_audit_store_url),
            private_key=keys.load_or_create_private_key(settings.effective_audit_signing_key_file),
        )
    source.dispose()


@pytest.mark.parametrize("db_backend", ["sqlite"])
def test_drill_catches_a_rewritten_chain_with_the_signed_checkpoints(
    settings: Settings, source_url: str
) -> None:
    _checkpoint(settings, source_url)
    result = _backup(settings)
    assert drill.drill(settings=settings, actor=ACTOR, artifact=result.uri).checkpoints == 1
    path = local_path(result.uri)
    repack(path, "audit_log", _rewrite_chain, fix_manifest=True)
    manifest = json.loads(dict(read_members(path))["manifest.json"])
    last = json.loads(dict(read_members(path))["tables/audit_log.jsonl"].splitlines()[-1])
    manifest["audit_head"]["hash"] = last["entry_hash"]  # the forger fixes the manifest too
    _write_manifest(path, manifest)
    report = drill.drill(settings=settings, actor=ACTOR, artifact=result.uri)
    assert not report.ok
    assert report.chain_entries > 0 and not any(
        p.startswith("audit chain") for p in report.problems
    )
    assert any("signed checkpoint" in p for p in report.problems), report.problems


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Put ``manifest`` in the unencrypted artifact at ``path``, every other member as it was."""
    write_members(
        path,
        [
            (n, json.dumps(manifest).encode() if n == "manifest.json" else d)
            for n, d in read_members(path)
        ],
    )


@pytest.mark.parametrize("db_backend", ["sqlite"])
@pytest.mark.parametrize("back", [1, "all"])
def test_drill_fails_when_the_restored_chain_ends_past_the_manifests_head(
    settings: Settings, back: int | str
) -> None:
    """The manifest's head said entry N (its hash matching), the chain restored went on past
    it: the entry at N was checked, where the chain ended was not."""
    result = _backup(settings)
    path = local_path(result.uri)
    rows = [
        json.loads(line) for line in dict(read_members(path))["tables/audit_log.jsonl"].splitlines()
    ]
    head = {"seq": 0, "hash": canonical.GENESIS_HASH}
    if back != "all":
        row = rows[-1 - int(back)]
        head = {"seq": row["seq"], "hash": row["entry_hash"]}
    manifest = json.loads(dict(read_members(path))["manifest.json"])
    manifest["audit_head"] = head
    _write_manifest(path, manifest)
    report = drill.drill(settings=settings, actor=ACTOR, artifact=result.uri)
    assert not report.ok
    assert (
        f"audit chain: the restored chain ends at entry {len(rows)}, the manifest recorded its "
        f"head at entry {head['seq']}"
    ) in report.problems, report.problems


@pytest.mark.parametrize("db_backend", ["sqlite"])
def test_drill_fails_when_checkpoints_exist_but_the_verification_key_is_missing(
    settings: Settings, tmp_path: Path
) -> None:
    """A mistyped AUDIT_VERIFY_KEY_FILE silently skipped the checkpoint check (PASSED, 'not
    checked') even with signed checkpoints in a store the drill can read."""
    _checkpoint(settings, settings.effective_database_url)
    result = _backup(settings)
    typo = tmp_path / "audit-signing.pbu"
    mistyped = settings.model_copy(update={"audit_verify_key_file": typo})
    report = drill.drill(settings=mistyped, actor=ACTOR, artifact=result.uri)
    assert not report.ok
    [problem] = [p for p in report.problems if "AUDIT_VERIFY_KEY_FILE" in p]
    assert str(typo) in problem and "1 signed checkpoint" in problem


@pytest.mark.parametrize("db_backend", ["sqlite"])
def test_drill_without_checkpoints_or_key_passes_unchecked(settings: Settings) -> None:
    result = _backup(settings)
    report = drill.drill(settings=settings, actor=ACTOR, artifact=result.uri)
    assert report.ok, report.problems
    assert report.checkpoints is None
