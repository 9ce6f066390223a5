"""model_versions.archive_uri unique: one version per archive location

Two pushes to one location at once both passed the push's check, and the second archive
replaced the first (that version then no longer loaded). The constraint makes the second wait
and be refused.

Rows recorded before it may share an archive URI (pushes before the check, or such a race). The
newest row keeps the URI; each older one gets ``#superseded-<id>`` appended. The loader reads
the object without the fragment, so every row loads or is refused exactly as before (its
digest decides); a new push to that location is refused, naming the newest version there.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

URI_LENGTH = 1024
log = logging.getLogger("alembic.runtime.migration")


def _mark_superseded_duplicates() -> None:
    versions = sa.table(
        "model_versions",
        sa.column("id", sa.Integer()),
        sa.column("name", sa.String()),
        sa.column("version", sa.String()),
        sa.column("archive_uri", sa.String()),
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(
            versions.c.id, versions.c.name, versions.c.version, versions.c.archive_uri
        ).order_by(versions.c.archive_uri, versions.c.id.desc())
    ).all()
    newest: dict[str, tuple[str, str]] = {}
    for row_id, name, version, uri in rows:
        if uri not in newest:
            newest[uri] = (name, version)
            continue
        suffix = f"#superseded-{row_id}"
        conn.execute(
            sa.update(versions)
            .where(versions.c.id == row_id)
            .values(archive_uri=uri[: URI_LENGTH - len(suffix)] + suffix)
        )
        log.warning(
            "model %s %s shared archive %s with model %s %s (pushed later): it is now recorded "
            "as %s",
            name,
            version,
            uri,
            *newest[uri],
            uri + suffix,
        )


def upgrade() -> None:
    _mark_superseded_duplicates()
    with op.batch_alter_table("model_versions") as batch:
        batch.create_unique_constraint(op.f("uq_model_versions_archive_uri"), ["archive_uri"])


def downgrade() -> None:
    # The ``#superseded-<id>`` URIs stay: they load as before.
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_constraint(op.f("uq_model_versions_archive_uri"), type_="unique")
