"""The provisioner's own errors; those that reach the API are typed in shared.errors."""


class StepFailed(Exception):
    """An install step exited non-zero; the message holds its output."""
