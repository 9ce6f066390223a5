"""Identity and access: users, roles, JWT sessions, OIDC, RBAC, rate limits."""
