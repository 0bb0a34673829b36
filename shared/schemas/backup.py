"""Managed backups: backup servers, the catalogue of backups, retention policies and schedules."""
import re

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from shared.schemas import StrictSchema
from shared.schemas.tasks import Task

VERIFICATIONS = ("unverified", "ok", "bad")
SCHEDULE_KINDS = ("backup", "verify")
_COUNT = validate.Range(0, 100000)
_DATABASE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class BackupServerCreate(StrictSchema):
    server_id = fields.Integer(required=True, validate=validate.Range(1, 2**31 - 1),
                               metadata={"description": "the managed server (with the backup component) that runs the daemon"})
    port = fields.Integer(load_default=8743, validate=validate.Range(1, 65535))
    include_monitoring_raw = fields.Boolean(load_default=False,
                                            metadata={"description": "also back up monitoring's raw statistics"})


class BackupServerUpdate(StrictSchema):
    include_monitoring_raw = fields.Boolean()


class Disk(Schema):
    total_bytes = fields.Integer(allow_none=True)
    free_bytes = fields.Integer(allow_none=True)
    free_percent = fields.Float(allow_none=True)
    low = fields.Boolean()


class BackupServer(Schema):
    id = fields.Integer()
    server_id = fields.Integer()
    name = fields.String()
    url = fields.String()
    repository = fields.String()
    include_monitoring_raw = fields.Boolean()
    disk = fields.Nested(Disk)
    last_seen_at = fields.DateTime(allow_none=True)
    last_error = fields.String(allow_none=True)
    last_backup_at = fields.DateTime(allow_none=True)
    last_verification = fields.String(allow_none=True)
    last_verified_at = fields.DateTime(allow_none=True)
    backups = fields.Integer(metadata={"description": "backups stored"})
    created_at = fields.DateTime()


class Backup(Schema):
    id = fields.String()
    backup_server_id = fields.Integer()
    backup_server_name = fields.String()
    snapshot_id = fields.String()
    taken_at = fields.DateTime()
    schemas = fields.List(fields.String())
    include_monitoring_raw = fields.Boolean()
    size_bytes = fields.Integer()
    added_bytes = fields.Integer()
    duration_ms = fields.Integer()
    task_id = fields.String(allow_none=True)
    verification = fields.String(validate=validate.OneOf(VERIFICATIONS))
    verified_at = fields.DateTime(allow_none=True)
    verification_detail = fields.String(allow_none=True)


class BackupQuery(StrictSchema):
    backup_server_id = fields.Integer(validate=validate.Range(1, 2**31 - 1))


class RunBackup(StrictSchema):
    backup_server_id = fields.Integer(required=True, validate=validate.Range(1, 2**31 - 1))


class RetentionPolicy(StrictSchema):
    keep_last = fields.Integer(load_default=0, validate=_COUNT)
    keep_hourly = fields.Integer(load_default=0, validate=_COUNT)
    keep_daily = fields.Integer(load_default=0, validate=_COUNT)
    keep_weekly = fields.Integer(load_default=0, validate=_COUNT)
    keep_monthly = fields.Integer(load_default=0, validate=_COUNT)
    keep_yearly = fields.Integer(load_default=0, validate=_COUNT)


class PruneRequest(StrictSchema):
    dry_run = fields.Boolean(load_default=True, metadata={"description": "only list what prune would remove"})


class KeptBackup(Schema):
    id = fields.String()
    taken_at = fields.DateTime()
    reasons = fields.List(fields.String())


class PruneResult(Schema):
    backup_server_id = fields.Integer()
    dry_run = fields.Boolean()
    keep = fields.List(fields.Nested(KeptBackup))
    remove = fields.List(fields.Nested(KeptBackup))
    task = fields.Nested(Task, allow_none=True, metadata={"description": "the prune task, when dry_run is false"})


class RestoreRequest(StrictSchema):
    into = fields.String(metadata={"description": "a new scratch database to restore into"})
    live = fields.Boolean(load_default=False, metadata={
        "description": "replace the control plane's own database with the backup (seconds of downtime); the database "
                       "as it was is kept under a new name. Needs `confirm`"})
    confirm = fields.String(metadata={"description": "with live: the live database's name, typed out"})

    @validates("into")
    def _plain_name(self, value, **kwargs):
        if not _DATABASE.match(value):
            raise ValidationError("a plain lower-case database name (letters, digits, _), at most 63 characters")

    @validates_schema
    def _one_target(self, data, **kwargs):
        if data.get("live") == ("into" in data):
            raise ValidationError("give either into (a new database) or live: true (replace the live one), not both "
                                  "or neither", "_schema")
        if "confirm" in data and not data.get("live"):
            raise ValidationError("confirm goes with live: true", "confirm")


class ScheduleCreate(StrictSchema):
    backup_server_id = fields.Integer(required=True, validate=validate.Range(1, 2**31 - 1))
    kind = fields.String(load_default="backup", validate=validate.OneOf(SCHEDULE_KINDS))
    cron = fields.String(required=True, validate=validate.Length(min=9, max=120),
                         metadata={"description": "minute hour day-of-month month day-of-week, in UTC (e.g. '0 3 * * *')"})
    enabled = fields.Boolean(load_default=True)


class Schedule(Schema):
    id = fields.Integer()
    backup_server_id = fields.Integer()
    kind = fields.String()
    cron = fields.String()
    enabled = fields.Boolean()
    next_run_at = fields.DateTime()
    last_run_at = fields.DateTime(allow_none=True)
    last_task_id = fields.String(allow_none=True)


class WrappedKey(Schema):
    wrapped_secret = fields.String(metadata={"description": "JSON: scrypt parameters, salt, nonce and the AES-GCM "
                                                            "ciphertext of the repository secret"})
