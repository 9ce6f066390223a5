"""Read and set runtime flags. Callers audit the change in the same transaction."""

from __future__ import annotations

from sqlalchemy.orm import Session

from aegis.flags.models import RuntimeFlag


def get(*, session: Session, name: str, default: str | None = None) -> str | None:
    flag = session.get(RuntimeFlag, name)
    return flag.value if flag is not None else default


def set_flag(*, session: Session, name: str, value: str, actor: str) -> None:
    flag = session.get(RuntimeFlag, name)
    if flag is None:
        session.add(RuntimeFlag(name=name, value=value, updated_by=actor))
    else:
        flag.value = value
        flag.updated_by = actor
