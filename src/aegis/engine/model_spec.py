"""The settings of an engine model: the schema of its ``model.json``.

:class:`ModelSpec` and its sections (detector, log mining, windows, symptoms, severity,
scaling, the recommender's axes) are validated strictly (unknown fields and out-of-range values
are refused). Reading and writing the model directory is :mod:`aegis.engine.model`'s job; the
parts of the engine that only need their settings (log mining, symptoms) import them from here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DetectorSettings(_Section):
    name: str = Field("aegis", min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)
    driver_threshold: float = Field(0.5, ge=0.0, le=1.0)
    max_drivers: int = Field(5, ge=1, le=100)


class Mask(_Section):
    pattern: str = Field(min_length=1, max_length=500)
    mask_with: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,15}$")


class LogSettings(_Section):
    sim_th: float = Field(0.4, gt=0.0, le=1.0)
    depth: int = Field(4, ge=3, le=10)
    max_children: int = Field(100, ge=2, le=10_000)
    max_clusters: int = Field(1000, ge=1, le=100_000)
    masks: tuple[Mask, ...] = ()
    max_lines: int = Field(5000, ge=1, le=100_000)
    max_line_chars: int = Field(2000, ge=16, le=65_536)
    surge_factor: float = Field(3.0, ge=1.0, le=1000.0)
    min_surge_count: int = Field(5, ge=1, le=100_000)
    min_baseline_lines: int = Field(10, ge=1, le=100_000)
    max_evidence: int = Field(10, ge=1, le=100)
    new_strength: float = Field(0.8, ge=0.0, le=1.0)
    surge_strength: float = Field(0.7, ge=0.0, le=1.0)
    plain_strength: float = Field(0.3, ge=0.0, le=1.0)


class WindowSettings(_Section):
    recent_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    recent_window_s: float = Field(900.0, gt=0.0, le=7 * 86400.0)
    alert_lead_s: float = Field(300.0, ge=0.0, le=86400.0)
    deploy_window_s: float = Field(1800.0, gt=0.0, le=7 * 86400.0)


class SymptomSettings(_Section):
    full_change: dict[str, float] = Field(
        default_factory=lambda: {"cpu": 0.5, "load": 0.5, "latency": 1.0, "errors": 1.0},
        description="relative rise that counts fully, per family (cpu, load, latency, errors)",
    )
    memory_full_growth: float = Field(0.3, gt=0.0, le=100.0)
    restarts_full: float = Field(3.0, gt=0.0, le=1000.0)
    anomaly_weight: float = Field(0.5, ge=0.0, le=1.0)
    min_strength: float = Field(0.2, ge=0.0, le=1.0)


class SeveritySettings(_Section):
    alert_priors: dict[str, float] = Field(
        default_factory=lambda: {
            "critical": 0.75,
            "page": 0.75,
            "high": 0.5,
            "warning": 0.45,
            "medium": 0.35,
            "low": 0.15,
            "info": 0.15,
            "none": 0.1,
        }
    )
    default_alert_prior: float = Field(0.35, ge=0.0, le=1.0)
    weight_alert: float = Field(0.7, ge=0.0, le=1.0)
    weight_metrics: float = Field(0.4, ge=0.0, le=1.0)
    weight_logs: float = Field(0.5, ge=0.0, le=1.0)
    weight_symptoms: float = Field(1.0, ge=0.0, le=1.0)
    critical_at: float = Field(0.7, gt=0.0, le=1.0)
    warning_at: float = Field(0.4, gt=0.0, le=1.0)

    @field_validator("alert_priors")
    @classmethod
    def _unit(cls, value: dict[str, float]) -> dict[str, float]:
        if any(not 0.0 <= v <= 1.0 for v in value.values()):
            raise ValueError("alert priors must be in [0, 1]")
        return value


class ScaleSettings(_Section):
    min_factor: float = Field(1.25, ge=1.0, le=10.0)
    max_factor: float = Field(2.0, ge=1.0, le=10.0)
    max_replicas: int = Field(50, ge=1, le=10_000)
    assumed_current: int = Field(1, ge=1, le=10_000)


class RecommenderSettings(_Section):
    kinds: tuple[str, ...] = Field(min_length=1, description="the incident kinds (vocabulary)")
    actions: tuple[str, ...] = Field(min_length=1, description="the columns of priors.npy")
    rows: tuple[str, ...] = Field(min_length=2, description="the rows of priors.npy: rule ids")
    prior_strength: float = Field(8.0, gt=0.0, le=1000.0)
    min_prior: float = Field(0.05, ge=0.0, le=1.0)


class ModelSpec(_Section):
    """``model.json``."""

    format: Literal["aegis.engine-model/v1"] = "aegis.engine-model/v1"
    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(pattern=VERSION_PATTERN)
    description: str = Field("", max_length=2000)
    detector: DetectorSettings = DetectorSettings()
    logs: LogSettings = LogSettings()
    windows: WindowSettings = WindowSettings()
    symptoms: SymptomSettings = SymptomSettings()
    severity: SeveritySettings = SeveritySettings()
    scaling: ScaleSettings = ScaleSettings()
    recommender: RecommenderSettings
