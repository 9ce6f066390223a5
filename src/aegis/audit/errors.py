from __future__ import annotations

from aegis.core.errors import AegisError


class AuditError(AegisError):
    code = "audit_error"


class AuditUnavailable(AuditError):
    code = "audit_unavailable"
    status_code = 503


class CheckpointInvalid(AuditError):
    code = "checkpoint_invalid"


class UnknownAuditType(AuditError):
    code = "unknown_audit_type"
    status_code = 422
