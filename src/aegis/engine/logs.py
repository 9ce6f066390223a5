"""Log evidence: Drain3 templates that are new or surging in the recent part of an incident.

For one incident, its log lines are split into a *baseline* and a *recent* part (by timestamp at
the incident's boundary when every line has one, else the last ``recent_fraction`` of lines).
Lines are masked (numbers, IPs, UUIDs, hex: the model's ``logs.masks``), identical masked lines
are mined once, and Drain3 (``drain3.drain.Drain``, a fresh tree per incident so incidents never
influence each other) clusters them into templates. Then, per template:

* **new**: it occurs in the recent part and never in the baseline;
* **surging**: its rate (per second, or per line without timestamps) in the recent part is at
  least ``surge_factor`` times its baseline rate (add-one smoothed) and it occurs at least
  ``min_surge_count`` times recently;
* **signature**: when the baseline is too short to compare (fewer than ``min_baseline_lines``
  lines), recent templates that match a knowledge-base log signature ("out of memory", "panic:",
  "connection refused"...) are still reported.

Each piece of evidence lists the signatures it matches; those become symptoms. Work is bounded
and deterministic: the last ``max_lines`` lines are used, each cut to ``max_line_chars``
characters and :data:`MAX_TOKENS` tokens, and mining stops (``truncated``) once
:data:`WORK_BUDGET` token comparisons have been spent, whatever the machine. Drain3's template
miner persistence (jsonpickle) is never used.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from drain3.drain import Drain

from aegis.engine.knowledge import KnowledgeBase
from aegis.engine.model_spec import LogSettings
from aegis.engine.schemas import EncodedLogLine, LogEvidence, LogLine, LogSummary, epoch_seconds

MAX_TOKENS = 64
WORK_BUDGET = 2_000_000  # token comparisons per incident (about 0.2 s of Drain3 at worst)
PARAM = "<*>"
RATIO_LIMIT = 1e6  # a surge ratio is at most this (like a series' change)


@dataclass(frozen=True)
class Signature:
    name: str
    pattern: re.Pattern[str]
    symptom: str
    strength: float


@dataclass(frozen=True)
class LogMiner:
    """A model's compiled log settings."""

    settings: LogSettings
    masks: tuple[tuple[re.Pattern[str], str], ...]
    signatures: tuple[Signature, ...]

    @classmethod
    def build(cls, settings: LogSettings, kb: KnowledgeBase) -> LogMiner:
        masks = tuple((re.compile(m.pattern), f"<{m.mask_with}>") for m in settings.masks)
        signatures = tuple(
            Signature(s.name, re.compile(s.pattern, re.IGNORECASE), s.symptom, s.strength)
            for s in kb.log_signatures
        )
        return cls(settings, masks, signatures)


@dataclass(frozen=True)
class Lines:
    """One incident's lines, ready to mine: texts (cut), timestamps, masked texts."""

    texts: list[str]
    times: list[float | None]
    total: int
    masked: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LogResult:
    summary: LogSummary
    hints: dict[str, tuple[float, str]]  # symptom -> (strength, evidence text)


@dataclass(frozen=True, slots=True)
class RawLines:
    """An incident's log lines as two lists, text and time (epoch seconds or None), in order:
    what a request holds while it waits for its batch (two objects for the garbage collector to
    walk, where the parsed lines were one model each). Not yet cut to a model's limits."""

    texts: list[str]
    times: list[float | None]


def flatten(lines: Sequence[str | LogLine | EncodedLogLine]) -> RawLines:
    """Every line's text (newlines turned into spaces, NUL into U+FFFD: evidence quotes lines,
    and the backend stores it where PostgreSQL cannot hold a NUL) and time."""
    texts: list[str] = []
    times: list[float | None] = []
    add_text, add_time = texts.append, times.append
    for line in lines:
        if isinstance(line, str):
            text, when = line, None
        else:
            text = line.message
            stamp = line.timestamp
            when = (
                stamp
                if type(stamp) is float and math.isfinite(stamp)
                else (None if stamp is None or type(stamp) is float else epoch_seconds(stamp))
            )
        if "\n" in text or "\r" in text or "\x00" in text:
            text = text.replace("\r", " ").replace("\n", " ").replace("\x00", "\ufffd")
        add_text(text)
        add_time(when)
    return RawLines(texts, times)


