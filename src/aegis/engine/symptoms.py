"""From evidence to symptoms: what the alert, the series, the logs and recent changes say.

Every symptom has a strength in [0, 1] and the evidence texts behind it; a symptom appears in a
prediction when its strength reaches ``symptoms.min_strength``. Sources (the knowledge base and
``model.json`` hold every number):

* the alert: its name (exact table, then patterns) and label values (``reason=OOMKilled``);
* the series, by family: cpu/load/latency/errors rising (recent mean over baseline mean, scaled
  by ``full_change`` and weighted by the detector's recent score), memory growing steadily, the
  restart counter increasing;
* the logs: signatures of new or surging templates (:mod:`aegis.engine.logs`);
* changes: a deploy (an explicit ``changes`` entry, or series of one metric whose version label
  changed) within ``deploy_window_s`` before the incident.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from aegis.engine.knowledge import KnowledgeBase
from aegis.engine.model_spec import SymptomSettings, WindowSettings
from aegis.engine.schemas import Incident, SymptomRead, epoch_seconds

VERSION_LABELS = ("version", "revision", "image", "app_kubernetes_io_version")
RISING = {
    "cpu": "cpu_high",
    "load": "load_high",
    "latency": "latency_high",
    "errors": "error_spike",
}
MAX_EVIDENCE = 5


@dataclass
class SymptomSet:
    strengths: dict[str, float] = field(default_factory=dict)
    evidence: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, strength: float, text: str) -> None:
        strength = round(min(max(strength, 0.0), 1.0), 6)
        if strength <= 0.0:
            return
        self.strengths[name] = max(self.strengths.get(name, 0.0), strength)
        texts = self.evidence.setdefault(name, [])
        if text not in texts and len(texts) < MAX_EVIDENCE:
            texts.append(text)

    def kept(self, min_strength: float) -> SymptomSet:
        out = SymptomSet()
        for name, strength in self.strengths.items():
            if strength >= min_strength:
                out.strengths[name] = strength
                out.evidence[name] = list(self.evidence.get(name, []))
        return out

    def read(self) -> list[SymptomRead]:
        ranked = sorted(self.strengths.items(), key=lambda kv: (-kv[1], kv[0]))
        return [SymptomRead(name=n, strength=s, evidence=self.evidence[n]) for n, s in ranked]


@dataclass(frozen=True)
class AlertPatterns:
    patterns: tuple[tuple[re.Pattern[str], str, float, str], ...]

    @classmethod
    def build(cls, kb: KnowledgeBase) -> AlertPatterns:
        return cls(
            tuple(
                (re.compile(p.pattern, re.IGNORECASE), p.symptom, p.strength, p.name)
                for p in kb.alert_name_patterns
            )
        )


def from_alert(found: SymptomSet, incident: Incident, kb: KnowledgeBase, ap: AlertPatterns) -> None:
    name = incident.alert.name
    exact = kb.alert_names.get(name.lower())
    if exact:
        for hint in exact:
            found.add(hint.symptom, hint.strength, f"alert {name}")
    elif name:
        for pattern, symptom, strength, _ in ap.patterns:
            if pattern.search(name):
                found.add(symptom, strength, f"alert name {name}")
    for label, table in kb.label_values.items():
        value = incident.alert.labels.get(label, "").lower()
        for hint in table.get(value, ()):
            found.add(hint.symptom, hint.strength, f"alert label {label}={value}")


@dataclass(frozen=True)
class SeriesFacts:
    """One series' figures (see ``aegis.engine.series.Figures``), None where not defined."""

    name: str
    family: str
    recent_score: float
    change: float | None
    growth: float | None
    rising_quarters: int
    increase: float


def from_series(found: SymptomSet, s: SeriesFacts, settings: SymptomSettings) -> None:
    weight = settings.anomaly_weight
    if s.family in RISING and s.change is not None and s.change > 0.0:
        full = settings.full_change.get(s.family, 1.0)
        strength = min(s.change / full, 1.0) * ((1.0 - weight) + weight * s.recent_score)
        found.add(
            RISING[s.family],
            strength,
            f"{s.name}: recent mean {s.change:+.0%} over baseline, "
            f"anomaly score {s.recent_score:.2f}",
        )
    elif s.family == "memory" and s.growth is not None and s.growth > 0.0:
        steady = s.rising_quarters / 3.0
        strength = min(s.growth / settings.memory_full_growth, 1.0) * steady
        found.add(
            "memory_leak",
            strength,
            f"{s.name}: grew {s.growth:+.0%} over the window, "
            f"rising in {s.rising_quarters} of 3 quarters",
        )
    elif s.family == "restarts" and s.increase >= 1.0:
        found.add(
            "crash_loop",
            min(s.increase / settings.restarts_full, 1.0),
            f"{s.name}: +{s.increase:g} restarts in the window",
        )


@dataclass(frozen=True)
class Deploy:
    strength: float
    text: str
    revision: int | None


def _series_deploys(incident: Incident) -> list[tuple[float | None, str]]:
    """(time, description) of version changes seen in series labels of one metric name."""
    starts: dict[tuple[str, str, str], float] = {}
    for s in incident.series:
        key = next((k for k in VERSION_LABELS if k in s.labels), None)
        if key is None:
            continue
        times = [t for t in s.point_times() if t is not None and math.isfinite(t)]
        if times:
            ident = (s.name, key, s.labels[key])
            starts[ident] = min(starts.get(ident, math.inf), *times)
    out: list[tuple[float | None, str]] = []
    names = sorted({(name, key) for name, key, _ in starts})
    for name, key in names:
        versions = sorted((t, v) for (n, k, v), t in starts.items() if (n, k) == (name, key))
        if len(versions) >= 2:
            (_, old), (at, new) = versions[0], versions[-1]
            out.append((at, f"{name}: {key} changed from {old} to {new}"))
    return out


def deploy_of(
    incident: Incident, reference: float | None, settings: WindowSettings
) -> Deploy | None:
    """The strongest sign of a recent deploy, or None."""
    best: Deploy | None = None
    candidates: list[tuple[float | None, str, int | None]] = []
    for c in incident.changes:
        if c.kind in ("deploy", "config"):
            what = f"{c.kind}"
            if c.from_version or c.to_version:
                what += f" {c.from_version or '?'} -> {c.to_version or '?'}"
            candidates.append((epoch_seconds(c.at), what, c.from_revision))
    candidates += [(at, text, None) for at, text in _series_deploys(incident)]
    for at, text, revision in candidates:
        if at is None or reference is None:
            strength, when = 0.5, "at an unknown time"
        elif reference - settings.deploy_window_s <= at <= reference + settings.alert_lead_s:
            minutes = (reference - at) / 60.0
            strength = 1.0
            when = (
                f"{minutes:.0f} min before the incident"
                if minutes >= 0
                else f"{-minutes:.0f} min after the incident began"
            )
        else:
            continue
        if best is None or strength > best.strength:
            best = Deploy(strength, f"{text} ({when})", revision)
    return best
