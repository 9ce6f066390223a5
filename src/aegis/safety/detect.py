"""What makes an item worth a safety review, found in text the AI engine saw or wrote.

* ``secret``: a credential (``password=``, ``token:``, a bearer token, an AWS access key id, a
  JWT, a private-key header, a GitHub token);
* ``pii``: an e-mail address;
* ``prompt_injection``: text that tries to instruct an AI ("ignore previous instructions",
  "you are now ...", "system prompt").

Secrets and personal data are also *redacted* wherever they are found (the matched value is
replaced by ``[REDACTED]``): a prediction quotes log lines as evidence, and it is stored and shown
in the console. Prompt injection is flagged, not altered. The patterns are heuristics, chosen to
be cheap and to rarely fire on ordinary log lines; a flag is a request for a human to look, not a
verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

REDACTED = "[REDACTED]"
EXCERPT_CHARS = 200

# Each pattern's group "value" (or the whole match) is what is redacted.
_SECRETS = (
    re.compile(
        r"(?i)\b(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key"
        r"|client[_-]?secret)\b[\"']?\s*[:=]\s*[\"']?"
        r"(?P<value>(?=[^\s\"',;&]*[A-Za-z0-9])[^\s\"',;&]{4,})"
    ),
    re.compile(r"(?i)\bbearer\s+(?P<value>[A-Za-z0-9\-._~+/]{16,}=*)"),
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
)
_PII = (re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),)
_INJECTION = (
    re.compile(
        r"(?i)\b(?:ignore|disregard|forget)\s+(?:all\s+|any\s+|the\s+|your\s+)?"
        r"(?:previous|prior|above|earlier|preceding)\s+(?:instructions|prompts?|rules|directions)"
    ),
    re.compile(r"(?i)\byou\s+are\s+now\s+(?:a|an|in|the)\b"),
    re.compile(r"(?i)\b(?:system|developer)\s+prompt\b"),
)


@dataclass(frozen=True)
class Rule:
    reason: str
    patterns: tuple[re.Pattern[str], ...]
    redact: bool
    needle: str = ""  # text without it cannot match (a quick test before the patterns)


RULES = (
    Rule("secret", _SECRETS, redact=True),
    Rule("pii", _PII, redact=True, needle="@"),
    Rule("prompt_injection", _INJECTION, redact=False),
)
# An alert's labels and annotations are the operators' own configuration: an owner's e-mail
# address there is not a leak.
ALERT_RULES = tuple(rule for rule in RULES if rule.reason != "pii")


@dataclass
class Findings:
    """The reasons found, each with the first excerpt (already redacted) that showed it."""

    excerpts: dict[str, str]

    @property
    def reasons(self) -> list[str]:
        return sorted(self.excerpts)


def _redact_match(match: re.Match[str]) -> str:
    if "value" in match.re.groupindex and match.group("value") is not None:
        start, end = match.span("value")
        text = match.string
        return text[match.start() : start] + REDACTED + text[end : match.end()]
    return REDACTED


def scan_text(text: str, findings: Findings, rules: tuple[Rule, ...] = RULES) -> str:
    """``text`` with secrets and personal data redacted; what it showed is added to
    ``findings``."""
    found = []
    for rule in rules:
        if rule.needle and rule.needle not in text:
            continue
        for pattern in rule.patterns:
            if pattern.search(text) is None:
                continue
            found.append(rule.reason)
            if rule.redact:
                text = pattern.sub(_redact_match, text)
    for reason in found:
        findings.excerpts.setdefault(reason, _excerpt(text))
    return text


def _excerpt(text: str) -> str:
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def scan(value: Any, findings: Findings) -> Any:
    """``value`` (JSON-shaped: dicts, lists, strings, numbers) with every string scanned."""
    if isinstance(value, str):
        return scan_text(value, findings)
    if isinstance(value, dict):
        return {key: scan(item, findings) for key, item in value.items()}
    if isinstance(value, list):
        return [scan(item, findings) for item in value]
    return value
