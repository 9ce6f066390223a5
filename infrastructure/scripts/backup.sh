#!/usr/bin/env bash
# Runbook section 8: back up the Aegis database = `aegis backup create`.
#
#   DATABASE_URL=postgresql+psycopg://... BACKUP_URL=s3://bucket/db \
#   BACKUP_ENCRYPTION_KEY=... RETENTION_DAYS=14 infrastructure/scripts/backup.sh
#
# BACKUP_URL (optional) is any object-store URL; without it backups go to BACKUP_DIR
# (default <AEGIS_DATA_DIR>/backups). Backups older than RETENTION_DAYS are pruned after each
# run (never the newest). Prints the artifact URI. Redis needs no backup: Aegis keeps only
# rate-limit counters and expiring nonces there. See docs/operations/backup-restore.md.
set -euo pipefail
AEGIS="${AEGIS:-aegis}"
if [[ -n "${BACKUP_URL:-}" ]]; then
  exec "$AEGIS" backup create --to "$BACKUP_URL" "$@"
fi
exec "$AEGIS" backup create "$@"
