"""actor columns hold any caller's name: 256 characters, as everywhere else

An OIDC caller is named by the token's ``sub``, up to 255 characters; ``runtime_flags.updated_by``
and ``safety_flags.raised_by``/``reviewed_by`` held 128, so on PostgreSQL such an admin could not
switch a flag, run the safety drill or review a flag.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COLUMNS = (
    ("runtime_flags", "updated_by", False),
    ("safety_flags", "raised_by", False),
    ("safety_flags", "reviewed_by", True),
)


def _resize(length_from: int, length_to: int) -> None:
    for table in dict.fromkeys(t for t, _, _ in COLUMNS):
        with op.batch_alter_table(table) as batch:
            for _, column, nullable in (c for c in COLUMNS if c[0] == table):
                batch.alter_column(
                    column,
                    existing_type=sa.String(length_from),
                    type_=sa.String(length_to),
                    existing_nullable=nullable,
                )


def upgrade() -> None:
    _resize(128, 256)


def downgrade() -> None:
    _resize(256, 128)
