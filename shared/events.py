"""The event catalog: every event Steward emits, with its schema and version.

Events are past-tense facts. Every payload is a dict with ``event``,
``version``, ``occurred_at`` (UTC, ISO 8601), ``id`` (unique, made when it is
built) and ``sequence`` (its producer's outbox sequence, set as it is
published) beside its own fields, and carries the ids needed to act on it. Emitters build payloads with
``build_event``; consumers check them with ``load_event``, so both sides
agree on one schema.
"""
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema


class EventSchema(Schema):
    class Meta:
        # A newer emitter may add fields; older consumers ignore them.
        unknown = EXCLUDE

    event = fields.String(required=True)
    version = fields.Integer(required=True)
    occurred_at = fields.DateTime(required=True, format="iso")
    # Consumers drop a repeat by id (the outbox delivers at least once: shared/outbox.py).
    # Always sent; absent only from events emitted before the outbox, which consumers still take.
    id = fields.String(load_default=None, validate=validate.Regexp(r"^[0-9a-f]{32}$"), metadata={
        "description": "Unique per event; an event may be delivered more than once, so drop one whose id you saw"})
    # The producer's outbox sequence: increasing in the order its events were written (gaps allowed).
    sequence = fields.Integer(allow_none=True, load_default=None, metadata={
        "description": "The emitting service's sequence: increasing in the order it wrote its events, with gaps"})


class ServerRef(Schema):
    class Meta:
        unknown = EXCLUDE

    id = fields.Integer(required=True)
    name = fields.String(required=True)
    address = fields.String(required=True)
    os = fields.String(required=True)
    state = fields.String(required=True)


class ServerCreated(EventSchema):
    server = fields.Nested(ServerRef, required=True)


class ServerUpdated(EventSchema):
    server = fields.Nested(ServerRef, required=True)
    changed = fields.List(fields.String(), required=True)


class ServerDeleted(EventSchema):
    server = fields.Nested(ServerRef, required=True)


class TaskProgress(EventSchema):
    server_id = fields.Integer(required=True)
    task_id = fields.String(required=True)
    step = fields.String(required=True)
    step_index = fields.Integer(required=True)
    step_count = fields.Integer(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["started", "succeeded", "failed"]))


class TaskFinished(EventSchema):
    server_id = fields.Integer(required=True)
    server_name = fields.String(required=True)
    task_id = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(["succeeded", "failed", "rolled_back", "cancelled"]))
    error = fields.String(allow_none=True, load_default=None)


class UpdateRolledBack(TaskFinished):
    component = fields.String(required=True)
    failed_version = fields.String(required=True)
    restored_version = fields.String(required=True)
    reason = fields.String(required=True)


class ServerStateChanged(EventSchema):
    server_id = fields.Integer(required=True)
    server_name = fields.String(required=True)
    previous_state = fields.String(required=True, validate=validate.OneOf(["up", "down", "unknown"]))
    state = fields.String(required=True, validate=validate.OneOf(["up", "down"]))
    last_heartbeat_at = fields.DateTime(allow_none=True, load_default=None, format="iso")


class ServerVersionsReported(EventSchema):
    """A heartbeat reported other running components than the one before: inventory's record follows it."""
    server_id = fields.Integer(required=True)
    server_name = fields.String(required=True)
    versions = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


class FleetSilenceDetected(EventSchema):
    """Most servers fell silent at about the same moment: the control plane's network or the network in
    between, not each server; reported once instead of a down for each."""
    silent_servers = fields.Integer(required=True)
    servers_up = fields.Integer(required=True)  # how many were up when it began
    silent_since = fields.DateTime(required=True, format="iso")
    server_ids = fields.List(fields.Integer(), required=True)


class DiskLow(EventSchema):
    server_id = fields.Integer(required=True)
    server_name = fields.String(required=True)
    mountpoint = fields.String(required=True)
    free_percent = fields.Float(required=True)


# Why tokens_revoked was emitted: the change that made the tokens stop working (or what they grant change).
REVOCATION_REASONS = ("token_deleted", "agent_token_reissued", "server_deleted", "user_deleted", "user_changed",
                      "password_changed", "signed_out", "orphans_removed")


class TokensRevoked(EventSchema):
    """API or agent tokens stopped working, or what they grant changed: every gateway process drops what it
    cached of them, so a revoked token is refused at once, not when its cache entry
    ends. It names whose tokens, never which token: a user's (every token of that user; ``user_changed``:
    their role or groups changed) and a server's agent's (``server_ids``)."""
    reason = fields.String(required=True, validate=validate.OneOf(REVOCATION_REASONS))
    user_ids = fields.List(fields.Integer(), load_default=list, metadata={
        "description": "Users whose tokens (API tokens and console sessions) are to be verified again"})
    server_ids = fields.List(fields.Integer(), load_default=list, metadata={
        "description": "Servers whose agent tokens are to be verified again"})

    @validates_schema
    def _names_someone(self, data, **kwargs):
        if not data.get("user_ids") and not data.get("server_ids"):
            raise ValidationError("names no user and no server", "user_ids")


class BackupDiskLow(EventSchema):
    """A backup server's daemon saw its disk cross below its threshold (once per crossing)."""
    backup_server_id = fields.Integer(required=True)
    backup_server_name = fields.String(required=True)
    free_percent = fields.Float(required=True)
    free_bytes = fields.Integer(allow_none=True, load_default=None)
    low_percent = fields.Float(allow_none=True, load_default=None)


