"""Alertmanager webhook ingestion: alerts deduplicated by fingerprint, grouped into incidents."""
