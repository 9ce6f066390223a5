"""executor nonces and idempotency records

Revision ID: 0005
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "executor_nonces",
        sa.Column("nonce", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("nonce", name=op.f("pk_executor_nonces")),
    )
    op.create_index("ix_executor_nonces_expires_at", "executor_nonces", ["expires_at"])
    op.create_table(
        "executor_actions",
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("request_digest", sa.String(64), nullable=False),
        sa.Column("action_id", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("requested_by", sa.String(256), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("idempotency_key", name=op.f("pk_executor_actions")),
    )
    op.create_index("ix_executor_actions_created_at", "executor_actions", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_executor_actions_created_at", table_name="executor_actions")
    op.drop_table("executor_actions")
    op.drop_index("ix_executor_nonces_expires_at", table_name="executor_nonces")
    op.drop_table("executor_nonces")
