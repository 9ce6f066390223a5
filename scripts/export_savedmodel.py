#!/usr/bin/env python3
"""Runbook wrapper: ``scripts/export_savedmodel.py --out DIR [--name N] [--version V]
[--outcomes FILE]`` = ``aegis engine train``.

Exports the engine's trained parameters (knowledge base, detector defaults, recommender priors)
into a data-only model directory, byte-for-byte reproducible, ready to build and sign.
"""

import sys

from aegis.cli.main import run

sys.exit(run(["engine", "train", *sys.argv[1:]]))
