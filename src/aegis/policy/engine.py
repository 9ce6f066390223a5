"""The indexed evaluator: :class:`PolicySet` and its decision rule.

Decision rule (``docs/policy.md`` is the reference): for a request, each policy whose subject,
action, namespace and name match has an outcome ``True`` / ``False`` / ``None`` (unknown, an
input it needs is missing; see :mod:`aegis.policy.compiled`). Then:

1. a ``deny`` whose outcome is True or unknown            -> DENY
2. else a ``require_approval`` whose outcome is True       -> REQUIRE_APPROVAL
3. else an ``allow`` whose outcome is True:
       a ``require_approval`` with an unknown outcome      -> REQUIRE_APPROVAL
       otherwise                                           -> ALLOW
4. else                                                    -> DENY (default deny)

The index: one table per action (a policy for ``*`` sits in every table); in a table, literal
namespaces in a dict and globs bucketed by their literal prefix, else their literal suffix
(``*-prod``), else in one list checked for every namespace, so a lookup probes one dict entry per
distinct prefix/suffix length instead of scanning every policy. Each entry maps subject keys
(``role:operator``, ``role:*``, ``*``) to policies, so only policies whose action, namespace and
subject already match are examined. The merged entry per namespace is memoised (the set never
changes). :meth:`PolicySet.evaluate_by_scan` is the unindexed reference.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pydantic import ValidationError

from aegis.policy.compiled import CompiledPolicy
from aegis.policy.document import ACTIONS, Effect, Policy, PolicyRef
from aegis.policy.errors import DuplicatePolicy, InvalidEvaluationRequest
from aegis.policy.globs import Glob
from aegis.policy.request import Decision, EvaluationRequest

_DENY = Effect.DENY
_ALLOW = Effect.ALLOW
_APPROVAL = Effect.REQUIRE_APPROVAL


MERGED_CACHE_SIZE = 4096  # namespaces remembered per action
SubjectMap = dict[str, list[CompiledPolicy]]  # subject key (user:x, role:*, *) -> policies


class _GlobGroup:
    """Every policy indexed under one glob text (so its regex runs once per lookup)."""

    __slots__ = ("by_subject", "regex")

    def __init__(self, glob: Glob) -> None:
        self.regex = glob.regex  # None: the bucket key alone decides the match
        self.by_subject: SubjectMap = {}


class _NamespaceIndex:
    """The policies of one action by namespace pattern: literal namespaces in a dict; globs
    bucketed by their literal prefix, else their literal suffix, else in one list probed for
    every namespace. Each entry maps subject keys to policies."""

    __slots__ = (
        "anywhere",
        "exact",
        "merged",
        "prefix_lengths",
        "prefixes",
        "suffix_lengths",
        "suffixes",
    )

    def __init__(self) -> None:
        self.exact: dict[str, SubjectMap] = {}
        self.prefixes: dict[str, dict[str, _GlobGroup]] = {}
        self.suffixes: dict[str, dict[str, _GlobGroup]] = {}
        self.anywhere: dict[str, _GlobGroup] = {}
        self.prefix_lengths: tuple[int, ...] = ()
        self.suffix_lengths: tuple[int, ...] = ()
        # namespace -> the merged subject map of every pattern matching it. The index never
        # changes after freeze(), so this memo is exact; bounded, it is simply reset when full.
        self.merged: dict[str, SubjectMap] = {}

    def add(self, glob: Glob, subject: str, policy: CompiledPolicy) -> None:
        if glob.literal:
            by_subject = self.exact.setdefault(glob.text, {})
        else:
            if glob.prefix:
                groups = self.prefixes.setdefault(glob.prefix, {})
            elif glob.suffix:
                groups = self.suffixes.setdefault(glob.suffix, {})
            else:
                groups = self.anywhere
            by_subject = groups.setdefault(glob.text, _GlobGroup(glob)).by_subject
        by_subject.setdefault(subject, []).append(policy)

    def freeze(self) -> None:
        self.prefix_lengths = tuple(sorted({len(p) for p in self.prefixes}))
        self.suffix_lengths = tuple(sorted({len(s) for s in self.suffixes}))

    def for_namespace(self, namespace: str) -> SubjectMap:
        """Subject key -> policies whose namespace pattern matches ``namespace`` (a policy
        with two matching patterns is listed twice)."""
        merged = self.merged.get(namespace)
        if merged is None:
            merged = {}
            for by_subject in self.lookup(namespace):
                for key, policies in by_subject.items():
                    merged.setdefault(key, []).extend(policies)
            if len(self.merged) >= MERGED_CACHE_SIZE:
                self.merged.clear()
            self.merged[namespace] = merged
        return merged

    def lookup(self, namespace: str) -> list[SubjectMap]:
        """The subject maps of every pattern matching ``namespace``."""
        found: list[SubjectMap] = []
        hit = self.exact.get(namespace)
        if hit is not None:
            found.append(hit)
        size = len(namespace)
        for length in self.prefix_lengths:
            if length > size:
                break
            groups = self.prefixes.get(namespace[:length])
            if groups is not None:
                _matching(groups, namespace, found)
        for length in self.suffix_lengths:
            if length > size:
                break
            groups = self.suffixes.get(namespace[size - length :])
            if groups is not None:
                _matching(groups, namespace, found)
        if self.anywhere:
            _matching(self.anywhere, namespace, found)
        return found


def _matching(groups: dict[str, _GlobGroup], namespace: str, found: list[SubjectMap]) -> None:
    for group in groups.values():
        if group.regex is None or group.regex.fullmatch(namespace):  # a Match, or Pieces' bool
            found.append(group.by_subject)


def policies_by_id(policies: Iterable[Policy]) -> dict[str, Policy]:
    """``policies`` by id; an id given twice is :class:`DuplicatePolicy`, never decided by
    order."""
    by_id: dict[str, Policy] = {}
    for policy in policies:
        other = by_id.get(policy.id)
        if other is not None:
            raise DuplicatePolicy(
                f"policy {policy.id!r} appears twice in one set "
                f"(v{other.version} and v{policy.version})"
            )
        by_id[policy.id] = policy
    return by_id


class PolicySet:
    """An immutable set of policies (at most one version per id), indexed for evaluation.

    Evaluation is pure: the same set and request always give the same :class:`Decision`,
    whatever order the policies were given in.
    """

    def __init__(self, policies: Iterable[Policy] = ()) -> None:
        by_id = policies_by_id(policies)
        self._policies = tuple(sorted(by_id.values(), key=lambda p: p.ref))
        self._compiled = tuple(CompiledPolicy(p) for p in self._policies)
        self._index: dict[str, _NamespaceIndex] = {action: _NamespaceIndex() for action in ACTIONS}
        for cp in self._compiled:
            for action in cp.actions:
                for glob in cp.namespaces:
                    for subject in cp.subjects:
                        self._index[action].add(glob, subject, cp)
        for index in self._index.values():
            index.freeze()

    @property
    def policies(self) -> tuple[Policy, ...]:
        """The documents, sorted by id."""
        return self._policies

    def __len__(self) -> int:
        return len(self._policies)

    def __iter__(self) -> Iterator[Policy]:
        return iter(self._policies)

    @property
    def max_window_minutes(self) -> int:
        """The longest ``max_actions.per_minutes`` in the set (0 if none): a caller passing
        ``recent_actions`` as timestamps needs at least this much history."""
        windows = [
            c.max_actions.per_minutes
            for p in self._policies
            for c in (p.conditions, p.unless)
            if c is not None and c.max_actions is not None
        ]
        return max(windows, default=0)

    def evaluate(self, request: EvaluationRequest | Mapping[str, Any]) -> Decision:
        """Decide ``request`` using the index."""
        req = _as_request(request)
        by_subject = self._index[req.action].for_namespace(req.resource.namespace)
        buckets: list[list[CompiledPolicy]] = []
        for key in req.subject_keys:
            policies = by_subject.get(key)
            if policies is not None:
                buckets.append(policies)
        return self._decide(req, buckets, dedupe=True)

    def evaluate_by_scan(self, request: EvaluationRequest | Mapping[str, Any]) -> Decision:
        """Decide ``request`` by testing every policy: the reference the index must agree with."""
        req = _as_request(request)
        candidates = [
            cp
            for cp in self._compiled
            if req.action in cp.actions
            and cp.subject_matches(req)
            and cp.namespace_glob(req.resource.namespace)
        ]
        return self._decide(req, [candidates], dedupe=False)

    def _decide(
        self, req: EvaluationRequest, buckets: list[list[CompiledPolicy]], *, dedupe: bool
    ) -> Decision:
        name = req.resource.name
        denies: list[CompiledPolicy] = []
        approvals: list[CompiledPolicy] = []
        unknown_approvals: list[CompiledPolicy] = []
        allows: list[CompiledPolicy] = []
        missed: list[CompiledPolicy] = []
        seen: set[CompiledPolicy] | None = None
        for bucket in buckets:
            for cp in bucket:
                if not (cp.any_name or cp.name_matches(name)):
                    continue
                if dedupe and cp.multi_entry:
                    if seen is None:
                        seen = set()
                    elif cp in seen:
                        continue
                    seen.add(cp)
                outcome = True if cp.unconditional else cp.outcome(req)
                effect = cp.effect
                if effect is _DENY:
                    if outcome is not False:
                        denies.append(cp)
                elif outcome is True:
                    (allows if effect is _ALLOW else approvals).append(cp)
                else:
                    missed.append(cp)
                    if outcome is None and effect is _APPROVAL:
                        unknown_approvals.append(cp)
        return _resolve(
            req,
            denies=denies,
            approvals=approvals,
            unknown_approvals=unknown_approvals,
            allows=allows,
            missed=missed,
        )


def _as_request(request: EvaluationRequest | Mapping[str, Any]) -> EvaluationRequest:
    if isinstance(request, EvaluationRequest):
        return request
    from aegis.policy.loader import field_errors

    try:
        return EvaluationRequest.model_validate(request)
    except ValidationError as exc:
        raise InvalidEvaluationRequest(
            field_errors(exc, model=EvaluationRequest), source="request"
        ) from None


def _resolve(
    req: EvaluationRequest,
    *,
    denies: list[CompiledPolicy],
    approvals: list[CompiledPolicy],
    unknown_approvals: list[CompiledPolicy],
    allows: list[CompiledPolicy],
    missed: list[CompiledPolicy],
) -> Decision:
    """The decision rule (module docstring) over the classified policies."""
    if denies:
        return _decided(_DENY, "denied by", denies, req)
    if approvals:
        return _decided(_APPROVAL, "approval required by", approvals, req)
    if allows:
        if unknown_approvals:
            return _decided(_APPROVAL, "approval required by", unknown_approvals, req)
        return _decided(_ALLOW, "allowed by", allows, req)
    return _default_deny(req, missed)


def _decided(
    effect: Effect, verb: str, deciding: list[CompiledPolicy], req: EvaluationRequest
) -> Decision:
    first = deciding[0]
    if len(deciding) == 1:
        return Decision(effect, (first.ref,), f"{verb} {first.label}: {first.explain_applies(req)}")
    deciding = sorted(deciding, key=_by_ref)
    first = deciding[0]
    reason = f"{verb} {first.label}: {first.explain_applies(req)} (and {len(deciding) - 1} more)"
    return Decision(effect, tuple([cp.ref for cp in deciding]), reason)


def _by_ref(cp: CompiledPolicy) -> PolicyRef:
    return cp.ref


def _default_deny(req: EvaluationRequest, missed: list[CompiledPolicy]) -> Decision:
    reason = (
        f"no policy allows {req.action} on {req.resource.namespace}/{req.resource.name} "
        f"for {', '.join(req.subject)}"
    )
    if missed:
        nearest = missed[0] if len(missed) == 1 else min(missed, key=_by_ref)
        reason += f"; {nearest.label} matched but {nearest.explain_miss(req)}"
    return Decision(_DENY, (), reason)
