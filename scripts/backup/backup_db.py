#!/usr/bin/env python3
"""Runbook wrapper: ``scripts/backup/backup_db.py [--to URL]`` = ``aegis backup create``.

Prints the artifact URI (e.g. ``s3://bucket/db/aegis-20261123T100000Z-0123abcd.tar.gz.enc``).
"""

import sys

from aegis.cli.main import run

sys.exit(run(["backup", "create", *sys.argv[1:]]))
