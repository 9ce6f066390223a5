"""Open an object store by URL: the one way Aegis touches object storage.

Every backend goes through `obstore <https://developmentseed.org/obstore/>`_ (Rust
``object_store``); runtime code never imports a cloud SDK (``aegis scan sdk --strict src``).

===================  ======================================================================
URL                  Backend
===================  ======================================================================
``file:///abs/dir``  folder on local disk (created on first use); the embedded default
``memory://name``    in-process store, shared by every ``open_store`` of the same URL
``s3://bucket/pre``  Amazon S3 or any S3-protocol server (MinIO, Ceph, moto)
``gs://bucket/pre``  Google Cloud Storage
``az://cont/pre``    Azure Blob Storage (account from ``AZURE_STORAGE_ACCOUNT_NAME``)
===================  ======================================================================

Credentials come from each cloud's standard environment chain, read by obstore itself:
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, web identity
(``AWS_WEB_IDENTITY_TOKEN_FILE`` + ``AWS_ROLE_ARN``, i.e. EKS IRSA), ECS/EC2 instance
metadata, ``AWS_ENDPOINT_URL`` and ``AWS_ALLOW_HTTP`` for S3-compatible servers;
``GOOGLE_SERVICE_ACCOUNT``/``GOOGLE_APPLICATION_CREDENTIALS`` or workload identity for GCS;
``AZURE_STORAGE_*``, workload identity or managed identity for Azure. ``options`` overrides them
(obstore config keys such as ``endpoint``, ``region``, ``access_key_id``).
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, quote, unquote, urlsplit, urlunsplit

from aegis.storage.base import ObjectStore
from aegis.storage.errors import (
    InvalidObjectKey,
    InvalidStoreUrl,
    ObjectNotFound,
    StorageError,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from aegis.core.config import Settings

CLOUD_SCHEMES = {"s3", "s3a", "gs", "az", "azure", "abfs", "abfss"}
SCHEMES = CLOUD_SCHEMES | {"file", "memory"}
# schemes obstore opens as the same backend: one spelling each
_SCHEME_ALIASES = {"s3a": "s3", "azure": "az", "abfs": "az", "abfss": "az"}
STREAM_CHUNK = 8 * 1024 * 1024
_RETRY: dict[str, Any] = {
    "max_retries": 3,
    "retry_timeout": timedelta(seconds=30),
    "backoff": {
        "init_backoff": timedelta(milliseconds=100),
        "max_backoff": timedelta(seconds=5),
        "base": 2.0,
    },
}
_memory_stores: dict[str, Any] = {}
_memory_lock = threading.Lock()
_memory_allowed = [True]  # False in one-shot commands: see allow_memory_stores


def allow_memory_stores(allowed: bool) -> bool:
    """Whether ``memory://`` may be opened in this process; returns the previous answer.

    The CLI refuses it for commands that exit when done (backup create, audit export, model
    push...): what they wrote there would be gone the moment they reported success."""
    previous = _memory_allowed[0]
    _memory_allowed[0] = allowed
    return previous


def redact_url(url: str) -> str:
    """The URL without user info, query or fragment (SAS tokens, passwords) for messages and
    logs. Never raises: it names URLs that are being refused (a bad port, a bad IPv6 host)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an unbalanced "[" in the host: cut by hand what could hold secrets
        return re.sub(r"//[^/?#]*@", "//", re.split(r"[?#]", url, maxsplit=1)[0])
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _split(url: str) -> SplitResult:
    """``urlsplit(url)``, its port checked: raise InvalidStoreUrl naming the URL (redacted)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError unless absent or a number in 0-65535
    except ValueError as exc:
        raise InvalidStoreUrl(f"invalid object store URL {redact_url(url)!r}: {exc}") from None
    return parts


def as_store_url(location: str) -> str:
    """An object-store URL: a URL as given, a local path (absolute, relative, ``~/...``) as
    ``file://``."""
    if "://" in location:
        return location
    return Path(location).expanduser().resolve().as_uri()


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise InvalidObjectKey."""
    if not key or key.startswith("/") or key.endswith("/"):
        raise InvalidObjectKey(f"invalid object key {key!r}: must be a relative path")
    if any(ord(ch) < 0x20 or ch in "\\\x7f" for ch in key):
        raise InvalidObjectKey(f"invalid object key {key!r}: control character or backslash")
    if any(part in {"", ".", ".."} for part in key.split("/")):
        raise InvalidObjectKey(f"invalid object key {key!r}: empty, '.' or '..' segment")
    return key


def object_url(store_url: str, key: str) -> str:
    """The URL of object ``key`` in the store at ``store_url``: the key joined onto its path.

    A store URL with user info, a query or a fragment is refused: obstore ignores them
    (credentials come from the environment, see the module docstring), and the URL returned is
    recorded and printed, so it must not carry a password or a SAS token.
    """
    parts = _split(store_url)
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise InvalidStoreUrl(
            f"object store URL {redact_url(store_url)!r} must not carry credentials, a query or "
            "a fragment: give them in the environment (AWS_*, GOOGLE_*, AZURE_STORAGE_*)"
        )
    folder = parts.path.strip("/")
    if folder and any(s in {"", ".", ".."} for s in unquote(folder).split("/")):
        # a/../b or a//b is folder b by another spelling; recorded as written, it would get past
        # the check that each model version has a location of its own
        raise InvalidStoreUrl(
            f"object store URL {redact_url(store_url)!r} has an empty, '.' or '..' path "
            "segment: name the folder plainly"
        )
    path = f"{parts.path.rstrip('/')}/{check_key(key)}"
    url = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    canonical = canonical_url(url)
    if url != canonical:
        # Recorded as written, another spelling of a location would get past the check that
        # each model version has a location of its own. Refused rather than rewritten: what
        # is recorded is then exactly what was written to (obstore reads "Bucket" as a bucket
        # of its own, "b%61" as a bucket named so).
        folder = canonical.rsplit("/", 1)[0] + "/"
        raise InvalidStoreUrl(
            f"object store URL {redact_url(store_url)!r} spells a location another way: write "
            f"it as {folder!r} (lower-case scheme and host, no port, no localhost, %-escapes "
            "only where needed)"
        )
    return url


def canonical_url(url: str) -> str:
    """The one spelling of the object-store location ``url`` names (RFC 3986 section 6.2.2,
    plus what obstore reads alike), which :func:`object_url` insists on. Only the scheme and
    the host are case-insensitive, never the path (object keys are case-sensitive):

    - the scheme lower-case, obstore's aliases as one (``s3a`` is ``s3``; ``azure``, ``abfs``
      and ``abfss`` are ``az``);
    - the host lower-case and unescaped, without a port (obstore ignores it) or user info;
      ``file://localhost/`` is ``file:///``;
    - the path percent-decoded (``%61`` is ``a``, ``%2F`` is ``/``, as obstore and the local
      store read it) and escaped again as :meth:`pathlib.Path.as_uri` does: every byte but
      ``A-Z a-z 0-9 _ . - ~`` and ``/`` as ``%XX``, upper-case. A path that does not decode
      to UTF-8 is :class:`InvalidStoreUrl` (obstore refuses it).

    ``.``/``..``/empty segments are left as they are: :func:`object_url` refuses them and
    :func:`location_key` resolves them. The query and fragment are dropped.
    """
    parts = _split(url)
    scheme = parts.scheme.lower()
    scheme = _SCHEME_ALIASES.get(scheme, scheme)
    host = unquote(parts.hostname or "")  # lower-case, without user info and port
    if scheme == "file" and host == "localhost":
        host = ""
    try:
        path = unquote(parts.path, errors="strict")
    except UnicodeDecodeError:
        raise InvalidStoreUrl(
            f"object store URL {redact_url(url)!r} has a path that is not UTF-8 once %-decoded"
        ) from None
    return urlunsplit((scheme, host, quote(path, safe="/"), "", ""))


def location_key(url: str) -> str | None:
    """The location a recorded URL names, to compare recorded URLs spelled in other ways
    (versions recorded before :func:`object_url` insisted on :func:`canonical_url`): its
    canonical spelling with ``.``, ``..`` and empty path segments resolved; None when it
    names no location at all."""
    try:
        canonical = urlsplit(canonical_url(url))
    except InvalidStoreUrl:
        return None
    resolved: list[str] = []
    for segment in canonical.path.split("/"):
        if segment == "..":
            if resolved:
                resolved.pop()
        elif segment not in {"", "."}:
            resolved.append(segment)
    path = "/" + "/".join(resolved)
    return urlunsplit((canonical.scheme, canonical.netloc, path, "", ""))


class ObstoreStore:
    """An :class:`~aegis.storage.base.ObjectStore` over any obstore backend."""

    def __init__(self, url: str, backend: Any) -> None:
        self.url = url
        self._backend = backend
        self._where = redact_url(url)

    def __repr__(self) -> str:
        return f"ObstoreStore({self._where!r})"

    # --- errors ----------------------------------------------------------------------------
    def _translate(self, exc: BaseException, key: str, *, writing: bool = False) -> StorageError:
        from obstore.exceptions import BaseError, NotFoundError

        if isinstance(exc, FileNotFoundError | NotFoundError):
            if writing:  # a write cannot miss its key: the bucket/container itself is missing
                return StoreUnavailable(
                    f"object store {self._where} refused a write to {key!r}: "
                    "bucket or container not found"
                )
            return ObjectNotFound(f"object {key!r} not found in {self._where}")
        if isinstance(exc, ValueError) and not isinstance(exc, BaseError):
            return InvalidObjectKey(f"invalid object key {key!r}: {_first_line(exc)}")
        return StoreUnavailable(
            f"object store {self._where} failed on {key!r}: "
            f"{type(exc).__name__}: {_first_line(exc)}"
        )

    # --- contract --------------------------------------------------------------------------
    def put(self, key: str, data: bytes) -> None:
        import obstore

        check_key(key)
        try:
            obstore.put(self._backend, key, bytes(data))
        except _backend_errors() as exc:
            raise self._translate(exc, key, writing=True) from None

    def get(self, key: str) -> bytes:
        import obstore

        check_key(key)
        try:
            return bytes(obstore.get(self._backend, key).bytes())
        except _backend_errors() as exc:
            raise self._translate(exc, key) from None

    def exists(self, key: str) -> bool:
        import obstore

        check_key(key)
        try:
            obstore.head(self._backend, key)
        except _backend_errors() as exc:
            error = self._translate(exc, key)
            if isinstance(error, ObjectNotFound):
                return False
            raise error from None
        return True

    def list(self, prefix: str = "") -> list[str]:
        import obstore

        # obstore prefixes match whole path segments; list the enclosing folder, filter here.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        if folder:
            check_key(folder)
        keys: list[str] = []
        try:
            for chunk in obstore.list(self._backend, prefix=folder or None):
                keys.extend(str(meta["path"]) for meta in chunk)
        except FileNotFoundError:
            return []
        except _backend_errors() as exc:
            raise self._translate(exc, prefix) from None
        return sorted(key for key in keys if key.startswith(prefix))

    def delete(self, key: str) -> None:
        import obstore

        check_key(key)
        try:
            obstore.delete(self._backend, key)
        except _backend_errors() as exc:
            error = self._translate(exc, key)
            if not isinstance(error, ObjectNotFound):
                raise error from None

    def put_file(self, key: str, path: Path) -> None:
        import obstore

        check_key(key)
        try:
            with path.open("rb") as fh:
                obstore.put(self._backend, key, fh, chunk_size=STREAM_CHUNK, max_concurrency=4)
        except FileNotFoundError as exc:
            if exc.filename == str(path):
                raise StorageError(f"local file {path} does not exist") from None
            raise self._translate(exc, key, writing=True) from None
        except _backend_errors() as exc:
            raise self._translate(exc, key, writing=True) from None

    def get_file(self, key: str, path: Path) -> None:
        import obstore

        check_key(key)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            result = obstore.get(self._backend, key)
            with partial.open("wb") as fh:
                for chunk in result.stream(min_chunk_size=STREAM_CHUNK):
                    fh.write(chunk)
            partial.replace(path)
        except _backend_errors() as exc:
            partial.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.filename in {str(partial), str(path)}:
                raise StorageError(f"cannot write {path}: {exc.strerror}") from None
            raise self._translate(exc, key) from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise


def _backend_errors() -> tuple[type[BaseException], ...]:
    """What an obstore call raises: its own errors plus the OSError/ValueError it maps to."""
    from obstore.exceptions import BaseError

    return (BaseError, OSError, ValueError, RuntimeError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _memory_backend(url: str) -> Any:
    from obstore.store import MemoryStore

    name = url.rstrip("/")
    with _memory_lock:
        if name not in _memory_stores:
            _memory_stores[name] = MemoryStore()
        return _memory_stores[name]


def _file_backend(url: str, parts: SplitResult, *, create: bool) -> Any:
    from obstore.store import LocalStore

    where = redact_url(url)
    if parts.netloc not in {"", "localhost"}:
        raise InvalidStoreUrl(f"file URL {where!r} must name a local absolute path (file:///...)")
    path = unquote(parts.path)
    if "\x00" in path:
        raise InvalidStoreUrl(f"file URL {where!r} names a path with a NUL byte (%00)")
    root = Path(path)
    if not root.is_absolute():
        raise InvalidStoreUrl(f"file URL {where!r} must name an absolute path")
    if not create and not root.is_dir():
        raise StoreUnavailable(f"no folder {root}")
    try:
        root.mkdir(parents=True, exist_ok=True)
        return LocalStore(prefix=root, automatic_cleanup=True)
    except OSError as exc:
        raise StoreUnavailable(f"cannot use folder {root}: {exc.strerror}") from None


def open_store(
    url: str, *, options: Mapping[str, str] | None = None, create: bool = True
) -> ObjectStore:
    """Open the store at ``url`` (see the module docstring for schemes and credentials).

    ``create=False`` is for readers: a ``file://`` folder that does not exist is
    :class:`StoreUnavailable` instead of being made.

    Opening does no I/O for cloud stores; an unreachable backend raises
    :class:`StoreUnavailable` on the first operation (see :func:`check_store`).
    """
    parts = _split(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise InvalidStoreUrl(
            f"unsupported object store URL {redact_url(url)!r}: use file://, memory://, "
            "s3://, gs:// or az://"
        )
    if scheme == "memory":
        if not _memory_allowed[0]:
            raise InvalidStoreUrl(
                f"{redact_url(url)!r} keeps nothing once this command exits: "
                "use file://, s3://, gs:// or az://"
            )
        return ObstoreStore(url, _memory_backend(url))
    if scheme == "file":
        return ObstoreStore(url, _file_backend(url, parts, create=create))
    if not parts.netloc:
        raise InvalidStoreUrl(f"object store URL {redact_url(url)!r} names no bucket/container")
    from obstore.exceptions import BaseError
    from obstore.store import from_url

    build: Any = from_url  # one call for every scheme; obstore's overloads are per scheme
    config = dict(options or {})
    # Client options given here replace those obstore reads from the environment
    # (AWS_ALLOW_HTTP, ...), so pass them only when the caller sets one explicitly.
    client: dict[str, Any] | None = None
    if config.pop("allow_http", "").lower() in {"1", "true", "yes"}:
        client = {"allow_http": True}
    try:
        backend = build(url, config=config or None, client_options=client, retry_config=_RETRY)
    except (BaseError, ValueError, OSError) as exc:
        raise InvalidStoreUrl(f"cannot open {redact_url(url)}: {_first_line(exc)}") from None
    return ObstoreStore(url, backend)


def check_store(store: ObjectStore) -> None:
    """Raise :class:`StoreUnavailable` unless the store answers (a HEAD on a probe key)."""
    store.exists(".aegis-probe")


def _clear_memory_stores() -> None:
    """Forget every ``memory://`` store (tests only)."""
    with _memory_lock:
        _memory_stores.clear()


__all__ = [
    "ObjectStore",
    "ObstoreStore",
    "as_store_url",
    "canonical_url",
    "check_key",
    "check_store",
    "location_key",
    "object_url",
    "open_configured_store",
    "open_store",
    "redact_url",
]


def open_configured_store(settings: Settings) -> ObjectStore:
    """The store named by ``OBJECT_STORE_URL``, or ``<data dir>/objects`` when unset."""
    return open_store(settings.effective_object_store_url)
