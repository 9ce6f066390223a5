"""The engine's parameter bundle: a data-only model directory, loaded and written here.

A model directory holds three files and nothing executable::

    model.json            settings: detector, log mining, windows, symptoms, severity, scaling,
                          and the recommender's kind/action axes
                          (aegis.engine.model_spec.ModelSpec)
    knowledge_base.json   the runbook knowledge base (aegis.engine.knowledge.KnowledgeBase)
    priors.npy            float64 array [rules + 1, actions, 2]: the Beta prior pseudo-counts
                          (alpha, beta) of "this action resolves what this rule matched"
                          (the last row: no rule matched)

``aegis engine train`` (:func:`train`) builds the default model from the knowledge base and the
detectors' default parameters, optionally folding in historical outcome counts, and
:func:`export_model_dir` writes it byte-for-byte reproducibly: sorted-key JSON with a fixed
layout, ``.npy`` written without pickle, no timestamps. :func:`load_model_dir` reads only these
three files, refuses symbolic links, oversize files, NaN in JSON, object (pickled) arrays and
any value out of range, and names the file and field that is wrong (:class:`ModelFormatError`).
Signature verification is the registry's job and happens before this loader runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import TypeAdapter, ValidationError

from aegis.core.files import replace_together
from aegis.engine.errors import EngineError, ModelFormatError
from aegis.engine.knowledge import ACTIONS, FAMILIES, KnowledgeBase, default_knowledge_base
from aegis.engine.model_spec import (
    DetectorSettings,
    LogSettings,
    Mask,
    ModelSpec,
    RecommenderSettings,
)
from aegis.engine.schemas import OutcomeStat, stats_dict

FORMAT = "aegis.engine-model/v1"
SPEC_FILE = "model.json"
KB_FILE = "knowledge_base.json"
PRIORS_FILE = "priors.npy"
MODEL_FILES = (KB_FILE, SPEC_FILE, PRIORS_FILE)
MAX_JSON_BYTES = 4 << 20
MAX_NPY_BYTES = 16 << 20
UNKNOWN_KIND = "unknown"
FALLBACK_ROW = "fallback"

OutcomeCounts = Mapping[tuple[str, str], Mapping[str, int]]


@dataclass(frozen=True)
class EngineModel:
    """A loaded model: its spec, its knowledge base and its prior table (read-only)."""

    spec: ModelSpec
    kb: KnowledgeBase
    priors: npt.NDArray[np.float64]
    digest: str = ""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        return self.spec.version


# Applied in order to the whole text of a batch's lines; none starts with a look-behind or
# ``\b`` so that the regex engine can skip ahead to candidate characters (several times faster).
DEFAULT_MASKS = (
    Mask(
        pattern=r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        mask_with="UUID",
    ),
    Mask(pattern=r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?::\d{1,5})?", mask_with="IP"),
    Mask(pattern=r"0x[0-9a-fA-F]+|[0-9a-f]{12,}", mask_with="HEX"),
    Mask(pattern=r"\d+(?:\.\d+)?", mask_with="NUM"),
)


def read_outcomes(path: Path) -> OutcomeCounts:
    """``aegis engine train --outcomes``: a JSON list of :class:`OutcomeStat`, as counts; what is
    wrong with it is one :class:`EngineError` naming the file (and the field, for an entry)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EngineError(f"cannot read {path}: {exc.strerror}") from None
    if not data.strip():
        raise EngineError(f"{path}: empty file (expected a JSON list of outcomes)")
    try:
        return stats_dict(TypeAdapter(list[OutcomeStat]).validate_json(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            why = f"invalid JSON: {first.get('ctx', {}).get('error', first['msg'])}"
        elif not first["loc"]:
            why = "expected a JSON list of outcomes"
        else:
            why = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        raise EngineError(f"{path}: {why}") from None


def compile_priors(
    kb: KnowledgeBase,
    *,
    prior_strength: float,
    min_prior: float,
    outcomes: OutcomeCounts | None = None,
) -> npt.NDArray[np.float64]:
    """The prior table: Beta pseudo-counts per (rule, action), and a last row for "no rule".

    A rule's row gives each action it names ``prior * prior_strength`` successes and
    ``(1 - prior) * prior_strength`` failures, every other action ``min_prior``; the last row
    gives ``none`` the knowledge base's ``fallback_prior``. Historical outcome counts
    (``outcomes``, keyed like the recommender's ``outcome_stats``) are then added to every row
    of that incident kind (``unknown``: the last row): that is what training on past incidents
    means for this model.
    """
    rows = [*kb.rules, None]
    table = np.zeros((len(rows), len(ACTIONS), 2))
    for r, rule in enumerate(rows):
        named = {ra.action: ra.prior for ra in rule.actions} if rule else {}
        for a, action in enumerate(ACTIONS):
            if action in named:
                mean = named[action]
            else:
                mean = kb.fallback_prior if (rule is None and action == "none") else min_prior
            mean = min(max(mean, 1e-3), 1.0 - 1e-3)  # keep both pseudo-counts positive
            table[r, a] = (mean * prior_strength, (1.0 - mean) * prior_strength)
    for (kind, action), counts in sorted((outcomes or {}).items()):
        if action not in ACTIONS:
            continue
        a = ACTIONS.index(action)
        for r, rule in enumerate(rows):
            if (rule.kind if rule else UNKNOWN_KIND) == kind:
                table[r, a, 0] += max(int(counts.get("successes", 0)), 0)
                table[r, a, 1] += max(int(counts.get("failures", 0)), 0)
    return table


def train(
    *,
    name: str = "example_multimodal",
    version: str = "0.1",
    outcomes: OutcomeCounts | None = None,
) -> EngineModel:
    """The default model: the documented knowledge base and the detectors' default parameters."""
    from aegis.engine import detectors

    kb = default_knowledge_base()
    kinds = (*sorted({rule.kind for rule in kb.rules}), UNKNOWN_KIND)
    recommender = RecommenderSettings(
        kinds=kinds,
        actions=ACTIONS,
        rows=(*(rule.id for rule in kb.rules), FALLBACK_ROW),
        prior_strength=kb.prior_strength,
    )
    spec = ModelSpec(
        name=name,
        version=version,
        description=(
            "Aegis example multimodal incident model: streaming metric anomaly detection, "
            "Drain3 log templates and the runbook knowledge base with Beta-Bernoulli priors."
        ),
        detector=DetectorSettings(
            name=detectors.DEFAULT_DETECTOR,
            params=detectors.create(detectors.DEFAULT_DETECTOR).params,
        ),
        logs=LogSettings(masks=DEFAULT_MASKS),
        recommender=recommender,
    )
    priors = compile_priors(
        kb,
        prior_strength=recommender.prior_strength,
        min_prior=recommender.min_prior,
        outcomes=outcomes,
    )
    model = _checked(spec, kb, priors, digest="")
    return replace(model, digest=content_digest(model_files(model)))


# --- writing -----------------------------------------------------------------------------------


def _json_bytes(data: Any) -> bytes:
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=True, allow_nan=False)
    return (text + "\n").encode("ascii")


def _npy_bytes(array: npt.NDArray[np.float64]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype="<f8"), allow_pickle=False)
    return buffer.getvalue()


