"""Connectors: the processes that do what tasks ask of the world outside the store,
through its outbox (``store.outbox``)."""
