"""Cross-cutting pieces every service shares: settings, errors, logging, HTTP plumbing, metrics."""