class BackupTaskEvent(EventSchema):
    """How a task of the backup service ended: each task says so once, whatever ended it (its run, a cancel, or
    a replica that found its replica dead). ``task_id`` and ``state`` came later: a payload without them loads."""
    backup_server_id = fields.Integer(required=True)
    backup_server_name = fields.String(required=True)
    task_id = fields.String(allow_none=True, load_default=None)
    state = fields.String(allow_none=True, load_default=None,
                          validate=validate.OneOf(["succeeded", "failed", "cancelled"]))
    error = fields.String(allow_none=True, load_default=None)


class BackupEvent(BackupTaskEvent):
    # The backup; for a backup run that made none (backup_failed), its task's id.
    backup_id = fields.String(required=True)


class BackupRestored(BackupEvent):
    into = fields.String(required=True)  # the database restored into (with live: the live database's name)
    # live: the control plane's own database was replaced by the backup (gateways forget every cached token)
    live = fields.Boolean(load_default=False)
    replaced = fields.String(allow_none=True, load_default=None)  # live: the name the database as it was now has


class BackupPruned(BackupTaskEvent):
    removed = fields.List(fields.String(), required=True)  # the backups the retention policy removed
    kept = fields.Integer(allow_none=True, load_default=None)


@dataclass(frozen=True)
class EventType:
    name: str
    source: str  # the nameko service that emits it
    schema: type
    version: int
    severity: str  # default severity: info, warning or critical
    notifiable: bool = True  # False: bookkeeping between services, too chatty to notify anyone of


CATALOG = {
    e.name: e
    for e in (
        EventType("server_created", "inventory", ServerCreated, 1, "info"),
        EventType("server_updated", "inventory", ServerUpdated, 1, "info"),
        EventType("server_deleted", "inventory", ServerDeleted, 1, "info"),
        EventType("tokens_revoked", "inventory", TokensRevoked, 1, "info", notifiable=False),
        EventType("install_progress", "provisioner", TaskProgress, 1, "info", notifiable=False),
        EventType("install_finished", "provisioner", TaskFinished, 1, "info"),
        EventType("update_progress", "updater", TaskProgress, 1, "info", notifiable=False),
        EventType("update_finished", "updater", TaskFinished, 1, "info"),
        EventType("update_rolled_back", "updater", UpdateRolledBack, 1, "warning"),
        # What a run found is in its task (GET /servers/{id}/diagnostics/{task}): asked for, watched, not notified.
        EventType("diagnostics_finished", "updater", TaskFinished, 1, "info", notifiable=False),
        EventType("server_state_changed", "monitoring_ingest", ServerStateChanged, 1, "critical"),
        EventType("server_versions_reported", "monitoring_ingest", ServerVersionsReported, 1, "info",
                  notifiable=False),
        EventType("fleet_silence_detected", "monitoring_ingest", FleetSilenceDetected, 1, "critical"),
        EventType("disk_low", "monitoring_ingest", DiskLow, 1, "warning"),
        EventType("backup_finished", "backup", BackupEvent, 1, "info"),
        EventType("backup_verified", "backup", BackupEvent, 1, "info"),
        EventType("backup_failed", "backup", BackupEvent, 1, "critical"),
        EventType("backup_restored", "backup", BackupRestored, 1, "info"),
        EventType("backup_pruned", "backup", BackupPruned, 1, "info"),
        EventType("backup_disk_low", "backup", BackupDiskLow, 1, "warning"),
    )
}


class UnknownEvent(KeyError):
    pass


def event_type(name):
    try:
        return CATALOG[name]
    except KeyError:
        raise UnknownEvent(name) from None


def utcnow():
    return datetime.now(timezone.utc)


def build_event(name, occurred_at=None, **payload):
    """Validate and serialise an event payload, with a new id; raises ValidationError if it is wrong."""
    kind = event_type(name)
    data = dict(payload, event=name, version=kind.version, occurred_at=(occurred_at or utcnow()).isoformat(),
                id=uuid.uuid4().hex)
    schema = kind.schema()
    loaded = schema.load(data)  # raises on a malformed payload before anything is sent
    return schema.dump(loaded)


def load_event(name, payload):
    """Check a received payload against the catalog and return it deserialised."""
    return event_type(name).schema().load(payload)


class EventEmitter:
    """The one way an event leaves: ``emit(name, **payload)`` builds the payload from the
    catalog (refusing a malformed one, or another service's event) and hands it to
    ``send(name, body)``, which writes it into the emitting service's outbox, in the
    transaction of the change it reports (shared/outbox.py). The outbox's relay then
    publishes it on ``<source>.events`` with the event's name as routing key, as nameko's
    dispatcher does.

    In a nameko worker ``send`` writes in the worker's database session
    (shared.dependencies.Events); the ingest consumer writes in its batch's transaction.
    """

    def __init__(self, source, send):
        self.source = source
        self._send = send

    def emit(self, name, **payload):
        owner = event_type(name).source
        if owner != self.source:
            raise ValueError(f"{name} is an event of {owner}, not of {self.source}")
        self._send(name, build_event(name, **payload))
