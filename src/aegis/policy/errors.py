"""The policy domain's exceptions: each one line for the caller, with a stable code and status.

Parsing and validation errors carry every problem found, each with the dotted path of the bad
field (``conditions.replicas.min: must be >= 0``) and, for YAML, its line.
"""

from __future__ import annotations

from dataclasses import dataclass

from aegis.core.errors import AegisError, Conflict


class PolicyError(AegisError):
    """Root of the policy domain's expected failures."""

    code = "policy_error"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem in a document: where (dotted path, ``[i]`` for list items) and what."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def _located(source: str, error: FieldError) -> str:
    where = f"{source}:{error.line}" if error.line is not None else source
    return f"{where}: {error}"


class PolicyParseError(PolicyError):
    """The text is not well-formed YAML or JSON (or uses a construct Aegis refuses)."""

    code = "policy_parse_error"
    status_code = 422

    def __init__(self, message: str, *, source: str, line: int | None = None) -> None:
        self.source = source
        self.line = line
        super().__init__(_located(source, FieldError("", message, line)))


class InvalidDocument(PolicyError):
    """A document failed validation; ``errors`` lists every problem with its path."""

    code = "invalid_document"
    status_code = 422

    def __init__(self, errors: list[FieldError], *, source: str) -> None:
        self.source = source
        self.errors: tuple[FieldError, ...] = tuple(errors)
        super().__init__("; ".join(_located(source, e) for e in self.errors))


class PolicyInvalid(InvalidDocument):
    """A policy document is well-formed but breaks the policy schema."""

    code = "policy_invalid"


class InvalidEvaluationRequest(InvalidDocument):
    """An evaluation request breaks the request shape; nothing was decided."""

    code = "invalid_evaluation_request"


class DuplicatePolicy(PolicyError, Conflict):
    """Two documents in one policy set share an id."""

    code = "duplicate_policy"


# --- signed bundles ---------------------------------------------------------------------------
class BundleError(PolicyError):
    """A policy bundle was refused; nothing from it may be used."""

    code = "bundle_invalid"


class BundleFormatError(BundleError):
    """The bundle is not the documented tar (wrong members, links, sizes, non-canonical JSON)."""

    code = "bundle_format_invalid"


class BundleDigestMismatch(BundleError):
    """``policies.json`` does not hash to the digest the bundle records."""

    code = "bundle_digest_mismatch"


class BundleSignatureInvalid(BundleError):
    """No trusted public key verifies the bundle's signature."""

    code = "bundle_signature_invalid"


class BundleRollback(BundleError, Conflict):
    """The bundle's serial is not above the highest one applied (or it has none, format v1):
    applying it could roll policies back to an older, laxer set."""

    code = "bundle_rollback"

    def __init__(self, *, serial: int | None, highest: int) -> None:
        self.serial = serial
        self.highest = highest
        if serial is None:
            message = (
                "policy bundle has no serial (format v1, from before serials), so it may be"
                f" older than serial {highest}, the highest applied: refused as a rollback"
            )
        else:
            message = (
                f"policy bundle serial {serial} is not greater than serial {highest}, the"
                " highest applied: refused as a rollback"
            )
        super().__init__(message)
