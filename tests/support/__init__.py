"""Helpers the tests share: real services on loopback, free ports, subprocess servers."""
