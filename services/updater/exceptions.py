"""The updater's own errors; those that reach the API are typed in shared.errors."""


class RemoteFailed(Exception):
    """A command on the server exited non-zero; ``output`` is what it printed."""

    def __init__(self, message, output=""):
        super().__init__(message)
        self.output = output
