"""Store URLs in messages and records: secrets never shown, malformed URLs refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from aegis.storage import open_store
from aegis.storage.errors import InvalidStoreUrl
from aegis.storage.service import as_store_url, object_url, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("s3://user:SECRET@bucket:abc/x?sig=SECRET", "s3://bucket:abc/x"),
        ("s3://user:SECRET@bucket:99999999/x", "s3://bucket:99999999/x"),
        ("s3://user:SECRET@[::1/x?sig=SECRET#SECRET", "s3://[::1/x"),
    ],
)
def test_redact_url_names_a_malformed_url_without_its_secrets(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url", ["s3://u:SECRET@bucket:abc/x?sig=SECRET", "s3://bucket:99999999/x", "gs://[::1/x"]
)
def test_a_url_with_a_bad_port_or_host_is_an_invalid_store_url_naming_it(url: str) -> None:
    with pytest.raises(InvalidStoreUrl) as info:
        open_store(url)
    assert info.value.message.startswith(f"invalid object store URL {redact_url(url)!r}: ")
    assert "SECRET" not in info.value.message


def test_a_file_url_with_a_nul_byte_is_an_invalid_store_url(tmp_path: Path) -> None:
    with pytest.raises(InvalidStoreUrl) as info:
        open_store(f"{tmp_path.as_uri()}/a%00b")
    assert "NUL byte" in info.value.message


def test_a_remote_file_url_is_refused_without_its_password() -> None:
    with pytest.raises(InvalidStoreUrl) as info:
        open_store("file://user:SECRET@remotehost/data")
    assert "SECRET" not in info.value.message


def test_object_url_joins_the_key_onto_the_path() -> None:
    assert object_url("s3://bucket/models/m/1/", "model.tar.gz") == (
        "s3://bucket/models/m/1/model.tar.gz"
    )


@pytest.mark.parametrize(
    "url", ["file:///tmp/reg/?sig=SECRET", "s3://user:SECRET@bucket/m", "s3://bucket/m#SECRET"]
)
def test_object_url_refuses_credentials_a_query_or_a_fragment(url: str) -> None:
    with pytest.raises(InvalidStoreUrl) as info:
        object_url(url, "model.tar.gz")
    assert "must not carry credentials" in info.value.message
    assert "SECRET" not in info.value.message


@pytest.mark.parametrize(
    "url",
    [
        "file:///srv/reg/a/../b/",  # the folder /srv/reg/b/ under another name
        "file:///srv/reg//b/",
        "file:///srv/reg/./b/",
        "file:///srv/reg/a/%2e%2e/b/",
        "s3://bucket/models/../m/1/",
    ],
)
def test_object_url_refuses_a_path_that_names_a_folder_by_another_spelling(url: str) -> None:
    """Model locations are unique as recorded: ``a/../b`` or ``a//b`` would write into the
    location another version holds while its recorded URL differs."""
    with pytest.raises(InvalidStoreUrl) as info:
        object_url(url, "model.tar.gz")
    assert "'.' or '..'" in info.value.message


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("file://localhost/srv/reg/m/1/", "file:///srv/reg/m/1/"),
        ("file:///srv/%72eg/m/1/", "file:///srv/reg/m/1/"),  # %72 is "r"
        ("file:///srv/my%2fdir/", "file:///srv/my/dir/"),  # %2f is "/"
        ("file:///srv/a b/", "file:///srv/a%20b/"),
        ("file:///srv/a%2bb/", "file:///srv/a%2Bb/"),
        ("s3://Bucket/m/1/", "s3://bucket/m/1/"),
        ("s3://bucket:443/m/1/", "s3://bucket/m/1/"),
        ("s3://bucket:/m/1/", "s3://bucket/m/1/"),
        ("s3://b%75cket/m/1/", "s3://bucket/m/1/"),
        ("s3://bucket/%4Dodels/1/", "s3://bucket/Models/1/"),  # the path keeps its case
        ("s3a://bucket/m/1/", "s3://bucket/m/1/"),
        ("gs://bucket/m/%31/", "gs://bucket/m/1/"),
        ("azure://cont/m/1/", "az://cont/m/1/"),
        ("abfss://cont/m/1/", "az://cont/m/1/"),
    ],
)
def test_object_url_refuses_another_spelling_of_a_location_naming_its_own(
    url: str, canonical: str
) -> None:
    """Model locations are unique as recorded: ``file://localhost/x`` is ``file:///x``,
    ``S3://`` is ``s3://``, ``%72`` is ``r``: recorded as written, a push would write into the
    location another version holds while its recorded URL differs."""
    with pytest.raises(InvalidStoreUrl) as info:
        object_url(url, "model.tar.gz")
    assert f"write it as {canonical!r}" in info.value.message
    assert "\n" not in info.value.message
    assert object_url(canonical, "model.tar.gz") == canonical + "model.tar.gz"


@pytest.mark.parametrize(
    "url",
    [
        "s3://bucket/Models/M/1/",  # keys are case-sensitive: kept as written
        "s3://bucket/m/1",
        "s3://bucket",
        "gs://bucket/m/1.0%2Blocal/",
        "az://cont/m/1/",
        "file:///srv/a%20b/",
    ],
)
def test_object_url_keeps_a_canonical_location_as_written(url: str) -> None:
    assert object_url(url, "model.tar.gz") == f"{url.rstrip('/')}/model.tar.gz"


@pytest.mark.parametrize("url", ["S3://bucket/m/1/", "FILE:///srv/reg/m/1/"])
def test_object_url_records_an_upper_case_scheme_in_lower_case(url: str) -> None:
    """A scheme is case-insensitive everywhere (obstore, urlsplit): the same location,
    recorded in its one spelling."""
    assert object_url(url, "model.tar.gz") == url.lower() + "model.tar.gz"


def test_object_url_refuses_a_path_that_is_not_utf8() -> None:
    with pytest.raises(InvalidStoreUrl) as info:
        object_url("s3://bucket/m/%ff/", "model.tar.gz")
    assert "UTF-8" in info.value.message


def test_a_local_path_becomes_a_canonical_store_url(tmp_path: Path) -> None:
    folder = tmp_path / "a b+c~d"
    url = as_store_url(str(folder))
    assert object_url(url, "model.tar.gz") == f"{url}/model.tar.gz"
