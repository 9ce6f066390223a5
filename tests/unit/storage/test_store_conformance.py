"""The ObjectStore contract, run against memory://, file:// and s3:// (moto on loopback)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aegis.storage import ObjectNotFound, ObjectStore, open_store
from aegis.storage.errors import InvalidObjectKey
from tests.unit.storage.moto_s3 import MotoS3


@pytest.fixture(params=["memory", "file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "memory":
        yield open_store(f"memory://conformance-{uuid.uuid4().hex}")
    elif request.param == "file":
        yield open_store((tmp_path / "objects").as_uri())
    else:
        moto: MotoS3 = request.getfixturevalue("moto_s3")
        yield open_store(f"s3://{moto.bucket()}/root", options=moto.options)


def test_put_then_get_returns_the_same_bytes(store: ObjectStore) -> None:
    store.put("a/b.bin", b"\x00\x01payload")
    assert store.get("a/b.bin") == b"\x00\x01payload"


def test_put_replaces_existing_object(store: ObjectStore) -> None:
    store.put("k", b"one")
    store.put("k", b"two")
    assert store.get("k") == b"two"


def test_get_of_missing_key_raises_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound) as info:
        store.get("missing/key")
    assert info.value.code == "object_not_found"


def test_exists_reflects_put_and_delete(store: ObjectStore) -> None:
    assert not store.exists("x/y")
    store.put("x/y", b"1")
    assert store.exists("x/y")
    store.delete("x/y")
    assert not store.exists("x/y")


def test_delete_of_missing_key_is_not_an_error(store: ObjectStore) -> None:
    store.delete("never/written")
    assert not store.exists("never/written")


def test_list_returns_sorted_keys_relative_to_root(store: ObjectStore) -> None:
    for key in ["models/b/2", "models/a/1", "models/a/0", "audit/x"]:
        store.put(key, b"v")
    assert store.list() == ["audit/x", "models/a/0", "models/a/1", "models/b/2"]
    assert store.list("models/a/") == ["models/a/0", "models/a/1"]


def test_list_prefix_is_a_plain_string_prefix(store: ObjectStore) -> None:
    store.put("model-1/x", b"v")
    store.put("model-10/x", b"v")
    store.put("other", b"v")
    assert store.list("model-1") == ["model-1/x", "model-10/x"]
    assert store.list("nothing-here/") == []


def test_put_file_and_get_file_round_trip_a_multi_chunk_file(
    store: ObjectStore, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    block = hashlib.sha256(b"seed").digest() * 4096  # 128 KiB of non-repeating-ish data
    with source.open("wb") as fh:
        for i in range(100):  # ~12.8 MiB: more than one streaming chunk / multipart part
            fh.write(i.to_bytes(4, "big") + block)
    store.put_file("blobs/big.bin", source)
    target = tmp_path / "out" / "big.bin"
    target.parent.mkdir()
    store.get_file("blobs/big.bin", target)
    assert (
        hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()
    )
    assert sorted(p.name for p in target.parent.iterdir()) == ["big.bin"]


def test_get_file_of_missing_key_leaves_no_partial_file(store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFound):
        store.get_file("absent", tmp_path / "out.bin")
    assert {p.name for p in tmp_path.iterdir()} <= {"objects"}  # the file store's own root


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "..", "a//b", "a/./b", "dir/", "a\\b"])
def test_unsafe_keys_are_refused_before_reaching_the_backend(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidObjectKey):
        store.put(key, b"v")
