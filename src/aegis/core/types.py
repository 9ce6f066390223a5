"""Field types the services' request schemas share, for values that reach the database.

* :data:`IdPath` (and :data:`MAX_DB_INT` for cursors): a row id beyond the databases' BIGINT
  is a 422 at the edge, not an overflow in the driver.
* :data:`PRINTABLE`: the pattern of a name or key (user name, action id, requester) that must
  hold no control character.
* :data:`StoredText`: free text from outside that is stored as received (alert labels and
  annotations; the reasons, comments and notes people write). A NUL character, which
  PostgreSQL's text cannot hold, and a lone surrogate (JSON's escape of half a pair, which no
  database text can hold) become U+FFFD, so the rest of the value is kept instead of the whole
  request being refused, alike on both databases. The characters are replaced
  before the field's own checks: a ``max_length`` would otherwise refuse a lone surrogate
  (pydantic's "unable to parse raw data as a unicode string") before the replacement ran.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Path
from pydantic import BeforeValidator

MAX_DB_INT = 2**63 - 1
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"

IdPath = Annotated[int, Path(ge=1, le=MAX_DB_INT)]


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value: object) -> object:
    if not isinstance(value, str):  # left to the field's type check
        return value
    if value.isascii():
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    return _UNSTORABLE.sub("\ufffd", value)


StoredText = Annotated[str, BeforeValidator(_storable)]
