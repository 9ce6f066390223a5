"""Aegis: let an AI take operational actions on Kubernetes without trusting it blindly."""

__version__ = "0.1.0"
