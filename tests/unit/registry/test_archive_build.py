"""aegis model build: reproducible archives that standard tools read."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from aegis.registry.archive import BLOCK_SIZE, build_archive, parse_member_size
from aegis.registry.errors import ModelSourceInvalid, RegistryError
from tests.conftest import require
from tests.unit.registry.builders import write_model

FILES = {
    "config.json": b'{"layers": 2}\n',
    "weights/model.safetensors": os.urandom(BLOCK_SIZE + 12345),
    "tokenizer/vocab.txt": b"a\nb\n",
}


def test_same_directory_twice_gives_identical_bytes(tmp_path: Path) -> None:
    first = write_model(tmp_path / "one", FILES)
    second = write_model(tmp_path / "two", FILES)
    os.utime(second / "config.json", (1_700_000_000, 1_700_000_000))
    (second / "tokenizer" / "vocab.txt").chmod(0o600)
    a = build_archive(first, tmp_path / "a.tar.gz", name="demo", version="1.0")
    b = build_archive(second, tmp_path / "b.tar.gz", name="demo", version="1.0")
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    assert a.sha256 == b.sha256 == hashlib.sha256((tmp_path / "a.tar.gz").read_bytes()).hexdigest()


def test_members_are_sorted_normalised_and_manifest_first(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m", FILES)
    build_archive(model, tmp_path / "m.tar.gz", name="demo", version="1.0")
    with tarfile.open(tmp_path / "m.tar.gz", "r:gz") as tar:
        members = tar.getmembers()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert [m.name for m in members] == ["manifest.json", *sorted(FILES)]
    assert {(m.mode, m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {
        (0o644, 0, 0, "", "", 315532800)
    }
    assert all(m.isreg() for m in members)
    assert manifest["name"] == "demo" and manifest["version"] == "1.0"
    assert manifest["files"] == [
        {"path": p, "size": len(FILES[p]), "sha256": hashlib.sha256(FILES[p]).hexdigest()}
        for p in sorted(FILES)
    ]


def test_archive_is_split_into_gzip_members_that_carry_their_length(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m", FILES)
    built = build_archive(model, tmp_path / "m.tar.gz", name="demo", version="1.0")
    data = built.path.read_bytes()
    offsets = []
    pos = 0
    while pos < len(data):
        size = parse_member_size(data[pos : pos + 20])
        assert size is not None
        offsets.append(pos)
        pos += size
    assert pos == len(data)
    assert len(offsets) >= 2


def test_gnu_tar_extracts_the_archive(tmp_path: Path) -> None:
    require(shutil.which("tar") is not None, "no tar(1) on this machine")
    model = write_model(tmp_path / "m", FILES)
    build_archive(model, tmp_path / "m.tar.gz", name="demo", version="1.0")
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "-xzf", str(tmp_path / "m.tar.gz"), "-C", str(out)], check=True)
    for name, data in FILES.items():
        assert (out / name).read_bytes() == data


def test_symlinks_in_the_model_directory_are_refused(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m", {"a.json": b"{}"})
    (model / "link").symlink_to("/etc/passwd")
    with pytest.raises(ModelSourceInvalid, match="symbolic link"):
        build_archive(model, tmp_path / "m.tar.gz", name="demo", version="1")
    assert not (tmp_path / "m.tar.gz").exists()


def test_manifest_json_at_the_root_is_reserved(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m", {"manifest.json": b"{}"})
    with pytest.raises(ModelSourceInvalid, match="reserved"):
        build_archive(model, tmp_path / "m.tar.gz", name="demo", version="1")


@pytest.mark.parametrize(("name", "version"), [("Bad Name", "1"), ("ok", "../1"), ("", "1")])
def test_invalid_names_and_versions_are_refused(tmp_path: Path, name: str, version: str) -> None:
    model = write_model(tmp_path / "m", {"a.json": b"{}"})
    with pytest.raises(ModelSourceInvalid):
        build_archive(model, tmp_path / "m.tar.gz", name=name, version=version)


def test_weights_are_stored_and_text_is_deflated(tmp_path: Path) -> None:
    from aegis.registry.archive import choose_level, gzip_member
    from aegis.registry.tarstream import inflate_member

    text = b'{"token": "value"}\n' * 200_000
    noise = os.urandom(1 << 20)
    assert choose_level(text) == 1
    assert choose_level(noise) == 0
    for block in (text, noise):
        member = gzip_member(block)
        assert inflate_member(member[20:]) == block
    assert len(gzip_member(text)) < len(text) // 10
    assert len(gzip_member(noise)) < len(noise) * 1.001


def test_an_out_path_that_is_a_folder_is_refused_naming_it(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m", FILES)
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(RegistryError, match="is a folder: name the archive file"):
        build_archive(model, folder, name="demo", version="1.0")
    assert list(folder.iterdir()) == [] and not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize("folders", [[], ["weights", "tokenizer/vocab"]])
def test_a_model_directory_without_files_is_refused_and_leaves_no_archive(
    tmp_path: Path, folders: list[str]
) -> None:
    model = tmp_path / "m"
    model.mkdir()
    for folder in folders:  # empty folders are not kept, so they hold nothing to package
        (model / folder).mkdir(parents=True)
    with pytest.raises(ModelSourceInvalid, match="holds no file"):
        build_archive(model, tmp_path / "out" / "m.tar.gz", name="demo", version="1")
    assert not (tmp_path / "out").exists()
