"""Trusted keys from a file, a folder (Kubernetes Secret), inline PEM or settings."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from aegis.core.config import Settings
from aegis.registry import cosign_keys
from aegis.registry.errors import KeyInvalid, NoTrustedKeys
from aegis.registry.keyset import keyset_from_settings, load_keyset, load_keyset_path
from tests.unit.registry.builders import new_key


def _pem(n: int) -> list[bytes]:
    return [cosign_keys.public_key_pem(new_key().public_key()) for _ in range(n)]


def test_one_file_may_hold_several_keys(tmp_path: Path) -> None:
    a, b = _pem(2)
    (tmp_path / "keys.pem").write_bytes(a + b)
    assert len(load_keyset_path(tmp_path / "keys.pem")) == 2


def test_mounted_kubernetes_secret_folder_is_read_through_its_symlinks(tmp_path: Path) -> None:
    a, b = _pem(2)
    data = tmp_path / "..2026_11_23_00_00_00.000"
    data.mkdir()
    (data / "release.pub").write_bytes(a)
    (data / "rotation.pub").write_bytes(b)
    (tmp_path / "..data").symlink_to(data.name)
    for name in ("release.pub", "rotation.pub"):
        (tmp_path / name).symlink_to(f"..data/{name}")
    keys = load_keyset_path(tmp_path)
    assert len(keys) == 2
    assert all(len(k.key_id) == 16 for k in keys)


def test_inline_pem_and_path_lists_are_accepted(tmp_path: Path) -> None:
    a, b = _pem(2)
    assert len(load_keyset(a.decode())) == 1
    (tmp_path / "a.pub").write_bytes(a)
    (tmp_path / "b.pub").write_bytes(b)
    joined = f"{tmp_path / 'a.pub'}{os.pathsep}{tmp_path / 'b.pub'}"
    assert len(load_keyset(joined)) == 2


def test_duplicate_keys_count_once(tmp_path: Path) -> None:
    (a,) = _pem(1)
    (tmp_path / "k.pem").write_bytes(a + a)
    assert len(load_keyset_path(tmp_path / "k.pem")) == 1


def test_no_configured_keys_fails_closed(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(NoTrustedKeys) as info:
        keyset_from_settings(make_settings())
    assert info.value.code == "no_trusted_keys"


def test_settings_trusted_keys_names_the_key_file(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    (a,) = _pem(1)
    (tmp_path / "cosign.pub").write_bytes(a)
    keys = keyset_from_settings(make_settings(trusted_keys=str(tmp_path / "cosign.pub")))
    assert len(keys) == 1


@pytest.mark.parametrize(
    "content", [b"", b"not a key", b"-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----\n"]
)
def test_unusable_key_files_are_refused(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "k.pub").write_bytes(content)
    with pytest.raises(KeyInvalid):
        load_keyset_path(tmp_path / "k.pub")


def test_missing_key_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyInvalid):
        load_keyset(str(tmp_path / "absent.pub"))
