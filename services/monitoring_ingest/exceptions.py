"""monitoring-ingest's own errors; those that reach the API are typed in shared.errors."""


class MalformedMessage(ValueError):
    """An agent message that is not the protocol's: it is dead-lettered, never stored."""
