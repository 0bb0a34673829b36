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


class TooManyAttempts(StewardError):
    """Too many failed sign-ins for a user name or from an address; ``details.retry_after_seconds`` says when to
    try again (the gateway sends it as Retry-After)."""

    code = "too_many_attempts"
    http_status = 429


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


class DeadLetterNotFound(NotFound):
    code = "dead_letter_not_found"


class Conflict(StewardError):
    code = "conflict"
    http_status = 409


class DuplicateName(Conflict):
    code = "duplicate_name"


class OperationInProgress(Conflict):
    """A long operation on the same server and component is queued or running; details name its task."""

    code = "operation_in_progress"


class RequestInProgress(Conflict):
    """A repeat of a create (same Idempotency-Key) while the first still runs."""

    code = "request_in_progress"


class IdempotencyKeyReused(StewardError):
    """An Idempotency-Key sent again with a different request."""

    code = "idempotency_key_reused"
    http_status = 422


class WouldBeRefusedAgain(Conflict):
    """A dead letter the consumer would refuse again, for the reason given: drop it rather than retry."""

    code = "would_be_refused_again"


class ServiceUnavailable(StewardError):
    code = "service_unavailable"
    http_status = 503


class ServiceNotRunning(ServiceUnavailable):
    """No replica of the service consumes its requests: the request was not sent, so trying again is safe."""


class TaskNotFound(NotFound):
    code = "task_not_found"


class TaskFinished(Conflict):
    """A task asked to change (cancel) that has already ended."""

    code = "task_finished"


class TaskNotCancellable(Conflict):
    """A running task whose kind cannot be stopped half way."""

    code = "task_not_cancellable"


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


# -- backup --------------------------------------------------------------------
class BackupServerNotFound(NotFound):
    code = "backup_server_not_found"


class BackupNotFound(NotFound):
    code = "backup_not_found"


class ScheduleNotFound(NotFound):
    code = "schedule_not_found"


class WrongBackupPassword(ValidationFailed):
    """The managed-backup password given (or in the settings) does not open the backup key."""

    code = "wrong_backup_password"


class BackupPasswordNotSet(Conflict):
    code = "backup_password_not_set"


class BackupServerFailed(StewardError):
    """A backup server's daemon refused, did not answer, or returned something corrupt."""

    code = "backup_server_failed"
    http_status = 502


def error_classes():
    """StewardError and every subclass of it."""
    found, pending = [], [StewardError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def from_remote(exc_type, args):
    """Rebuild a typed error from nameko's serialised form, or None if unknown."""
    cls = {cls.__name__: cls for cls in error_classes()}.get(exc_type)
    if cls is None:
        return None
    message = args[0] if args else exc_type
    details = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
    return cls(message, details)
