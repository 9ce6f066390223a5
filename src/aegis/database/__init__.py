"""The relational store: engine set-up, the declarative base, sessions and migrations."""
