"""The executor: the only component that changes a cluster, and only on a signed request."""
