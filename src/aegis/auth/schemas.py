from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aegis.core.types import PRINTABLE

Role = Literal["viewer", "operator", "approver", "admin"]
ROLES: tuple[str, ...] = ("viewer", "operator", "approver", "admin")


@dataclass(frozen=True)
class Actor:
    """Who is asking: a local user, an OIDC identity, or a service principal."""

    name: str
    roles: frozenset[str]
    kind: Literal["user", "oidc", "service"] = "user"
    session_id: str | None = None
    claims: dict[str, object] = field(default_factory=dict, compare=False)

    @property
    def subjects(self) -> set[str]:
        """Policy subjects this actor matches: user:NAME plus role:ROLE for each role."""
        prefix = "principal" if self.kind == "service" else "user"
        return {f"{prefix}:{self.name}", *(f"role:{role}" for role in self.roles)}

    def has_any(self, roles: set[str]) -> bool:
        return "admin" in self.roles or bool(self.roles & roles)


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=128, pattern=PRINTABLE)
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int


USERNAME_PATTERN = r"^[A-Za-z0-9_.@-]{1,128}$"

# The names Aegis itself writes as the actor of audit records and action requests: the AI
# engine's principal (``actions.service.AI_ENGINE``), the Alertmanager webhook, the policy
# decision, the executor's dry runs, the dispatcher's and re-check's "system", the backend's
# safety screen, and "anonymous" for refused callers. No user may be named one of them, in any
# case (:func:`is_reserved`): a person so named would write audit records that read as the
# system's, and pass checks such as ``requested_by == AI_ENGINE`` (outcome learning).
RESERVED_NAMES = frozenset(
    {"ai-engine", "alertmanager", "anonymous", "executor", "policy", "safety-screen", "system"}
)
# ...and the prefixes of the CLI's and start-up's actors (``cli:local-operator``,
# ``system:aegis-up``): no local username holds a ":", an OIDC subject may.
RESERVED_PREFIXES = ("cli:", "system:")


def is_reserved(name: str) -> bool:
    """Whether ``name`` is, or reads as, one of Aegis's own actors: compared after Unicode
    compatibility normalisation and case folding (``AI-Engine``; ``system`` in fullwidth
    letters, which an OIDC subject may hold)."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return folded in RESERVED_NAMES or folded.startswith(RESERVED_PREFIXES)


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=128, pattern=USERNAME_PATTERN)
    password: str = Field(min_length=12, max_length=1024)
    roles: list[Role] = Field(min_length=1)


class RolesUpdate(BaseModel):
    roles: list[Role] = Field(min_length=1)


class PasswordReset(BaseModel):
    password: str = Field(min_length=12, max_length=1024)


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=12, max_length=1024)


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    roles: list[str]
    disabled: bool
    created_at: datetime


class MeRead(BaseModel):
    name: str
    roles: list[str]
    kind: str