def model_files(model: EngineModel) -> dict[str, bytes]:
    """The exact bytes of each file of ``model``'s directory."""
    return {
        SPEC_FILE: _json_bytes(model.spec.model_dump(mode="json")),
        KB_FILE: _json_bytes(model.kb.model_dump(mode="json")),
        PRIORS_FILE: _npy_bytes(model.priors),
    }


def content_digest(files: Mapping[str, bytes]) -> str:
    """``sha256:`` over each file's name and SHA-256, in :data:`MODEL_FILES` order."""
    digest = hashlib.sha256()
    for name in MODEL_FILES:
        digest.update(f"{name}\0{hashlib.sha256(files[name]).hexdigest()}\n".encode())
    return "sha256:" + digest.hexdigest()


def export_model_dir(model: EngineModel, path: Path) -> list[Path]:
    """Write ``model`` into ``path`` (created if needed); the same model gives the same bytes.

    Every file is first written whole to a temporary name in the folder; only when all of them
    are written are they renamed into place, so a failure leaves the folder as it was (and
    removes a folder this call created). A model file name taken by anything but a regular file
    (a folder, a symbolic link) is refused before anything is written. Other files already in
    the folder are left alone. Returns the files written.
    """
    files = model_files(model)
    _check_export_target(path)
    created = _missing_ancestors(path)
    path.mkdir(parents=True, exist_ok=True)  # an OSError here names the path itself
    try:
        replace_together([(path / name, data, 0o644) for name, data in files.items()])
    except OSError as exc:
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        reason = exc.strerror or type(exc).__name__
        raise ModelFormatError(f"cannot write the model into {path}: {reason}") from None
    return [path / name for name in files]


def _check_export_target(path: Path) -> None:
    if not path.exists():
        return
    if not path.is_dir():
        raise ModelFormatError(f"{path} is not a directory; the model was not written")
    for name in MODEL_FILES:
        target = path / name
        if target.is_symlink():
            raise ModelFormatError(f"{target} is a symbolic link; refusing to write through it")
        if target.exists() and not target.is_file():
            kind = "a directory" if target.is_dir() else "not a regular file"
            raise ModelFormatError(f"{target} is {kind}; the model was not written")


