"""The ``aegis`` command line: one module per command group, imports deferred until used."""
