"""The event catalog: every event Steward emits, with its schema and version.

Events are past-tense facts. Every payload is a dict with ``event``,
``version`` and ``occurred_at`` (UTC, ISO 8601) beside its own fields, and
carries the ids needed to act on it. Emitters build payloads with
``build_event``; consumers check them with ``load_event``, so both sides
agree on one schema.
"""
from dataclasses import dataclass
from datetime import datetime, timezone

from marshmallow import EXCLUDE, Schema, fields, validate


class EventSchema(Schema):
    class Meta:
        # A newer emitter may add fields; older consumers ignore them.
        unknown = EXCLUDE

    event = fields.String(required=True)
    version = fields.Integer(required=True)
    occurred_at = fields.DateTime(required=True, format="iso")


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
    state = fields.String(required=True, validate=validate.OneOf(["succeeded", "failed", "rolled_back"]))
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


class DiskLow(EventSchema):
    server_id = fields.Integer(required=True)
    server_name = fields.String(required=True)
    mountpoint = fields.String(required=True)
    free_percent = fields.Float(required=True)


class BackupEvent(EventSchema):
    backup_server_id = fields.Integer(required=True)
    backup_server_name = fields.String(required=True)
    backup_id = fields.String(required=True)
    error = fields.String(allow_none=True, load_default=None)


@dataclass(frozen=True)
class EventType:
    name: str
    source: str  # the nameko service that emits it
    schema: type
    version: int
    severity: str  # default severity: info, warning or critical


CATALOG = {
    e.name: e
    for e in (
        EventType("server_created", "inventory", ServerCreated, 1, "info"),
        EventType("server_updated", "inventory", ServerUpdated, 1, "info"),
        EventType("server_deleted", "inventory", ServerDeleted, 1, "info"),
        EventType("install_progress", "provisioner", TaskProgress, 1, "info"),
        EventType("install_finished", "provisioner", TaskFinished, 1, "info"),
        EventType("update_progress", "updater", TaskProgress, 1, "info"),
        EventType("update_finished", "updater", TaskFinished, 1, "info"),
        EventType("update_rolled_back", "updater", UpdateRolledBack, 1, "warning"),
        EventType("server_state_changed", "monitoring_ingest", ServerStateChanged, 1, "critical"),
        EventType("disk_low", "monitoring_ingest", DiskLow, 1, "warning"),
        EventType("backup_finished", "backup", BackupEvent, 1, "info"),
        EventType("backup_verified", "backup", BackupEvent, 1, "info"),
        EventType("backup_failed", "backup", BackupEvent, 1, "critical"),
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
    """Validate and serialise an event payload; raises ValidationError if it is wrong."""
    kind = event_type(name)
    data = dict(payload, event=name, version=kind.version, occurred_at=(occurred_at or utcnow()).isoformat())
    schema = kind.schema()
    loaded = schema.load(data)  # raises on a malformed payload before anything is sent
    return schema.dump(loaded)


def load_event(name, payload):
    """Check a received payload against the catalog and return it deserialised."""
    return event_type(name).schema().load(payload)
