"""What a running service holds: its settings and its connections, built once per app."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from aegis.core.config import Settings
from aegis.database.core import Database


@dataclass
class AppContext:
    settings: Settings
    db: Database
    service: str
    started_at: float = field(default_factory=time.monotonic)
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings, *, service: str) -> AppContext:
        return cls(settings=settings, db=Database(settings.effective_database_url), service=service)

    def close(self) -> None:
        self.db.dispose()


def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx
