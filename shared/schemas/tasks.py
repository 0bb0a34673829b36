"""Tasks: long operations (install, update, ...) with a state, progress as step k of N, and a step log."""
from marshmallow import Schema, fields, validate

TASK_STATES = ("queued", "running", "succeeded", "failed", "rolled_back")
STEP_STATES = ("running", "succeeded", "failed")


class TaskLogStep(Schema):
    position = fields.Integer(metadata={"description": "1-based step number"})
    name = fields.String()
    state = fields.String(validate=validate.OneOf(STEP_STATES))
    started_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    duration_ms = fields.Integer(allow_none=True)
    output = fields.String(metadata={"description": "what the step printed (stdout and stderr)"})


class Task(Schema):
    id = fields.String()
    kind = fields.String(metadata={"description": "install, update, ..."})
    server_id = fields.Integer()
    server_name = fields.String()
    state = fields.String(validate=validate.OneOf(TASK_STATES))
    step_index = fields.Integer(metadata={"description": "the step running or last run (k of step_count)"})
    step_count = fields.Integer()
    current_step = fields.String(allow_none=True)
    error = fields.String(allow_none=True)
    requested_by = fields.String()
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


class TaskLog(Schema):
    task_id = fields.String()
    state = fields.String(validate=validate.OneOf(TASK_STATES))
    steps = fields.List(fields.Nested(TaskLogStep))
