"""Glob patterns for namespaces and names: the grammar, its validation and its compilation.

Grammar (also published as the ``pattern`` of every glob in ``docs/policy-schema.json``)::

    glob  := item+                      (at most 253 characters)
    item  := char | "*" | "?" | class
    char  := [a-z0-9.-]                 (what Kubernetes allows in names)
    class := "[" "!"? ( c | c "-" c )+ "]"   with c := [a-z0-9.], ranges low <= high

``*`` matches any run of characters (also none), ``?`` exactly one, ``[a-c]`` one of a set and
``[!a-c]`` one character outside it. Matching is against the whole string and case-sensitive.
Anything else (an unclosed ``[``, an empty class, a reversed range, an upper-case letter, a
space) is refused when the policy is parsed rather than silently matching nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GLOB_MAX_LENGTH = 253
_CHAR = "a-z0-9.\\-"
_CLASS_CHAR = "a-z0-9."
# The published grammar; ``check_glob`` also refuses reversed ranges, which a regex cannot.
GLOB_PATTERN = rf"^(?:[{_CHAR}*?]|\[!?(?:[{_CLASS_CHAR}](?:-[{_CLASS_CHAR}])?)+\])+$"
_LITERAL = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")
_CLASS_LITERAL = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.")


def check_glob(pattern: str) -> str:
    """Return ``pattern`` if it follows the grammar, else raise ``ValueError`` saying why."""
    if not pattern:
        raise ValueError("must not be empty")
    if len(pattern) > GLOB_MAX_LENGTH:
        raise ValueError(f"must be at most {GLOB_MAX_LENGTH} characters")
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "[":
            i = _check_class(pattern, i)
            continue
        if ch == "]":
            raise ValueError(f"invalid glob {pattern!r}: ']' at {i} closes nothing")
        if ch not in _LITERAL and ch not in "*?":
            raise ValueError(
                f"invalid glob {pattern!r}: character {ch!r} at {i} is not allowed "
                "(use a-z, 0-9, '.', '-', and the wildcards *, ?, [...])"
            )
        i += 1
    return pattern


def _check_class(pattern: str, start: int) -> int:
    """Check the class opening at ``start``; return the index after its closing ``]``."""
    i = start + 1
    if i < len(pattern) and pattern[i] == "!":
        i += 1
    items = 0
    while i < len(pattern) and pattern[i] != "]":
        low = pattern[i]
        if low not in _CLASS_LITERAL:
            raise ValueError(
                f"invalid glob {pattern!r}: character {low!r} at {i} is not allowed in [...]"
            )
        if i + 2 < len(pattern) and pattern[i + 1] == "-" and pattern[i + 2] != "]":
            high = pattern[i + 2]
            if high not in _CLASS_LITERAL:
                raise ValueError(
                    f"invalid glob {pattern!r}: character {high!r} at {i + 2} is not allowed "
                    "in [...]"
                )
            if high < low:
                raise ValueError(f"invalid glob {pattern!r}: range {low}-{high} is reversed")
            i += 3
        else:
            if pattern[i + 1 : i + 2] == "-":
                raise ValueError(f"invalid glob {pattern!r}: '-' in [...] must join a range")
            i += 1
        items += 1
    if i >= len(pattern):
        raise ValueError(f"invalid glob {pattern!r}: '[' at {start} is never closed")
    if items == 0:
        raise ValueError(f"invalid glob {pattern!r}: empty [...] at {start}")
    return i + 1


def is_literal(pattern: str) -> bool:
    """True when the pattern has no wildcard, so it matches exactly one string."""
    return not any(ch in "*?[" for ch in pattern)


def literal_prefix(pattern: str) -> str:
    """The characters before the first wildcard: every match starts with them."""
    for i, ch in enumerate(pattern):
        if ch in "*?[":
            return pattern[:i]
    return pattern


def to_regex(piece: str) -> re.Pattern[str]:
    """Compile a checked glob without ``*`` to a regular expression of fixed width (every item
    is one character), which cannot backtrack more than its width."""
    out: list[str] = []
    i = 0
    while i < len(piece):
        ch = piece[i]
        if ch == "?":
            out.append(".")
        elif ch == "[":
            end = piece.index("]", i)
            body = piece[i + 1 : end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace(".", "\\.") + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _width(piece: str) -> int:
    """How many characters a glob without ``*`` matches."""
    width = i = 0
    while i < len(piece):
        i = piece.index("]", i) + 1 if piece[i] == "[" else i + 1
        width += 1
    return width


@dataclass(frozen=True, slots=True)
class Pieces:
    """A glob with ``*`` as its star-free pieces, matched left to right: the first at the
    start, the last at the end, each one between at its leftmost place after the one before
    (which leaves the most room for the rest, so it finds a match whenever there is one). At
    most (length x pieces) steps, however many stars: a regex of ``.*`` runs backtracks over
    every split, polynomially in the length and exponentially in the stars (``*a*a*a*a*b``
    against 253 ``a``: seconds; one more ``*a``: hours)."""

    first: re.Pattern[str]
    first_width: int
    middle: tuple[re.Pattern[str], ...]
    last: re.Pattern[str]
    last_width: int

    @classmethod
    def compile(cls, pattern: str) -> Pieces:
        first, *middle, last = pattern.split("*")  # '*' never occurs inside [...]
        return cls(
            first=to_regex(first),
            first_width=_width(first),
            middle=tuple(to_regex(piece) for piece in middle if piece),
            last=to_regex(last),
            last_width=_width(last),
        )

    def fullmatch(self, value: str) -> bool:
        end = len(value) - self.last_width
        if end < self.first_width or self.first.match(value) is None:
            return False
        if self.last.fullmatch(value, end) is None:
            return False
        at = self.first_width
        for piece in self.middle:
            found = piece.search(value, at, end)
            if found is None:
                return False
            at = found.end()
        return True


def literal_suffix(pattern: str) -> str:
    """The characters after the last wildcard (or class): every match ends with them."""
    for i in range(len(pattern) - 1, -1, -1):
        if pattern[i] in "*?]":
            return pattern[i + 1 :]
    return pattern


@dataclass(frozen=True, slots=True)
class Glob:
    """A compiled glob. ``regex`` is None for literals and for globs a prefix and suffix test
    decide alone (``staging-*``, ``*-prod``, ``*``). ``regex`` is a :class:`Pieces` for a
    glob with ``*``: never a regex of ``.*`` runs, whose backtracking a glob could make take
    hours."""

    text: str
    prefix: str
    suffix: str
    literal: bool
    regex: re.Pattern[str] | Pieces | None

    @classmethod
    def compile(cls, text: str) -> Glob:
        prefix, suffix = literal_prefix(text), literal_suffix(text)
        literal = is_literal(text)
        simple = literal or text in (prefix + "*", "*" + suffix)
        regex: re.Pattern[str] | Pieces | None = None
        if not simple:
            regex = Pieces.compile(text) if "*" in text else to_regex(text)
        return cls(text=text, prefix=prefix, suffix=suffix, literal=literal, regex=regex)

    def matches(self, value: str) -> bool:
        if self.literal:
            return value == self.text
        if self.regex is None:
            return value.startswith(self.prefix) and value.endswith(self.suffix)
        return bool(self.regex.fullmatch(value))
