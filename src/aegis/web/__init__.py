"""The web console: a static page the backend serves at ``/`` that talks to its own API."""
