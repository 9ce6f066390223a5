"""The one append-only, hash-chained audit log, its signed checkpoints, verifier and export."""
