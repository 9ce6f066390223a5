"""Object-storage exceptions, each with a stable code (see ``aegis.core.errors``)."""

from __future__ import annotations

from aegis.core.errors import AegisError


class StorageError(AegisError):
    """An object-store operation failed."""

    code = "storage_error"
    status_code = 500


class ObjectNotFound(StorageError):
    """The key does not exist in the store."""

    code = "object_not_found"
    status_code = 404


class StoreUnavailable(StorageError):
    """The backend could not be reached, refused the credentials, or answered with an error."""

    code = "store_unavailable"
    status_code = 503


class InvalidStoreUrl(StorageError):
    """The store URL has an unsupported scheme or cannot be parsed."""

    code = "invalid_store_url"
    status_code = 500


class InvalidObjectKey(StorageError):
    """The key is empty, absolute, or contains ``.``/``..``/empty segments or control bytes."""

    code = "invalid_object_key"
    status_code = 400
