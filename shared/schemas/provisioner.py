"""The provisioner's API contracts: push install, bundles, and the report of a server's removal."""
from marshmallow import Schema, fields

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
