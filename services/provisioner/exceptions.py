"""The provisioner's own errors; those that reach the API are typed in shared.errors."""
from shared.errors import HostKeyChanged, SshFailed  # noqa: F401  (re-exported for the domain modules)


class StepFailed(Exception):
    """An install step exited non-zero; the message holds its output."""
