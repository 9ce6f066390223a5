"""Reading a NAB corpus: data files, their series, and the labelled anomaly windows.

Layout (NAB's own): ``DATA_DIR/<category>/<file>.csv`` with columns ``timestamp,value``, and a
windows file ``{"<category>/<file>.csv": [[start, end], ...]}``. Every category folder found is
read, not only NAB's. Data files may also be gzip (``.csv.gz``) or xz (``.csv.xz``) compressed;
their key is still ``<category>/<file>.csv``.
"""

from __future__ import annotations

import csv
import io
import json
import lzma
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from aegis.engine.nab.errors import NabError

COMPRESSED = (".gz", ".xz")
Windows = list[tuple[np.datetime64, np.datetime64]]


@dataclass(frozen=True)
class DataFile:
    """One series file of the corpus."""

    path: Path
    key: str  # "<category>/<file>.csv", the key of the windows file

    @property
    def category(self) -> str:
        return self.key.rpartition("/")[0]

    @property
    def name(self) -> str:
        return self.key.rpartition("/")[2]


@dataclass(frozen=True)
class Series:
    """One file's points: the text as written (kept for the results file) and parsed arrays.

    A timestamp that does not parse is NaT and a value that does not parse is NaN; the detector
    and the scorer both accept them.
    """

    timestamp_text: list[str]
    value_text: list[str]
    timestamps: npt.NDArray[np.datetime64]
    values: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.value_text)


def csv_key(relative: str) -> str | None:
    """``a/b.csv`` for ``a/b.csv``, ``a/b.csv.gz`` or ``a/b.csv.xz``; None for anything else."""
    for suffix in ("", *COMPRESSED):
        if relative.endswith(".csv" + suffix):
            return relative[: len(relative) - len(suffix)]
    return None


def discover(data_dir: Path) -> list[DataFile]:
    """Every data file under ``data_dir`` (hidden entries and symlinks skipped), by key."""
    if not data_dir.is_dir():
        raise NabError(f"data directory {data_dir} does not exist")
    found: dict[str, DataFile] = {}
    for root, dirs, files in os.walk(data_dir, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if name.startswith(".") or path.is_symlink():
                continue
            key = csv_key(path.relative_to(data_dir).as_posix())
            if key is None:
                continue
            if key in found:
                raise NabError(f"{found[key].path} and {path} are the same series {key}")
            found[key] = DataFile(path=path, key=key)
    return [found[k] for k in sorted(found)]


MAX_TEXT_BYTES = 1 << 30  # a data or results file, decompressed


def read_text(path: Path) -> str:
    """The text of a (possibly gzip/xz compressed) UTF-8 file; at most 1 GiB once decompressed."""
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = _inflate(zlib.decompressobj(wbits=31), data, path)
        elif path.suffix == ".xz":
            data = _inflate(lzma.LZMADecompressor(), data, path)
        elif len(data) > MAX_TEXT_BYTES:
            raise NabError(f"{path} is larger than {MAX_TEXT_BYTES} bytes")
        return data.decode("utf-8")
    except (OSError, EOFError, lzma.LZMAError, zlib.error, UnicodeDecodeError) as exc:
        raise NabError(f"cannot read {path}: {exc}") from exc


def _inflate(
    decompressor: zlib._Decompress | lzma.LZMADecompressor, data: bytes, path: Path
) -> bytes:
    out = decompressor.decompress(data, MAX_TEXT_BYTES + 1)
    if len(out) > MAX_TEXT_BYTES:
        raise NabError(f"{path} decompresses to more than {MAX_TEXT_BYTES} bytes")
    return out


def read_series(path: Path) -> Series:
    """Read a ``timestamp,value`` file (other columns are ignored)."""
    try:
        rows = list(csv.reader(io.StringIO(read_text(path), newline="")))
    except csv.Error as exc:
        raise NabError(f"{path} is not a CSV file: {exc}") from exc
    if not rows:
        raise NabError(f"{path} is empty (no header)")
    header = [h.strip().lower() for h in rows[0]]
    try:
        t_col, v_col = header.index("timestamp"), header.index("value")
    except ValueError:
        raise NabError(f"{path} has no 'timestamp' and 'value' columns") from None
    body = [r for r in rows[1:] if r]
    t_text = [r[t_col].strip() if len(r) > t_col else "" for r in body]
    v_text = [r[v_col].strip() if len(r) > v_col else "" for r in body]
    return Series(t_text, v_text, parse_timestamps(t_text), _parse_values(v_text))


def parse_timestamps(texts: list[str]) -> npt.NDArray[np.datetime64]:
    """``YYYY-MM-DD HH:MM:SS[.ffffff]`` texts to ``datetime64[s]``; NaT where one does not parse."""
    try:
        return np.array(texts, dtype="datetime64[s]")
    except ValueError:
        return np.array([_one_timestamp(t) for t in texts], dtype="datetime64[s]")


def _one_timestamp(text: str) -> np.datetime64:
    try:
        return np.datetime64(text, "s")
    except ValueError:
        return np.datetime64("NaT", "s")


def _parse_values(texts: list[str]) -> npt.NDArray[np.float64]:
    try:
        return np.array(texts, dtype=np.float64)
    except ValueError:
        return np.array([_one_value(t) for t in texts], dtype=np.float64)


def _one_value(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def load_windows(path: Path) -> dict[str, Windows]:
    """The windows file: series key to its ``(start, end)`` windows, both ends inclusive."""
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise NabError(f"cannot read labels file {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise NabError(f"labels file {path} is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise NabError(f"labels file {path} must map '<category>/<file>.csv' to windows")
    out: dict[str, Windows] = {}
    for key, windows in raw.items():
        if not isinstance(windows, list):
            raise NabError(f"labels file {path}: the windows of {key} must be a list")
        parsed: Windows = []
        for window in windows:
            if (
                not isinstance(window, list | tuple)
                or len(window) != 2
                or not all(isinstance(t, str) for t in window)
            ):
                raise NabError(f"labels file {path}: {key} has a malformed window {window!r}")
            try:
                start, end = np.datetime64(window[0], "us"), np.datetime64(window[1], "us")
            except ValueError:
                raise NabError(
                    f"labels file {path}: {key} has a bad timestamp in {window}"
                ) from None
            parsed.append((start, end))
        out[str(key)] = parsed
    return out


def in_windows(timestamps: npt.NDArray[np.datetime64], windows: Windows) -> npt.NDArray[np.int64]:
    """1 for each timestamp inside a window (ends included), else 0: NAB's ``label`` column."""
    inside = np.zeros(len(timestamps), dtype=bool)
    for start, end in windows:
        inside |= (timestamps >= start) & (timestamps <= end)
    return inside.astype(np.int64)
