"""action requests and outcomes

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "action_requests",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("requested_by", sa.String(256), nullable=False),
        sa.Column("subjects", sa.JSON(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("incident_kind", sa.String(64), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("severity", sa.String(16), nullable=True),
        sa.Column("model_digest", sa.String(128), nullable=True),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("decision", sa.String(24), nullable=False),
        sa.Column("decision_reason", sa.Text(), nullable=False),
        sa.Column("decision_policies", sa.JSON(), nullable=False),
        sa.Column("policy_set_digest", sa.String(80), nullable=False),
        sa.Column("dry_run_diff", sa.JSON(), nullable=True),
        sa.Column("approval_hash", sa.String(64), nullable=True),
        sa.Column("approved_by", sa.String(256), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("effective", sa.String(16), nullable=True),
        sa.Column("watch_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_action_requests")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_action_requests_idempotency_key")),
    )
    op.create_index(
        "ix_action_requests_status_next", "action_requests", ["status", "next_attempt_at"]
    )
    op.create_index(
        "ix_action_requests_target", "action_requests", ["namespace", "name", "created_at"]
    )
    op.create_index(op.f("ix_action_requests_incident_id"), "action_requests", ["incident_id"])
    op.create_table(
        "action_outcomes",
        sa.Column("incident_kind", sa.String(256), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("successes", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("incident_kind", "action", name=op.f("pk_action_outcomes")),
    )


def downgrade() -> None:
    op.drop_table("action_outcomes")
    op.drop_table("action_requests")
