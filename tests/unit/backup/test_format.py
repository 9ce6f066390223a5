"""The artifact format without a database: names, the value codec, and a reader that accepts
only what a backup can contain."""

from __future__ import annotations

import base64
import gc
import io
import json
import os
import stat
import sys
import tarfile
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from aegis.backup import codec
from aegis.backup.errors import BackupCorrupt, BackupError
from aegis.backup.format import (
    ArchiveWriter,
    TableSpool,
    artifact_name,
    parse_name,
    verify_artifact,
)
from aegis.database.models import metadata
from tests.unit.backup.support import read_members, write_members

MANIFEST = {
    "backup_id": "0123abcd",
    "created_at": "2026-11-23T10:00:00+00:00",
    "source_dialect": "sqlite",
    "aegis_version": "0.1.0",
    "alembic_revisions": ["0001"],
    "audit_head": {"seq": 0, "hash": "0" * 64},
    "tables": [],
}


def test_every_column_aegis_declares_has_a_backup_kind() -> None:
    kinds = {codec.column_kind(c) for t in metadata.sorted_tables for c in t.columns}
    assert kinds <= set(codec.KINDS)


def test_a_column_type_the_format_does_not_know_is_refused() -> None:
    table = sa.Table("t", sa.MetaData(), sa.Column("span", sa.Interval()))
    with pytest.raises(BackupError, match=r"t\.span"):
        codec.column_kind(table.c.span)


@pytest.mark.parametrize(
    ("kind", "value", "decoded"),
    [
        (
            "datetime",
            datetime(2026, 1, 2, 3, 4, 5, 678901),
            datetime(2026, 1, 2, 3, 4, 5, 678901, UTC),
        ),
        (
            "datetime",
            datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))),
            datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        ),
        ("date", date(2026, 1, 2), date(2026, 1, 2)),
        ("bool", True, True),
        ("int", 2**40, 2**40),
        ("float", 0.1, 0.1),
        ("decimal", Decimal("1.10"), Decimal("1.10")),
        ("bytes", b"\x00\xff", b"\x00\xff"),
        ("str", "ünï\u2028", "ünï\u2028"),
        ("json", '{"a": [1, null]}', {"a": [1, None]}),
        ("json", "null", sa.JSON.NULL),
        ("json", None, None),
    ],
)
def test_values_round_trip_through_json(kind: str, value: Any, decoded: Any) -> None:
    line = json.dumps(codec.encode(kind, value))
    assert codec.decode(kind, json.loads(line), "here") == decoded


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("bool", 1),
        ("int", "1"),
        ("int", True),
        ("datetime", "2026-01-02T03:04:05"),  # no offset
        ("datetime", "yesterday"),
        ("bytes", "not base64!"),
        ("json", "{broken"),
        ("str", 5),
    ],
)
def test_a_value_of_the_wrong_shape_is_corrupt(kind: str, value: Any) -> None:
    with pytest.raises(BackupCorrupt, match=r"users\.id row 3"):
        codec.decode(kind, value, "users.id row 3")


def test_artifact_names_carry_their_creation_time() -> None:
    when = datetime(2026, 11, 23, 10, 0, 5, tzinfo=UTC)
    name = artifact_name(when, "0123abcd", encrypted=True)
    assert name == "aegis-20261123T100005Z-0123abcd.tar.gz.enc"
    assert parse_name(name) == when
    assert parse_name("aegis-20261123T100005Z-0123abcd.tar.gz.part") is None
    assert parse_name("checkpoints/aegis-20261123T100005Z-0123abcd.tar.gz") is None


def _artifact(tmp_path: Path, members: list[tuple[str, bytes]]) -> Path:
    path = tmp_path / "a.tar.gz"
    write_members(path, members)
    return path


def _manifest(**over: Any) -> bytes:
    return json.dumps({**MANIFEST, **over}).encode()


def test_a_minimal_artifact_verifies(tmp_path: Path) -> None:
    path = tmp_path / "ok.tar.gz"
    writer = ArchiveWriter(path, secret=None, created_at=datetime.now(UTC))
    writer.add_bytes("manifest.json", _manifest())
    sha, size = writer.close()
    assert size == path.stat().st_size and len(sha) == 64
    assert verify_artifact(path, secret=None).backup_id == "0123abcd"
    assert [name for name, _ in read_members(path)] == ["manifest.json"]


def test_an_aborted_archive_closes_every_layer_without_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unraisable: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: unraisable.append(repr(u.exc_value)))
    path = tmp_path / "aborted.tar.gz"
    writer = ArchiveWriter(path, secret=None, created_at=datetime.now(UTC))
    writer.add_bytes("tables/users.jsonl", os.urandom(50_000).hex().encode())  # part in buffers
    writer.abort()  # Ctrl-C in the middle of a backup
    del writer
    gc.collect()
    assert unraisable == []  # was: the tar stream's finalizer wrote to the closed file


def test_spool_and_artifact_files_are_private(tmp_path: Path) -> None:
    spool = TableSpool(tmp_path / "users.jsonl")
    spool.write_row({"id": 1})
    writer = ArchiveWriter(tmp_path / "a.tar.gz", secret=None, created_at=datetime.now(UTC))
    writer.add_file("tables/users.jsonl", spool.path)
    assert stat.S_IMODE(spool.path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "a.tar.gz").stat().st_mode) == 0o600
    spool.abort()
    writer.abort()
    assert not spool.path.exists()


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([("../etc/passwd", b"x"), ("manifest.json", _manifest())], "unexpected backup member"),
        ([("/abs.jsonl", b"x"), ("manifest.json", _manifest())], "unexpected backup member"),
        (  # '$' alone would take the name before a trailing newline: a second "users" member
            [("tables/users.jsonl\n", b""), ("manifest.json", _manifest())],
            "unexpected backup member",
        ),
        ([("manifest.json", _manifest()), ("tables/users.jsonl", b"")], "follows the manifest"),
        ([("tables/users.jsonl", b"{}\n")], "no manifest"),
        ([("tables/users.jsonl", b""), ("manifest.json", _manifest())], "does not list"),
        ([("manifest.json", _manifest(format_version=2))], "format_version"),
        ([("manifest.json", b"{not json")], "manifest is invalid"),
    ],
)
def test_the_reader_accepts_only_what_a_backup_contains(
    tmp_path: Path, members: list[tuple[str, bytes]], message: str
) -> None:
    with pytest.raises(BackupCorrupt, match=message):
        verify_artifact(_artifact(tmp_path, members), secret=None)


def test_links_and_duplicates_are_refused(tmp_path: Path) -> None:
    for build, message in ((_with_symlink, "not a regular file"), (_with_duplicate, "twice")):
        path = tmp_path / f"{build.__name__}.tar.gz"
        build(path)
        with pytest.raises(BackupCorrupt, match=message):
            verify_artifact(path, secret=None)


def _with_symlink(path: Path) -> None:
    import gzip

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("tables/users.jsonl")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    path.write_bytes(gzip.compress(buffer.getvalue()))


def _with_duplicate(path: Path) -> None:
    write_members(path, [("tables/users.jsonl", b""), ("tables/users.jsonl", b"")])


def test_a_file_that_is_not_a_backup_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(base64.b64encode(b"hello"))
    with pytest.raises(BackupCorrupt, match="not an Aegis backup"):
        verify_artifact(path, secret=None)
