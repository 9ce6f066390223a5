"""The executor's own tables: remembered nonces and the idempotency record of every action."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from aegis.database.core import Base


class ExecutorNonce(Base):
    """A nonce seen on a verified request, kept until ``expires_at`` (Unix seconds).

    Used when no Redis is configured; with Redis the same contract is ``SET NX EX``.
    """

    __tablename__ = "executor_nonces"

    nonce: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_executor_nonces_expires_at", "expires_at"),)


class ExecutorAction(Base):
    """One idempotency key: claimed before acting, completed with the result afterwards.

    A row left ``in_progress`` (the executor died mid-action) is never retried automatically:
    at most once is the contract; an operator inspects it and uses a new key.
    """

    __tablename__ = "executor_actions"

    idempotency_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_digest: Mapped[str] = mapped_column(String(64))
    action_id: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(253))
    requested_by: Mapped[str] = mapped_column(String(256))
    dry_run: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(16))  # in_progress | done
    status: Mapped[str | None] = mapped_column(String(16), nullable=True)  # succeeded | failed
    result: Mapped[str | None] = mapped_column(Text, nullable=True)  # ExecutorActionResult JSON
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (Index("ix_executor_actions_created_at", "created_at"),)
