"""Executor backends behind one Protocol, chosen by ``EXECUTOR_BACKEND``."""

from __future__ import annotations

from aegis.core.config import Settings
from aegis.core.errors import ConfigError
from aegis.executor.backends.protocol import ActionOutcome, ExecutorBackend

__all__ = ["ActionOutcome", "ExecutorBackend", "build_backend"]


def build_backend(settings: Settings) -> ExecutorBackend:
    """The backend ``settings`` name; ``dry-run`` wraps the mode's default (local/kubernetes)."""
    name = settings.effective_executor_backend
    if name == "dry-run":
        from aegis.executor.backends.dryrun import DryRunBackend

        target = _named("local" if settings.mode == "embedded" else "kubernetes", settings)
        return DryRunBackend(target, journal=settings.data_dir / "executor" / "dry-run.jsonl")
    return _named(name, settings)


def _named(name: str, settings: Settings) -> ExecutorBackend:
    if name == "local":
        from aegis.executor.backends.local import LocalBackend, LocalCluster, default_state_path

        return LocalBackend(LocalCluster(default_state_path(settings.data_dir)))
    if name == "kubernetes":
        from aegis.executor.backends.kube_transport import load_api_client
        from aegis.executor.backends.kubernetes import KubernetesBackend

        return KubernetesBackend(load_api_client())
    raise ConfigError(f"EXECUTOR_BACKEND={name!r} is not one of kubernetes, dry-run, local")
