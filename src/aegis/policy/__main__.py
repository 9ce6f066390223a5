"""``python -m aegis.policy`` prints the policy JSON Schema (``docs/policy-schema.json``)."""

from __future__ import annotations

import sys

from aegis.policy.document import policy_json_schema_text

if __name__ == "__main__":
    sys.stdout.write(policy_json_schema_text())
