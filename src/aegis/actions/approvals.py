"""Approving and rejecting action requests: the second person's decision.

An approval is refused to the requester, to a hash other than the one the dry run gave
(:func:`aegis.actions.service.approval_hash`), past the deadline (the request expires then), and
when the request would be denied if it were decided again now (:func:`_still_allowed`). A
rejection of the AI engine's recommendation counts as an outcome it learns from.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from aegis.actions import limits
from aegis.actions.errors import (
    ActionExpired,
    ActionStateConflict,
    ApprovalMismatch,
    ApprovalRefused,
    SelfApprovalForbidden,
)
from aegis.actions.models import ActionRequest
from aegis.actions.service import AI_ENGINE, audit, aware, expire, get, now, record_outcome
from aegis.auth.schemas import Actor


def _pending(session: Session, action_id: str) -> ActionRequest:
    """The request to approve or reject, locked; refused unless it is pending and its deadline is
    still ahead. One past its deadline is expired here, whether or not the sweep has run yet."""
    request = get(session=session, action_id=action_id, lock=True)
    if request.status != "pending_approval":
        raise ActionStateConflict(f"action {action_id} is {request.status}, not pending approval")
    if request.expires_at is not None and aware(request.expires_at) <= now():
        expire(session=session, request=request)
        deadline = aware(request.expires_at).isoformat(timespec="seconds")
        raise ActionExpired(f"action {action_id} expired at {deadline}; request it again")
    return request


def _requester_now(session: Session, request: ActionRequest) -> tuple[list[str], str | None]:
    """The requester's policy subjects now, and why they may no longer ask (else None).

    A local user is read again: disabled, they may no longer ask; with other roles, their
    subjects are the new ones. Anyone else (the AI engine, an OIDC subject, whose roles come
    with each token) keeps the subjects recorded with the request."""
    from aegis.auth.models import User

    user = session.scalar(select(User).where(User.username == request.requested_by))
    if user is None:
        return list(request.subjects), None
    if user.disabled:
        return [], f"its requester {user.username} is disabled"
    return sorted(Actor(name=user.username, roles=frozenset(user.roles)).subjects), None


def _still_allowed(session: Session, request: ActionRequest, actor: Actor) -> None:
    """An approval lets the action run now, so the request is decided again now, with the
    requester as they are now and the target's history of this moment: refused (audited,
    committed) when its requester may no longer ask, or when the active set denies it now (say
    a ``max_actions`` limit that another action on the target reached meanwhile, or a
    requester no longer holding the role a policy names)."""
    subjects, gone = _requester_now(session, request)
    if gone is None:
        decision, _ = limits.decide(session, request, subjects, actor=actor.name, at=now())
        if decision.effect.value != "deny":
            return
        reason = decision.reason
        if sorted(subjects) != sorted(request.subjects):
            reason = f"{reason} (its requester {request.requested_by} now holds {subjects})"
        policies = [{"id": r.id, "version": r.version} for r in decision.policies]
    else:
        reason, policies = gone, []
    audit(
        session,
        request,
        "action.approval_refused",
        actor.name,
        decision="deny",
        reason=reason,
        policies=policies,
    )
    raise ApprovalRefused(f"action {request.id} cannot be approved now: {reason}")


def approve(
    *, session: Session, action_id: str, actor: Actor, presented_hash: str, comment: str = ""
) -> ActionRequest:
    request = _pending(session, action_id)
    if actor.name == request.requested_by:
        raise SelfApprovalForbidden("an approver cannot approve their own request")
    if request.approval_hash is None:
        raise ActionStateConflict(
            f"there is no dry run to approve: {request.error}"
            if request.error
            else "the dry run has not finished yet; try again shortly"
        )
    if presented_hash != request.approval_hash:
        raise ApprovalMismatch("the approval is for a different request or diff; reload it")
    _still_allowed(session, request, actor)
    request.status, request.approved_by, request.updated_at = "approved", actor.name, now()
    request.next_attempt_at = now()
    audit(
        session,
        request,
        "action.approved",
        actor.name,
        approval_hash=presented_hash,
        comment=comment,
    )
    return request


def reject(*, session: Session, action_id: str, actor: Actor, comment: str = "") -> ActionRequest:
    request = _pending(session, action_id)
    if actor.name == request.requested_by:
        raise SelfApprovalForbidden(
            "an approver cannot reject their own request: another approver rejects it, "
            "or it expires"
        )
    request.status, request.updated_at = "rejected", now()
    audit(session, request, "action.rejected", actor.name, comment=comment)
    if request.requested_by == AI_ENGINE:
        record_outcome(session=session, request=request, success=False)
    return request
