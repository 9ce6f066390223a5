"""The object-store contract every backend satisfies (one conformance test module checks it)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class ObjectStore(Protocol):
    """Keys are ``/``-separated paths relative to the store root (the URL's path)."""

    url: str

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` atomically, replacing what was there."""

    def get(self, key: str) -> bytes:
        """The bytes at ``key``; raises :class:`~aegis.storage.errors.ObjectNotFound`."""

    def exists(self, key: str) -> bool:
        """Whether an object is stored at ``key``."""

    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix`` (plain string prefix), relative to the root, sorted."""

    def delete(self, key: str) -> None:
        """Remove ``key``; deleting a missing key is not an error."""

    def put_file(self, key: str, path: Path) -> None:
        """Upload a local file, streaming it (memory stays bounded whatever the file size)."""

    def get_file(self, key: str, path: Path) -> None:
        """Download ``key`` into ``path`` (streamed; ``path`` appears only when complete)."""
