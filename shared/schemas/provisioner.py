"""The provisioner's API contracts: push install, bundles, and the report of a server's removal."""
from marshmallow import Schema, fields, validate

from shared.schemas import StrictSchema
from shared.schemas.tasks import Task


class PushInstall(StrictSchema):
    """The body of POST /servers/{id}/actions/push-install: empty; unknown fields are refused."""


class PushInstallAccepted(Task):
    pass


class BundleInfo(Schema):
    server_id = fields.Integer()
    filename = fields.String()
    sha256 = fields.String()
    size_bytes = fields.Integer()


class HostKeyForgotten(Schema):
    server_id = fields.Integer()
    forgotten = fields.Boolean(metadata={"description": "false: no key was pinned"})


class CleanupReport(Schema):
    """What removing a server did on the server itself (best effort)."""

    server_id = fields.Integer()
    uninstalled = fields.Boolean(metadata={"description": "components stopped and agent removed over SSH"})
    rabbitmq_user_removed = fields.Boolean()
    problems = fields.List(fields.String(), metadata={"description": "what could not be done, and why"})


class DeletedServer(Schema):
    id = fields.Integer()
    name = fields.String()
    address = fields.String()
    os = fields.String()
    state = fields.String()


class DeleteReport(Schema):
    """DELETE /servers/{id} when something had been installed: what was removed, what could not be."""

    deleted = fields.Nested(DeletedServer)
    cleanup = fields.Nested(CleanupReport)


class StoredServer(Schema):
    state = fields.String()
    components = fields.List(fields.Dict(), metadata={"description": "name, version, state, updated_at"})
    agent_last_seen_at = fields.DateTime(allow_none=True)


class ReportedServer(Schema):
    state = fields.String(metadata={"description": "Liveness: up, down, or unknown (no heartbeat yet)"})
    last_heartbeat_at = fields.DateTime(allow_none=True)
    versions = fields.Dict(keys=fields.String(), values=fields.String())
    agent_version = fields.String(allow_none=True)


class ServerInspection(Schema):
    server_id = fields.Integer()
    name = fields.String()
    stored = fields.Nested(StoredServer, metadata={"description": "What the control plane keeps"})
    reported = fields.Nested(ReportedServer, metadata={"description": "What the server's heartbeats say"})
    broker_user_present = fields.Boolean()
    disagreements = fields.List(fields.String(), metadata={"description": "Empty when the two agree"})


class Finding(Schema):
    kind = fields.String(validate=validate.OneOf(["stored_version_differs", "broker_user_without_server",
                                                   "token_of_deleted_server", "task_of_dead_replica"]))
    server_id = fields.Integer(allow_none=True)
    detail = fields.String()
    fixable = fields.Boolean()
    fixed = fields.Boolean(metadata={"description": "After a fix only"})
    problem = fields.String(metadata={"description": "Why a fix failed"})


class Reconciliation(Schema):
    fixed = fields.Boolean(metadata={"description": "Whether the safe fixes were applied"})
    findings = fields.List(fields.Nested(Finding))
