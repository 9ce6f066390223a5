"""The signed model supply chain: archives, cosign and OMS signatures, trusted keys."""
