"""Health contract of every service (operations runbook section 4)."""
