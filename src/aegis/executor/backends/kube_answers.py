"""What the ``kubernetes`` backend reads of the API server's answers, and what an answer must
show before it is read.

The client turns any JSON object into its model, so ``{}`` or an object missing the fields an
action reads (a proxy's or a broken API server's answer) is a model full of ``None``: read as is
it was a crash (``AttributeError``, no audit ids), or worse an action reported done on an answer
that does not show it (``replicas: null``). Each call names what its answer must show
(:class:`Shows`); an answer that does not is refused like any unreadable answer
(:class:`~aegis.executor.backends.kube_transport.KubeAnswerUnreadable`), naming what it lacks.

A read must show what the action reads of it (a pod's uid: without it the DELETE would carry no
precondition). A write must show what the action claims: the ``restartedAt`` stamp sent, the
replica count asked for, the restored revision's images, the uid of the pod deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aegis.executor.backends.protocol import (
    RESTARTED_AT_ANNOTATION,
    REVISION_ANNOTATION,
    parse_revision,
)


@dataclass(frozen=True)
class Shows:
    """An answer of ``kind``; ``lacking(answer)`` says what it fails to show (``"with ..."``),
    or ``None`` when it shows all that is read of it."""

    kind: str
    lacking: Callable[[Any], str | None]


def field(obj: Any, dotted: str) -> Any:
    """``obj.a.b.c`` for ``"a.b.c"``; ``None`` where a step is missing."""
    for name in dotted.split("."):
        obj = getattr(obj, name, None)
    return obj


def fields(kind: str, *dotted: str) -> Shows:
    """An answer in which each of ``dotted`` is present."""
    return Shows(
        kind, lambda obj: next((f"with {d}" for d in dotted if field(obj, d) is None), None)
    )


def _claim(kind: str, claimed: str, holds: Callable[[Any], bool]) -> Shows:
    return Shows(kind, lambda obj: None if obj is not None and holds(obj) else f"with {claimed}")


DEPLOYMENT = fields("V1Deployment", "metadata.uid", "spec.template.spec.containers")
SCALE = fields("V1Scale", "spec.replicas")
POD = fields("V1Pod", "metadata.uid")


def _each_item(listing: Any) -> str | None:
    items = field(listing, "items") or []
    readable = all(field(i, "metadata") and field(i, "spec.template") for i in items)
    return None if readable else "with each item's metadata and spec.template"


REPLICA_SETS = Shows("V1ReplicaSetList", _each_item)


def images(template: Any) -> dict[str, Any]:
    """A pod template's ``{container: image}``."""
    return {c.name: c.image for c in field(template, "spec.containers") or []}


def deployment_state(deployment: Any) -> dict[str, Any]:
    """The state an action reports of a deployment (one that :data:`DEPLOYMENT` shows)."""
    annotations = deployment.metadata.annotations or {}
    template = deployment.spec.template
    template_annotations = (template.metadata.annotations if template.metadata else None) or {}
    replicas = deployment.spec.replicas
    return {
        "replicas": 1 if replicas is None else replicas,  # the API server's default
        "revision": parse_revision(annotations.get(REVISION_ANNOTATION)),
        "restarted_at": template_annotations.get(RESTARTED_AT_ANNOTATION),
        "images": images(template),
    }


def _deployment(obj: Any) -> bool:
    """What :func:`deployment_state` reads is there."""
    return DEPLOYMENT.lacking(obj) is None


def restarted(stamp: str) -> Shows:
    def holds(d: Any) -> bool:
        annotations = field(d, "spec.template.metadata.annotations") or {}
        return _deployment(d) and annotations.get(RESTARTED_AT_ANNOTATION) == stamp

    return _claim("V1Deployment", f"{RESTARTED_AT_ANNOTATION} {stamp}", holds)


def scaled(replicas: int | None) -> Shows:
    return _claim(
        "V1Scale", f"spec.replicas {replicas}", lambda s: field(s, "spec.replicas") == replicas
    )


def rolled_back(template: Any, revision: int) -> Shows:
    """The deployment showing ``template``'s images (a template as the API server defaults it
    may differ in other fields from the ReplicaSet's, e.g. after an upgrade)."""
    wanted = images(template)
    return _claim(
        "V1Deployment",
        f"the pod template of revision {revision}",
        lambda d: _deployment(d) and images(d.spec.template) == wanted,
    )


def deleted(uid: str) -> Shows:
    return _claim("V1Pod", f"metadata.uid {uid}", lambda p: field(p, "metadata.uid") == uid)