def cut(raw: RawLines, settings: LogSettings) -> Lines:
    """The last ``max_lines`` lines, each cut to ``max_line_chars``."""
    texts, times = raw.texts, raw.times
    if len(texts) > settings.max_lines:
        texts, times = texts[-settings.max_lines :], times[-settings.max_lines :]
    limit = settings.max_line_chars
    if any(len(t) > limit for t in texts):
        texts = [t[:limit] if len(t) > limit else t for t in texts]
    return Lines(texts, times, len(raw.texts))


def prepare(lines: Sequence[str | LogLine | EncodedLogLine], settings: LogSettings) -> Lines:
    """The last ``max_lines`` lines, cut to ``max_line_chars``, newlines turned into spaces."""
    return cut(flatten(lines), settings)


def mask_batch(batch: list[Lines], miner: LogMiner) -> list[Lines]:
    """Mask every line of a batch at once: one regex pass per mask over the joined text.

    Joining is exact because lines hold no newline and the masks cannot produce one; should a
    model's mask ever match across a newline the count check catches it and each line is masked
    on its own instead.
    """
    texts = [t for lines in batch for t in lines.texts]
    joined = "\n".join(texts)
    for pattern, replacement in miner.masks:
        joined = pattern.sub(replacement, joined)
    masked = joined.split("\n") if texts else []
    if len(masked) != len(texts):
        masked = [_mask_one(t, miner) for t in texts]
    out, at = [], 0
    for lines in batch:
        n = len(lines.texts)
        out.append(Lines(lines.texts, lines.times, lines.total, masked[at : at + n]))
        at += n
    return out


def _mask_one(text: str, miner: LogMiner) -> str:
    for pattern, replacement in miner.masks:
        text = pattern.sub(replacement, text)
    return text.replace("\n", " ")


def _recent_flags(lines: Lines, boundary: float | None, fraction: float) -> list[bool]:
    n = len(lines.texts)
    if boundary is not None and n and all(t is not None for t in lines.times):
        return [t is not None and t >= boundary for t in lines.times]
    first_recent = n - math.ceil(n * fraction)
    return [i >= first_recent for i in range(n)]


def _spans(lines: Lines, recent: list[bool], boundary: float | None) -> tuple[float, float]:
    """Duration (seconds, or lines) of the baseline and the recent part."""
    n_recent = sum(recent)
    times = [t for t in lines.times if t is not None]
    if boundary is not None and times and len(times) == len(lines.texts):
        return max(boundary - min(times), 1.0), max(max(times) - boundary, 1.0)
    return float(max(len(recent) - n_recent, 1)), float(max(n_recent, 1))


