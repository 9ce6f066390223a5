"""open_store: URL schemes, the embedded default, and failures named clearly."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from aegis.storage import StoreUnavailable, open_store
from aegis.storage.errors import InvalidStoreUrl
from aegis.storage.service import check_store, open_configured_store, redact_url
from tests.unit.storage.moto_s3 import free_port


def test_memory_stores_with_the_same_url_share_their_objects() -> None:
    url = f"memory://shared-{uuid.uuid4().hex}"
    open_store(url).put("k", b"v")
    assert open_store(url).get("k") == b"v"
    assert not open_store(f"memory://other-{uuid.uuid4().hex}").exists("k")


def test_file_store_writes_plain_files_under_its_folder(tmp_path: Path) -> None:
    open_store((tmp_path / "objs").as_uri()).put("models/m.tar.gz", b"data")
    assert (tmp_path / "objs" / "models" / "m.tar.gz").read_bytes() == b"data"


def test_default_store_is_the_objects_folder_in_the_data_dir(make_settings: Any) -> None:
    settings = make_settings()
    open_configured_store(settings).put("a", b"1")
    assert (settings.data_dir / "objects" / "a").read_bytes() == b"1"


@pytest.mark.parametrize("url", ["ftp://host/x", "http://example.com/x", "bucket/path", "s3://"])
def test_unsupported_or_incomplete_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidStoreUrl):
        open_store(url)


def test_file_url_must_be_absolute_and_local() -> None:
    with pytest.raises(InvalidStoreUrl):
        open_store("file://remotehost/data")


def test_unreachable_s3_endpoint_raises_store_unavailable() -> None:
    port = free_port()  # nothing listens here
    store = open_store(
        "s3://bucket/prefix",
        options={
            "endpoint": f"http://127.0.0.1:{port}",
            "access_key_id": "k",
            "secret_access_key": "s",
            "region": "us-east-1",
            "allow_http": "true",
        },
    )
    with pytest.raises(StoreUnavailable) as info:
        check_store(store)
    assert info.value.code == "store_unavailable"
    assert "secret" not in info.value.message


def test_redact_url_drops_credentials_and_query() -> None:
    assert redact_url("az://user:pw@acct/cont/x?sig=SECRET") == "az://acct/cont/x"
