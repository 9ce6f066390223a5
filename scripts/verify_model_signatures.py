#!/usr/bin/env python3
"""Runbook wrapper: ``scripts/verify_model_signatures.py TARGET [--signature SIG] [--key PUB]``.

The same as ``aegis model verify``: TARGET is a model archive (cosign blob signature, default
``TARGET.sig``) or a model directory (OpenSSF Model Signing bundle, default ``model.sig``); the
key defaults to the trusted key set (``AEGIS_TRUSTED_KEYS``). Exit 0 and ``verified`` only when
the signature and the content both hold.
"""

import sys

from aegis.cli.main import run

sys.exit(run(["model", "verify", *sys.argv[1:]]))
