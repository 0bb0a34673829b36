"""Tasks: long operations (install, update, ...) with a state, progress as step k of N, and a step log.

Every service that runs tasks answers ``list_tasks``, ``get_task`` and ``task_log`` with these
shapes (shared/tasks.py is the model behind them); the gateway's ``/tasks`` routes ask each.
"""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from shared.schemas import StrictSchema
from shared.schemas.fields import Id, Timestamp
from shared.tasks import TASK_STATES

STEP_STATES = ("running", "succeeded", "failed")
MAX_TASK_WINDOW = 10000  # page * per_page: how deep a listing may page


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
    kind = fields.String(metadata={"description": "install, update, diagnostics, ..."})
    server_id = fields.Integer()
    server_name = fields.String()
    state = fields.String(validate=validate.OneOf(TASK_STATES))
    step_index = fields.Integer(metadata={"description": "the step running or last run (k of step_count)"})
    step_count = fields.Integer()
    current_step = fields.String(allow_none=True)
    error = fields.String(allow_none=True)
    requested_by = fields.String(allow_none=True)
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    cancel_requested_at = fields.DateTime(allow_none=True, metadata={
        "description": "someone asked to cancel it while it ran: it stops at its next safe point between steps"})
    cancel_requested_by = fields.String(allow_none=True)


class TaskLog(Schema):
    task_id = fields.String()
    state = fields.String(validate=validate.OneOf(TASK_STATES))
    steps = fields.List(fields.Nested(TaskLogStep))


class TaskQuery(StrictSchema):
    server_id = Id(metadata={"description": "One server's tasks"})
    kind = fields.String(validate=validate.Regexp(r"^[a-z_]{1,16}$"), metadata={"description": "install, update, ..."})
    state = fields.String(validate=validate.OneOf(TASK_STATES))
    since = Timestamp(metadata={"description": "created at or after (ISO 8601 with offset)"})
    until = Timestamp(metadata={"description": "created before (ISO 8601 with offset)"})
    page = fields.Integer(load_default=1, validate=validate.Range(1, MAX_TASK_WINDOW))
    per_page = fields.Integer(load_default=25, validate=validate.Range(1, 100))

    @validates_schema
    def window(self, data, **kwargs):
        if data["page"] * data["per_page"] > MAX_TASK_WINDOW:
            raise ValidationError(f"page * per_page may be at most {MAX_TASK_WINDOW}; narrow the filters", "page")


class TaskPage(Schema):
    """Tasks of every kind, newest first."""

    items = fields.List(fields.Nested(Task))
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()
    unavailable = fields.List(fields.String(), metadata={
        "description": "Services that did not answer: their tasks are missing from this page (empty when complete)"})