def _missing_ancestors(path: Path) -> list[Path]:
    """``path`` and its parents that do not exist yet, deepest first."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists() or folder.is_symlink():
            break
        missing.append(folder)
    return missing


# --- reading -----------------------------------------------------------------------------------


def _read(path: Path, limit: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise ModelFormatError(f"{path.name} is missing from the model directory") from None
    except OSError as exc:
        raise ModelFormatError(f"cannot open {path.name}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ModelFormatError(f"{path.name} is not a regular file")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ModelFormatError(f"{path.name} is larger than {limit} bytes")
    return data


def _reject_constant(token: str) -> float:
    raise ValueError(f"{token} is not allowed")


def _parse_json(name: str, data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelFormatError(f"{name} is not valid UTF-8 JSON: {exc}") from None


def _validation_message(name: str, exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{name}: {where}: {first['msg']}" if where else f"{name}: {first['msg']}"


def _parse_npy(name: str, data: bytes, shape: tuple[int, ...]) -> npt.NDArray[np.float64]:
    """A float64 array of exactly ``shape``; the header is checked before anything is allocated."""
    buffer = io.BytesIO(data)
    try:
        major, _minor = np.lib.format.read_magic(buffer)
        if major == 1:
            got_shape, fortran, dtype = np.lib.format.read_array_header_1_0(buffer)
        elif major in (2, 3):
            got_shape, fortran, dtype = np.lib.format.read_array_header_2_0(buffer)
        else:
            raise ValueError(f"unsupported .npy version {major}")
    except ValueError as exc:
        raise ModelFormatError(f"{name} is not a .npy array: {exc}") from None
    if dtype != np.dtype("<f8") or fortran or tuple(got_shape) != shape:
        raise ModelFormatError(
            f"{name} must be a little-endian float64 C-order array of shape {shape}, "
            f"got {dtype} {tuple(got_shape)}"
        )
    body = data[buffer.tell() :]
    if len(body) != math.prod(shape) * 8:
        raise ModelFormatError(
            f"{name} holds {len(body)} data bytes, expected {math.prod(shape) * 8}"
        )
    array = np.frombuffer(body, dtype="<f8").reshape(shape).astype(np.float64)
    array.flags.writeable = False
    return array


def _check_spec(spec: ModelSpec, kb: KnowledgeBase) -> None:
    """What must hold between ``model.json`` and ``knowledge_base.json``."""
    from aegis.engine import detectors

    rec = spec.recommender
    if tuple(rec.actions) != ACTIONS:
        raise ModelFormatError(f"{SPEC_FILE}: recommender.actions must be {list(ACTIONS)}")
    if len(set(rec.kinds)) != len(rec.kinds) or UNKNOWN_KIND not in rec.kinds:
        raise ModelFormatError(
            f"{SPEC_FILE}: recommender.kinds must be distinct and hold 'unknown'"
        )
    missing = sorted({rule.kind for rule in kb.rules} - set(rec.kinds))
    if missing:
        raise ModelFormatError(f"{SPEC_FILE}: recommender.kinds lacks {', '.join(missing)}")
    if tuple(rec.rows) != (*(rule.id for rule in kb.rules), FALLBACK_ROW):
        raise ModelFormatError(
            f"{SPEC_FILE}: recommender.rows must be the knowledge base's rule ids, then 'fallback'"
        )
    if any(f not in FAMILIES for f in (fp.family for fp in kb.metric_families)):
        raise ModelFormatError(f"{KB_FILE}: unknown metric family")
    try:
        detectors.create(spec.detector.name, spec.detector.params)
    except detectors.DetectorError as exc:
        raise ModelFormatError(f"{SPEC_FILE}: detector: {exc.message}") from None


def _checked(
    spec: ModelSpec, kb: KnowledgeBase, priors: npt.NDArray[np.float64], *, digest: str
) -> EngineModel:
    _check_spec(spec, kb)
    rec = spec.recommender
    if priors.shape != (len(rec.rows), len(ACTIONS), 2):
        raise ModelFormatError(f"{PRIORS_FILE}: shape {priors.shape} does not match the rules")
    if not np.all(np.isfinite(priors)) or not np.all(priors > 0.0) or np.any(priors > 1e9):
        raise ModelFormatError(f"{PRIORS_FILE}: pseudo-counts must be finite and in (0, 1e9]")
    frozen = np.array(priors, dtype=np.float64)
    frozen.flags.writeable = False
    return EngineModel(spec=spec, kb=kb, priors=frozen, digest=digest)


def load_model_dir(path: Path) -> EngineModel:
    """Load and check a model directory (raises :class:`ModelFormatError` naming the problem)."""
    if not path.is_dir():
        raise ModelFormatError(f"{path} is not a model directory")
    raw = {
        name: _read(path / name, MAX_NPY_BYTES if name == PRIORS_FILE else MAX_JSON_BYTES)
        for name in MODEL_FILES
    }
    try:
        spec = ModelSpec.model_validate(_parse_json(SPEC_FILE, raw[SPEC_FILE]))
    except ValidationError as exc:
        raise ModelFormatError(_validation_message(SPEC_FILE, exc)) from None
    try:
        kb = KnowledgeBase.model_validate(_parse_json(KB_FILE, raw[KB_FILE]))
    except ValidationError as exc:
        raise ModelFormatError(_validation_message(KB_FILE, exc)) from None
    _check_spec(spec, kb)  # before the array is read: its shape follows from these
    shape = (len(spec.recommender.rows), len(spec.recommender.actions), 2)
    priors = _parse_npy(PRIORS_FILE, raw[PRIORS_FILE], shape)
    return _checked(spec, kb, priors, digest=content_digest(raw))
