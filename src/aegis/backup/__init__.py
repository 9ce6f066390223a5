"""Backups and restore drills of the Aegis database (``aegis backup …``).

``service`` creates, lists and prunes backups; ``restore`` restores one into an empty database;
``drill`` restores into a throw-away database and checks it. See
``docs/operations/backup-restore.md``.
"""
