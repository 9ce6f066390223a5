#!/usr/bin/env bash
# Runbook section 8: restore the Aegis database = `aegis backup restore`.
#
#   DATABASE_URL=postgresql+psycopg://.../aegis_restored BACKUP_ENCRYPTION_KEY=... \
#   infrastructure/scripts/restore.sh s3://bucket/db/aegis-20261123T100000Z-0123abcd.tar.gz.enc --yes
#
# Restores into an EMPTY database (DATABASE_URL, or --to URL), runs the migrations, verifies
# checksums, row counts and the audit chain. Stop the backend first; start it afterwards.
# With no artifact, restores the newest backup in BACKUP_URL (or BACKUP_DIR).
set -euo pipefail
AEGIS="${AEGIS:-aegis}"
if [[ $# -eq 0 || "$1" == -* ]]; then
  newest="$("$AEGIS" backup list ${BACKUP_URL:+--from "$BACKUP_URL"} | tail -n 1 | awk '{print $3}')"
  if [[ -z "$newest" ]]; then
    echo "error: no backups found" >&2
    exit 1
  fi
  set -- "$newest" "$@"
fi
exec "$AEGIS" backup restore "$@"
