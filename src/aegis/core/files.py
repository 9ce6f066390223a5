"""Files written whole or not at all: a temporary file beside the target, synced, then renamed.

The rename is atomic on one file system, so a reader sees the old file or the new one, never a
part; a crash or a full disk leaves the old file (and no temporary) behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from aegis.core.errors import AegisError


def staged(path: Path, data: bytes, *, mode: int = 0o600) -> Path:
    """``data`` written and synced to a new temporary file beside ``path``, with ``mode``;
    returns it, ready to be renamed onto ``path``. Nothing is left behind if writing fails."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(mode)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def replace_atomically(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Put ``data`` at ``path`` in one rename (see the module docstring)."""
    tmp = staged(path, data, mode=mode)
    try:
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def replace_together(files: list[tuple[Path, bytes, int]]) -> None:
    """Put each ``(path, data, mode)`` in place, renaming none until all are written: a failure
    while writing leaves every old file (or none) as it was."""
    ready: list[Path] = []
    try:
        for path, data, mode in files:
            ready.append(staged(path, data, mode=mode))
        for tmp, (path, _, _) in zip(ready, files, strict=False):
            tmp.replace(path)
    finally:
        for tmp in ready:
            tmp.unlink(missing_ok=True)


def write_whole(path: Path, data: bytes) -> None:
    """Write ``data`` to a file a user named (an export, a signature) whole or not at all, as
    :func:`replace_atomically` does, so that a full disk (or an interrupted command) leaves neither
    a cut file a user would take for complete nor a half-overwritten earlier one. It gets the
    permissions a plain write would give (the umask's), and a failure is one
    :class:`AegisError` naming ``path``."""
    try:
        replace_atomically(path, data, mode=0o666 & ~_umask())
    except OSError as exc:
        raise AegisError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None


def _umask() -> int:
    mask = os.umask(0o077)  # reading it means setting it: the stricter value, for an instant
    os.umask(mask)
    return mask