def mine(lines: Lines, miner: LogMiner, boundary: float | None, fraction: float) -> LogResult:
    """Templates and evidence of one incident's (masked) lines."""
    s = miner.settings
    recent = _recent_flags(lines, boundary, fraction)
    # identical masked lines are mined once; counts are kept per part
    distinct: dict[str, list[int]] = {}  # masked -> [recent, baseline, first index]
    for i, (m, is_recent) in enumerate(zip(lines.masked, recent, strict=True)):
        entry = distinct.get(m)
        if entry is None:
            distinct[m] = entry = [0, 0, i]
        entry[0 if is_recent else 1] += 1
    drain = Drain(
        depth=s.depth,
        sim_th=s.sim_th,
        max_children=s.max_children,
        max_clusters=None,
        param_str=PARAM,
    )
    per_length: dict[int, int] = {}
    counts: dict[int, list[int]] = {}  # cluster id -> [recent, baseline, example index]
    spent, truncated = 0, False
    for masked, (n_recent, n_base, first) in distinct.items():
        tokens = masked.split()[:MAX_TOKENS]
        cost = len(tokens) * (per_length.get(len(tokens), 0) + 1)
        if spent + cost > WORK_BUDGET or len(drain.id_to_cluster) >= s.max_clusters:
            truncated = True
            break
        spent += cost
        cluster, change = drain.add_log_message(" ".join(tokens))
        if change == "cluster_created":
            per_length[len(tokens)] = per_length.get(len(tokens), 0) + 1
        tally = counts.setdefault(cluster.cluster_id, [0, 0, first])
        tally[0] += n_recent
        tally[1] += n_base
    base_span, recent_span = _spans(lines, recent, boundary)
    parts = _Parts(len(recent) - sum(recent), base_span, recent_span)
    evidence = []
    for cluster_id, (n_recent, n_base, example_at) in counts.items():
        if n_recent == 0:
            continue
        template = drain.id_to_cluster[cluster_id].get_template()
        example = lines.texts[example_at]
        sigs = [sig for sig in miner.signatures if sig.pattern.search(example)]
        item = _judge(s, parts, n_recent, n_base, sigs)
        if item is None:
            continue
        kind, ratio, strength = item
        evidence.append(
            LogEvidence(
                template=template,
                kind=kind,
                recent_count=n_recent,
                baseline_count=n_base,
                ratio=ratio,
                example=example,
                signatures=[sig.name for sig in sigs],
                strength=strength,
            )
        )
    evidence.sort(key=lambda e: (-e.strength, -e.recent_count, e.template))
    evidence = evidence[: s.max_evidence]
    hints = _hints(evidence, miner)
    summary = LogSummary(
        lines=lines.total,
        lines_used=len(lines.texts),
        templates=len(counts),
        score=max((e.strength for e in evidence), default=0.0),
        evidence=evidence,
        truncated=truncated,
    )
    return LogResult(summary, hints)


@dataclass(frozen=True)
class _Parts:
    """The baseline and recent parts of an incident's lines."""

    baseline_lines: int
    base_span: float  # seconds, or lines without timestamps
    recent_span: float


def _judge(
    s: LogSettings, parts: _Parts, n_recent: int, n_base: int, sigs: list[Signature]
) -> tuple[str, float | None, float] | None:
    """(kind, ratio, strength) of a template's evidence, or None when it is not evidence."""
    strength_if = s.new_strength if sigs else s.plain_strength
    if parts.baseline_lines < s.min_baseline_lines:
        if not sigs:
            return None
        return "signature", None, round(max(sig.strength for sig in sigs) * 0.75, 6)
    if n_base == 0:
        return "new", None, strength_if
    # Spans come from the lines' timestamps: finite, but two far apart (+/-1e308) make a span
    # no float holds and the baseline rate 0. The ratio is then at its limit, as is any above.
    base_rate = (n_base + 1) / parts.base_span
    ratio = (
        min((n_recent / parts.recent_span) / base_rate, RATIO_LIMIT) if base_rate else RATIO_LIMIT
    )
    if ratio >= s.surge_factor and n_recent >= s.min_surge_count:
        strength = s.surge_strength if sigs else s.plain_strength
        return "surging", round(ratio, 6), strength
    return None


def _hints(evidence: list[LogEvidence], miner: LogMiner) -> dict[str, tuple[float, str]]:
    by_name = {sig.name: sig for sig in miner.signatures}
    hints: dict[str, tuple[float, str]] = {}
    for e in evidence:
        for name in e.signatures:
            sig = by_name[name]
            factor = 0.75 if e.kind == "signature" else 1.0
            strength = round(sig.strength * factor, 6)
            text = f"{e.kind} log template '{_short(e.template)}' ({e.recent_count} recent)"
            if strength > hints.get(sig.symptom, (0.0, ""))[0]:
                hints[sig.symptom] = (strength, text)
    return hints


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
