#!/usr/bin/env python3
"""Runbook wrapper: ``scripts/scan_cloud_sdk_usage.py [--strict] [paths]`` = ``aegis scan sdk``."""

import sys

from aegis.cli.main import run

sys.exit(run(["scan", "sdk", *sys.argv[1:]]))
