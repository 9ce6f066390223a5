"""Object storage: ``open_store(url)`` returns an :class:`ObjectStore` for file://, memory://,
s3://, gs:// and az:// URLs (see :mod:`aegis.storage.service`)."""

from aegis.storage.base import ObjectStore
from aegis.storage.errors import ObjectNotFound, StorageError, StoreUnavailable
from aegis.storage.service import open_store

__all__ = ["ObjectNotFound", "ObjectStore", "StorageError", "StoreUnavailable", "open_store"]
