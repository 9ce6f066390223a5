"""prediction claims: one backend asks the engine about an incident

The index serves the prediction job's query, run every second by every backend: incidents
waiting for a prediction are few among all incidents ever opened.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("prediction_claim", sa.String(36), nullable=True))
        batch.add_column(
            sa.Column("prediction_claimed_at", sa.DateTime(timezone=True), nullable=True)
        )
    op.create_index("ix_incidents_prediction_status", "incidents", ["prediction_status", "status"])


def downgrade() -> None:
    op.drop_index("ix_incidents_prediction_status", table_name="incidents")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("prediction_claimed_at")
        batch.drop_column("prediction_claim")
