"""``aegis audit export``: JSON Lines for SIEM/OpenSearch ingestion, to any object store URL."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from aegis.audit import service as audit_service
from aegis.audit.models import AuditEntry
from aegis.storage.service import as_store_url, open_store, redact_url

BATCH = 5000


def split_target(url: str) -> tuple[str, str]:
    """``s3://bucket/path/audit.jsonl`` -> (``s3://bucket/path``, ``audit.jsonl``); a local
    path is a ``file://`` URL. A target ending in ``/`` names a folder, existing or not, and is
    refused (it was written as a file named like the folder)."""
    parts = urlsplit(as_store_url(url))
    # as_store_url drops a local path's trailing / (it is a Path): look at what was given too
    if (url.endswith("/") or parts.path.endswith("/")) and parts.path.strip("/"):
        raise ValueError(
            f"export target {redact_url(url)!r} ends with /, a folder: it must name a file, "
            "e.g. s3://bucket/audit/audit.jsonl"
        )
    path = parts.path.rstrip("/")
    if not path or "/" not in path:
        raise ValueError(
            f"export target {redact_url(url)!r} must name a file, e.g. s3://bucket/audit.jsonl"
        )
    folder, name = path.rsplit("/", 1)
    return f"{parts.scheme}://{parts.netloc}{folder}", name


def export_jsonl(
    *,
    session: Session,
    to: str,
    since: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Stream matching entries into a temporary file, then upload it. Returns the count."""
    store_url, key = split_target(to)
    stmt = select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=BATCH)
    if since is not None:
        stmt = stmt.where(AuditEntry.created_at >= audit_service.as_utc(since))
    count = 0
    with tempfile.TemporaryDirectory(prefix="aegis-export-") as tmp:
        path = Path(tmp) / "audit.jsonl"
        result = session.scalars(stmt)
        try:
            with path.open("w", encoding="utf-8") as fh:
                for entry in result:
                    record = audit_service.to_read(entry).model_dump(mode="json")
                    fh.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
                    count += 1
                    if progress and count % BATCH == 0:
                        progress(BATCH)
        finally:
            result.close()  # a server-side cursor on PostgreSQL; an error must release it
        open_store(store_url).put_file(key, path)
    return count
