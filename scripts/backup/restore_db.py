#!/usr/bin/env python3
"""Runbook wrapper: ``scripts/backup/restore_db.py <s3://bucket/path> [--to DATABASE_URL] [--yes]``
= ``aegis backup restore``. Restores into an empty database and verifies its audit chain.
"""

import sys

from aegis.cli.main import run

sys.exit(run(["backup", "restore", *sys.argv[1:]]))
