"""Hash many files at once: one SHA-256 per file, files spread over every core.

hashlib releases the GIL while it hashes, so plain threads scale with cores; files are taken
largest first so one big file does not start last and leave the other cores idle.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aegis.registry.signing import sha256_file

Progress = Callable[[int], None]


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def sha256_files(
    paths: Sequence[Path], *, workers: int | None = None, progress: Progress | None = None
) -> dict[Path, bytes]:
    """``{path: sha256 digest}`` for every path."""
    if not paths:
        return {}
    ordered = sorted(paths, key=lambda p: p.stat().st_size, reverse=True)
    count = min(len(ordered), workers or available_cores())
    if count == 1:
        return {path: sha256_file(path, progress=progress) for path in ordered}
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="aegis-hash") as pool:
        results = pool.map(lambda p: sha256_file(p, progress=progress), ordered)
        return dict(zip(ordered, results, strict=True))
