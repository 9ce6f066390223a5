"""Read and set runtime flags. Callers audit the change in the same transaction."""

from __future__ import annotations

from sqlalchemy import func
from sqlalchemy.orm import Session

from aegis.database import bulk
from aegis.flags.models import RuntimeFlag


def get(*, session: Session, name: str, default: str | None = None) -> str | None:
    flag = session.get(RuntimeFlag, name)
    return flag.value if flag is not None else default


def set_flag(*, session: Session, name: str, value: str, actor: str) -> None:
    """Set ``name`` in one statement: two writers setting a flag for the first time at once
    (two policy changes on a new install) do not collide."""
    bulk.upsert(
        session,
        RuntimeFlag,
        {"name": name, "value": value, "updated_by": actor},
        keys=["name"],
        update_with={"value": value, "updated_by": actor, "updated_at": func.now()},
    )


def get_for_update(*, session: Session, name: str, default: str, actor: str) -> str:
    """The flag's value, its row locked until the transaction ends: a caller that reads, checks
    and sets it is not interleaved with another doing the same. A missing flag is created with
    ``default`` first, in one statement, so two first callers at once lock the same row."""
    bulk.upsert(
        session,
        RuntimeFlag,
        {"name": name, "value": default, "updated_by": actor},
        keys=["name"],
        update_with={"value": RuntimeFlag.value},  # no change, but the row is now locked
    )
    flag = session.get(RuntimeFlag, name, populate_existing=True, with_for_update=True)
    assert flag is not None  # just written in this transaction
    return flag.value
