from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request

from aegis.auth.dependencies import SessionDep, require_roles
from aegis.auth.schemas import Actor
from aegis.core.types import IdPath
from aegis.policy import service
from aegis.policy.document import Policy
from aegis.policy.loader import parse_policy
from aegis.policy.schemas import (
    EvaluationRead,
    PolicyDigestRead,
    PolicyRead,
    PolicyVersionRead,
    ReplayBody,
    ReplayRead,
    ReplayRowRead,
)

router = APIRouter(prefix="/api/v1/policy", tags=["policy"])
Admin = Annotated[Actor, Depends(require_roles("admin"))]
Reader = Annotated[Actor, Depends(require_roles("viewer", "operator", "approver"))]
Evaluator = Annotated[
    Actor, Depends(require_roles("viewer", "operator", "approver", principals=("ai-engine",)))
]


async def _document(request: Request) -> Policy:
    """A policy from the body: JSON, or YAML with Content-Type application/yaml."""
    raw = await request.body()
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    yaml = kind in {"application/yaml", "application/x-yaml", "text/yaml"}
    return parse_policy(raw, source="body", format="yaml" if yaml else "json")


DocumentDep = Annotated[Policy, Depends(_document)]


def _read(policy: Policy, active: bool = True) -> PolicyRead:
    return PolicyRead(
        id=policy.id, version=policy.version, active=active, document=policy.canonical_dict()
    )


@router.get("", response_model=list[PolicyRead])
def list_policies(_: Reader, session: SessionDep) -> list[PolicyRead]:
    return [_read(p) for p in service.active_policies(session=session)]


@router.post(
    "",
    response_model=PolicyRead,
    status_code=201,
    openapi_extra={"requestBody": {"content": {"application/json": {}}}},
)
def create_policy(policy: DocumentDep, actor: Admin, session: SessionDep) -> PolicyRead:
    return _read(service.create(session=session, policy=policy, actor=actor.name))


@router.get("/digest", response_model=PolicyDigestRead)
def digest(_: Reader, session: SessionDep) -> PolicyDigestRead:
    policy_set, value = service.active_set(session=session)
    return PolicyDigestRead(digest=value, policies=len(policy_set))


@router.post("/evaluate", response_model=EvaluationRead)
def evaluate(
    body: Annotated[dict[str, Any], Body()], actor: Evaluator, session: SessionDep
) -> EvaluationRead:
    """Dry-run: what would the active policies decide? Audited like any evaluation."""
    request = service.parse_request(body)
    decision, value = service.evaluate(session=session, request=request, actor=actor.name)
    return EvaluationRead(**decision.as_dict(), policy_set_digest=value)


@router.post("/replay", response_model=ReplayRead)
def replay(body: ReplayBody, _: Admin, session: SessionDep) -> ReplayRead:
    """What a candidate policy set (default: the active one) would have decided for every
    action request since ``since``; only the changes are listed unless ``all`` is set."""
    from aegis.actions.replay import replay as run_replay
    from aegis.policy.engine import PolicySet
    from aegis.policy.loader import parse_policies

    candidate = (
        PolicySet(parse_policies(body.policies, source="body"))
        if body.policies is not None
        else service.active_set(session=session)[0]
    )
    rows = run_replay(session=session, candidate=candidate, since=body.since)
    shown = [r for r in rows if r.changed or body.all]
    return ReplayRead(
        replayed=len(rows),
        changed=sum(r.changed for r in rows),
        rows=[
            ReplayRowRead(
                action_id=r.action_id,
                created_at=r.created_at,
                action=r.action,
                target=r.target,
                requested_by=r.requested_by,
                recorded=r.recorded,
                candidate=r.candidate,
                reason=r.reason,
            )
            for r in shown
        ],
    )


@router.get("/{policy_id}", response_model=PolicyRead)
def get_policy(policy_id: str, _: Reader, session: SessionDep) -> PolicyRead:
    row, document = service.get(session=session, policy_id=policy_id)
    return PolicyRead(id=row.id, version=row.current_version, active=row.active, document=document)


@router.put("/{policy_id}", response_model=PolicyRead)
def update_policy(
    policy_id: str, policy: DocumentDep, actor: Admin, session: SessionDep
) -> PolicyRead:
    return _read(
        service.update(session=session, policy_id=policy_id, policy=policy, actor=actor.name)
    )


@router.delete("/{policy_id}", status_code=204)
def delete_policy(policy_id: str, actor: Admin, session: SessionDep) -> None:
    service.delete(session=session, policy_id=policy_id, actor=actor.name)


@router.get("/{policy_id}/versions", response_model=list[PolicyVersionRead])
def list_versions(policy_id: str, _: Reader, session: SessionDep) -> list[PolicyVersionRead]:
    return [
        PolicyVersionRead(
            policy_id=v.policy_id,
            version=v.version,
            change=v.change,
            created_by=v.created_by,
            created_at=v.created_at,
            document=v.document,
        )
        for v in service.versions(session=session, policy_id=policy_id)
    ]


@router.post("/{policy_id}/versions/{version}/restore", response_model=PolicyRead)
def restore_version(
    policy_id: str, version: IdPath, actor: Admin, session: SessionDep
) -> PolicyRead:
    return _read(
        service.restore(session=session, policy_id=policy_id, version=version, actor=actor.name)
    )
