"""Typed errors that cross RPC and are mapped once, at the gateway, to HTTP.

A service raises one of these; nameko serialises it with its class name and
``args`` (message, details); the pooled RPC client turns the class name back
into the same class through ``ERRORS``, so the gateway sees the typed error.
"""


class StewardError(Exception):
    code = "internal_error"
    http_status = 500

    def __init__(self, message, details=None):
        super().__init__(message, details or {})
        self.message = message
        self.details = details or {}

    def __str__(self):
        return self.message

    def to_dict(self):
        return {"error": self.code, "message": self.message, "details": self.details}


class ValidationFailed(StewardError):
    code = "invalid_input"
    http_status = 400


class NotAuthenticated(StewardError):
    code = "not_authenticated"
    http_status = 401


class PermissionDenied(StewardError):
    code = "permission_denied"
    http_status = 403


class NotFound(StewardError):
    code = "not_found"
    http_status = 404


class ServerNotFound(NotFound):
    code = "server_not_found"


class UserNotFound(NotFound):
    code = "user_not_found"


class TokenNotFound(NotFound):
    code = "token_not_found"


class ChannelNotFound(NotFound):
    code = "channel_not_found"


class RuleNotFound(NotFound):
    code = "rule_not_found"


class TemplateNotFound(NotFound):
    code = "template_not_found"


class DeliveryNotFound(NotFound):
    code = "delivery_not_found"


class Conflict(StewardError):
    code = "conflict"
    http_status = 409


class DuplicateName(Conflict):
    code = "duplicate_name"


class ServiceUnavailable(StewardError):
    code = "service_unavailable"
    http_status = 503


class TaskNotFound(NotFound):
    code = "task_not_found"


class HostKeyChanged(Conflict):
    """A managed server offered another SSH host key than the one pinned on first contact."""

    code = "host_key_changed"


class SshFailed(StewardError):
    """SSH to a managed server failed (unreachable, credentials rejected, session lost)."""

    code = "ssh_failed"
    http_status = 502


# -- updater -------------------------------------------------------------------
class InvalidImage(ValidationFailed):
    code = "invalid_image"


class VersionNotFound(NotFound):
    code = "version_not_found"


class RolloutNotFound(NotFound):
    code = "rollout_not_found"


class DiagnosticsNotFound(NotFound):
    code = "diagnostics_not_found"


class RegistryUnavailable(StewardError):
    """The version registry (internet update mode) refused or did not answer."""

    code = "registry_unavailable"
    http_status = 502


def _registry():
    found, pending = {}, [StewardError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


def from_remote(exc_type, args):
    """Rebuild a typed error from nameko's serialised form, or None if unknown."""
    cls = _registry().get(exc_type)
    if cls is None:
        return None
    message = args[0] if args else exc_type
    details = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
    return cls(message, details)
