"""Runtime flags an operator flips without a restart (the executor kill switch, for one)."""
