"""The one-pass reader: parallel and sequential inflation agree; long names; progress."""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

import pytest

from aegis.registry import service
from aegis.registry.archive import BLOCK_SIZE, build_archive
from aegis.registry.extract import check_archive
from tests.unit.registry.builders import (
    Member,
    keyset,
    manifest_bytes,
    new_key,
    plain_gzip,
    sign,
    tar_bytes,
    write_model,
)

LONG = "deep/" + "n" * 120 + "/" + "é" * 40 + ".json"


@pytest.mark.parametrize("workers", [1, 3])
def test_multi_block_archive_verifies_with_any_worker_count(tmp_path: Path, workers: int) -> None:
    files = {"a.safetensors": os.urandom(3 * BLOCK_SIZE + 5), LONG: b"{}", "b.json": b"[]"}
    model = write_model(tmp_path / "m", files)
    built = build_archive(model, tmp_path / "m.tar.gz", name="m", version="1", workers=workers)
    seen: list[int] = []
    scanned = check_archive(built.path, workers=workers, progress=seen.append)
    assert scanned.scan.digest.hex() == built.sha256
    assert sum(seen) == built.size
    assert scanned.scan.uncompressed_size % tarfile.RECORDSIZE == 0
    assert {f.path for f in scanned.manifest.files} == set(files)


def test_gnu_long_names_from_other_tar_writers_are_read(tmp_path: Path) -> None:
    files = {LONG: b'{"x": 1}'}
    raw = tar_bytes(
        [Member("manifest.json", manifest_bytes(files)), Member(LONG, files[LONG])],
        fmt=tarfile.GNU_FORMAT,
    )
    archive = tmp_path / "gnu.tar.gz"
    archive.write_bytes(plain_gzip(raw))
    key = new_key()
    verified = service.verify_archive(archive, sign(archive, key), keyset(key))
    assert verified.manifest.files[0].path == LONG
    assert verified.digest == hashlib.sha256(archive.read_bytes()).hexdigest()
