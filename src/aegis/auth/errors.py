from __future__ import annotations

from aegis.core.errors import AegisError, Conflict, Forbidden, NotFound, Unauthorized


class AuthenticationFailed(Unauthorized):
    code = "authentication_failed"


class TokenInvalid(Unauthorized):
    code = "token_invalid"


class PermissionDenied(Forbidden):
    code = "permission_denied"


class UserNotFound(NotFound):
    code = "user_not_found"


class UserExists(Conflict):
    code = "user_exists"


class InvalidRole(AegisError):
    code = "invalid_role"
    status_code = 422


class InvalidUsername(AegisError):
    code = "invalid_username"
    status_code = 422


class UsernameReserved(InvalidUsername):
    """The name is one Aegis writes as the actor of its own records (``RESERVED_NAMES``)."""

    code = "username_reserved"


class RateLimited(AegisError):
    code = "rate_limited"
    status_code = 429

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(max(1, int(retry_after + 0.999)))}


class LastAdmin(Conflict):
    """The change would leave no enabled local admin, so nobody could manage users."""

    code = "last_admin"


class WrongPassword(Forbidden):
    code = "wrong_password"
