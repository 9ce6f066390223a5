"""audit log and its typed views

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The runbooks query these names; each is a view over the one hash-chained table.
VIEWS: dict[str, dict[str, Any]] = {
    "audit_events": {
        "category": "auth",
        "columns": {"ip": "ip", "username": "username", "reason": "reason"},
    },
    "model_audit": {
        "category": "model",
        "columns": {
            "model": "model",
            "version": "version",
            "digest": "digest",
            "verification_result": "verification_result",
            "key_id": "key_id",
        },
    },
    "policy_audit_logs": {
        "category": "policy",
        "columns": {
            "policy_id": "policy_id",
            "decision": "decision",
            "action": "action",
            "namespace": "namespace",
            "resource_name": "name",
            "policy_set_digest": "digest",
        },
    },
    "action_audit_logs": {
        "category": "action",
        "columns": {
            "action_id": "action_id",
            "action_type": "action",
            "namespace": "namespace",
            "resource_name": "name",
            "status": "status",
            "result": "result",
            "error": "error",
            "requested_by": "requested_by",
            "kube_audit_ids": "kube_audit_ids",
        },
    },
}


def _json_field(dialect: str, key: str) -> str:
    if dialect == "postgresql":
        return f"(data::jsonb ->> '{key}')"
    return f"json_extract(data, '$.{key}')"


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("resource", sa.String(512), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("event_id", name=op.f("uq_audit_log_event_id")),
    )
    op.create_index("ix_audit_log_category_created_at", "audit_log", ["category", "created_at"])
    op.create_index("ix_audit_log_actor", "audit_log", ["actor"])
    dialect = op.get_bind().dialect.name
    for view, spec in VIEWS.items():
        extra = ", ".join(
            f"{_json_field(dialect, key)} AS {column}" for column, key in spec["columns"].items()
        )
        # Names and keys are constants of this file, not input.
        statement = (
            f"CREATE VIEW {view} AS SELECT seq AS id, created_at, event_type, actor, resource, "  # noqa: S608
            f"outcome, {extra}, data, entry_hash FROM audit_log "
            f"WHERE category = '{spec['category']}'"
        )
        op.execute(statement)


def downgrade() -> None:
    for view in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    op.drop_index("ix_audit_log_actor", table_name="audit_log")
    op.drop_index("ix_audit_log_category_created_at", table_name="audit_log")
    op.drop_table("audit_log")
