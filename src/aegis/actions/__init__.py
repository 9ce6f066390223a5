"""Action requests: policy decision, four-eyes approval bound to the exact change, dispatch to
the executor (at most once), and the re-check that tells whether it helped."""
