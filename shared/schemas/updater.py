"""API contracts of the updater: version catalog, update tasks, rollouts, diagnostics.

Image uploads travel as a file, not through RPC: the gateway streams the
request body into ``<updater.storage_dir>/incoming/<name>`` (``name`` matches
``UPLOAD_NAME``) and hands the updater that name with the sha256 and size it
counted; the updater checks the file again, moves it into the catalog with an
atomic rename and records it in the same commit, or deletes it.
"""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from shared.components import INSTALLABLE
from shared.schemas import StrictSchema
from shared.schemas.fields import INT32_MAX, Id
from shared.schemas.tasks import Task

INCOMING_DIR = "incoming"
UPLOAD_NAME = r"^[0-9a-f]{32}\.upload$"
VERSION = validate.Regexp(r"^[0-9][0-9A-Za-z._+-]{0,63}$", error="must look like 2.10 or 3.2.6-1")
ROLLOUT_STATES = ("running", "paused", "cancelled", "succeeded")
ROLLOUT_SERVER_STATES = ("pending", "running", "succeeded", "skipped", "failed", "rolled_back", "cancelled")


class ImageUpload(StrictSchema):
    """What the gateway tells the updater about a streamed upload (not a public body)."""

    upload = fields.String(required=True, validate=validate.Regexp(UPLOAD_NAME))
    sha256 = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{64}$"))
    size_bytes = fields.Integer(required=True, validate=validate.Range(1, INT32_MAX))
    component = fields.String(validate=validate.OneOf(INSTALLABLE),
                              metadata={"description": "When given, the image's manifest must name this component"})


class ImageUploadQuery(StrictSchema):
    component = fields.String(validate=validate.OneOf(INSTALLABLE),
                              metadata={"description": "When given, the image's manifest must name this component"})


class Version(Schema):
    component = fields.String()
    version = fields.String()
    sha256 = fields.String(allow_none=True)
    size_bytes = fields.Integer(allow_none=True)
    source = fields.String(metadata={"description": "upload, or registry (internet mode)"})
    description = fields.String(allow_none=True)
    stored = fields.Boolean(metadata={"description": "the image file is held by the control plane"})
    created_at = fields.DateTime(allow_none=True)


class VersionList(Schema):
    mode = fields.String(metadata={"description": "the update mode in the admin settings: local or internet"})
    items = fields.List(fields.Nested(Version))


class VersionQuery(StrictSchema):
    component = fields.String(validate=validate.OneOf(INSTALLABLE))


class PushUpdate(StrictSchema):
    component = fields.String(validate=validate.OneOf(INSTALLABLE),
                              metadata={"description": "Only this component (default: every installed one)"})
    version = fields.String(validate=VERSION, metadata={"description": "Target version (default: the newest)"})

    @validates_schema
    def version_needs_component(self, data, **kwargs):
        if data.get("version") and not data.get("component"):
            raise ValidationError("a target version needs a component", "version")


class TaskAccepted(Schema):
    task_id = fields.String()
    state = fields.String()


class TaskStep(Schema):
    name = fields.String()
    status = fields.String()
    started_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    output = fields.String()


class UpdateTask(Task):
    """A task of kind ``update`` (the shared task shape), with what it updates and how each component ended."""

    component = fields.String(allow_none=True)
    target_version = fields.String(allow_none=True)
    outcome = fields.Dict(metadata={"description": "per component: outcome (updated, up_to_date, rolled_back, failed), from, to, reason"})
    rollout_id = fields.Integer(allow_none=True)
    steps = fields.List(fields.Nested(TaskStep))


class RolloutCreate(StrictSchema):
    server_ids = fields.List(Id(), validate=validate.Length(min=1, max=10000))
    search = fields.String(validate=validate.Length(min=1, max=128),
                           metadata={"description": "servers whose name contains this"})
    all_running = fields.Boolean(metadata={"description": "every server whose state is running"})
    component = fields.String(validate=validate.OneOf(INSTALLABLE))
    version = fields.String(validate=VERSION)
    canary_size = fields.Integer(load_default=1, validate=validate.Range(0, 1000))
    batch_size = fields.Integer(load_default=5, validate=validate.Range(1, 1000))
    max_failures = fields.Integer(load_default=1, validate=validate.Range(1, 10000),
                                  metadata={"description": "pause once this many servers failed or rolled back"})

    @validates_schema
    def one_selection(self, data, **kwargs):
        chosen = [k for k in ("server_ids", "search", "all_running") if data.get(k)]
        if len(chosen) != 1:
            raise ValidationError("choose the servers with exactly one of server_ids, search or all_running", "_schema")
        if data.get("version") and not data.get("component"):
            raise ValidationError("a target version needs a component", "version")


class RolloutServer(Schema):
    server_id = fields.Integer()
    server_name = fields.String()
    position = fields.Integer()
    wave = fields.Integer(metadata={"description": "0 is the canary wave"})
    state = fields.String(validate=validate.OneOf(ROLLOUT_SERVER_STATES))
    task_id = fields.String(allow_none=True)
    message = fields.String(allow_none=True)


class Rollout(Schema):
    id = fields.Integer()
    state = fields.String(validate=validate.OneOf(ROLLOUT_STATES))
    component = fields.String(allow_none=True)
    target_version = fields.String(allow_none=True)
    canary_size = fields.Integer()
    batch_size = fields.Integer()
    max_failures = fields.Integer()
    current_wave = fields.Integer()
    paused_reason = fields.String(allow_none=True)
    counts = fields.Dict(keys=fields.String(), values=fields.Integer())
    created_by = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    servers = fields.List(fields.Nested(RolloutServer))


class DiagnosticsCheck(Schema):
    name = fields.String(metadata={"description": "runtime, monitor, rabbitmq, heartbeat, disk"})
    status = fields.String(validate=validate.OneOf(["passed", "failed", "unknown"]))
    message = fields.String()


class DiagnosticsRun(Task):
    """A diagnostics task (kind diagnostics): one step per check, and each check's result as it comes."""

    checks = fields.List(fields.Nested(DiagnosticsCheck))


def storage_dir(settings):
    """The image storage directory both the gateway and the updater use (relative to the checkout if relative)."""
    from pathlib import Path

    from shared.config import ROOT

    path = Path((settings.get("updater") or {}).get("storage_dir") or ".steward/images")
    return path if path.is_absolute() else ROOT / path
