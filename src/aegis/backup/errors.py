"""Backup and restore exceptions, each with a stable code (see ``aegis.core.errors``)."""

from __future__ import annotations

from aegis.core.errors import AegisError


class BackupError(AegisError):
    """A backup, restore or drill could not be completed."""

    code = "backup_error"
    status_code = 500


class BackupNotFound(BackupError):
    """No backup artifact at the given URI, or none at all in the backup location."""

    code = "backup_not_found"
    status_code = 404


class BackupCorrupt(BackupError):
    """The artifact fails a check: checksum, row count, format, a truncated or altered chunk."""

    code = "backup_corrupt"
    status_code = 422


class BackupKeyInvalid(BackupError):
    """BACKUP_ENCRYPTION_KEY is missing, too short, or not the key the artifact was made with."""

    code = "backup_key_invalid"
    status_code = 422


class BackupIncompatible(BackupError):
    """The artifact's schema cannot be restored by this version of Aegis."""

    code = "backup_incompatible"
    status_code = 422


class RestoreTargetNotEmpty(BackupError):
    """The target database already holds Aegis rows (restore only into an empty database)."""

    code = "restore_target_not_empty"
    status_code = 409
