"""aegis.storage against a real S3-protocol server on loopback (moto's standalone server).

Credentials and endpoint come from the standard AWS environment variables here, the way a
deployment provides them; the conformance suite (tests/unit/storage) passes them explicitly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from aegis.storage import StoreUnavailable, open_store
from tests.conftest import require
from tests.unit.storage.moto_s3 import MotoS3


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3]:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        require(False, "moto[server] is not installed")
    server = MotoS3().start()
    yield server
    server.stop()


def test_credentials_and_endpoint_come_from_the_aws_environment(
    s3: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    bucket = s3.bucket()
    store = open_store(f"s3://{bucket}/models")
    store.put("m/1/model.tar.gz", b"archive")
    assert store.list() == ["m/1/model.tar.gz"]
    # The prefix in the URL is where objects really land in the bucket.
    assert open_store(f"s3://{bucket}").list() == ["models/m/1/model.tar.gz"]


def test_large_file_upload_uses_multipart_and_round_trips(s3: MotoS3, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    with source.open("wb") as fh:
        for i in range(24):  # 24 MiB: three 8 MiB multipart parts
            fh.write(hashlib.sha256(i.to_bytes(4, "big")).digest() * 32768)
    store = open_store(f"s3://{s3.bucket()}/x", options=s3.options)
    store.put_file("big.bin", source)
    out = tmp_path / "back.bin"
    store.get_file("big.bin", out)
    assert out.read_bytes() == source.read_bytes()


def test_write_to_a_missing_bucket_is_store_unavailable(s3: MotoS3) -> None:
    store = open_store("s3://no-such-bucket-aegis/x", options=s3.options)
    with pytest.raises(StoreUnavailable):
        store.put("k", b"v")
