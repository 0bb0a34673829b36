"""Monitoring API contracts: query parameters (validated by monitoring-ingest) and answers."""
from datetime import datetime, timedelta, timezone

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from shared.schemas import StrictSchema
from shared.schemas.agent import DEAD_LETTER_QUEUE
from shared.schemas.fields import INT32_MAX, Id, Timestamp

MAX_POINTS = 5000
_step = fields.Integer(load_default=60, validate=validate.Range(60, 31 * 86400),
                       metadata={"description": "Seconds per point; a multiple of 60 (of 3600 reads hourly aggregates)"})


class Period(StrictSchema):
    start = Timestamp(metadata={"description": "ISO 8601 with offset; default: end minus one hour"})
    end = Timestamp(metadata={"description": "ISO 8601 with offset; default: now; equal to start: nothing"})

    @validates_schema
    def sane_range(self, data, **kwargs):
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise ValidationError("must not be after end", "start")

    @post_load
    def fill_defaults(self, data, **kwargs):
        data["end"] = data.get("end") or datetime.now(timezone.utc)
        data["start"] = data.get("start") or data["end"] - timedelta(hours=1)
        return data


class TimeRange(Period):
    step = _step

    @validates_schema
    def sane_range(self, data, **kwargs):
        super().sane_range(data)
        if data.get("step", 60) % 60:
            raise ValidationError("must be a multiple of 60", "step")

    @post_load
    def fill_defaults(self, data, **kwargs):
        data = super().fill_defaults(data)
        if (data["end"] - data["start"]).total_seconds() / data["step"] > MAX_POINTS:
            raise ValidationError(f"at most {MAX_POINTS} points; widen step or narrow the range", "step")
        return data


# How the per-record hits of a period may be sorted: the key, then name and type for ties.
RECORD_HITS_SORTS = ("-hits", "hits", "name", "-name", "-last_access", "last_access")


class RecordHitsQuery(Period):
    search = fields.String(validate=validate.Length(max=255), metadata={"description": "Part of the record name"})
    sort = fields.String(load_default="-hits", validate=validate.OneOf(RECORD_HITS_SORTS))
    page = fields.Integer(load_default=1, validate=validate.Range(1, INT32_MAX))
    per_page = fields.Integer(load_default=50, validate=validate.Range(1, 1000))


class RecordRpsQuery(TimeRange):
    name = fields.String(required=True, validate=validate.Length(1, 255),
                         metadata={"description": "Record name, any case; the trailing dot is optional"})
    type = fields.String(validate=validate.Regexp(r"^[A-Za-z][A-Za-z0-9]{0,15}$"),
                         metadata={"description": "Query type (A, AAAA, ...); all types when omitted"})
    server_id = Id(metadata={"description": "One server; all when omitted"})

    @post_load
    def normalise(self, data, **kwargs):
        name = data["name"].lower()
        data["name"] = name if name.endswith(".") else name + "."
        if data.get("type"):
            data["type"] = data["type"].upper()
        return data


class LastAccessQuery(StrictSchema):
    search = fields.String(validate=validate.Length(max=255), metadata={"description": "Part of the record name"})
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))


class HeartbeatQuery(StrictSchema):
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 500),
                           metadata={"description": "How many of the latest heartbeats to list"})


class RetentionOverride(StrictSchema):
    raw_retention_minutes = fields.Integer(allow_none=True, validate=validate.Range(1, 525600))
    aggregated_retention_days = fields.Integer(allow_none=True, validate=validate.Range(1, 3650))


class SystemPoint(Schema):
    at = fields.DateTime()
    samples = fields.Integer()
    load1 = fields.Float()
    load5 = fields.Float()
    load15 = fields.Float()
    memory_used_bytes = fields.Float()
    memory_total_bytes = fields.Integer()
    swap_used_bytes = fields.Float()
    connections_established = fields.Float()
    disk_used_max_percent = fields.Float()


class _Series(Schema):
    start = fields.DateTime(metadata={"description": "start floored to a whole step"})
    end = fields.DateTime()
    step = fields.Integer()


class SystemSeries(_Series):
    server_id = fields.Integer()
    points = fields.List(fields.Nested(SystemPoint), metadata={"description": "Averages per step; steps with no data are left out"})


class CountPoint(Schema):
    at = fields.DateTime()
    total = fields.Integer()


class DnsSeries(_Series):
    server_id = fields.Integer()
    total = fields.Integer()
    points = fields.List(fields.Nested(CountPoint))


class RpsPoint(Schema):
    at = fields.DateTime()
    hits = fields.Integer()
    rps = fields.Float()


class RecordRps(_Series):
    name = fields.String()
    type = fields.String(allow_none=True)
    server_id = fields.Integer(allow_none=True)
    points = fields.List(fields.Nested(RpsPoint))


class RecordLastAccess(Schema):
    name = fields.String()
    type = fields.String()
    last_access = fields.DateTime()


class RecordHits(Schema):
    name = fields.String()
    type = fields.String()
    hits = fields.Integer(metadata={"description": "Queries for it in the period"})
    last_access = fields.DateTime(metadata={"description": "Its last query in the period"})


class RecordHitsPage(Schema):
    server_id = fields.Integer()
    start = fields.DateTime(metadata={"description": "Whole minutes (whole hours when both ends are on one)"})
    end = fields.DateTime()
    total = fields.Integer(metadata={"description": "Records asked for in the period (that match the search)"})
    hits = fields.Integer(metadata={"description": "Their queries in the period, all pages together"})
    page = fields.Integer()
    per_page = fields.Integer()
    items = fields.List(fields.Nested(RecordHits))


class LastAccessList(Schema):
    server_id = fields.Integer()
    items = fields.List(fields.Nested(RecordLastAccess))


class HeartbeatRow(Schema):
    seq = fields.Integer()
    collected_at = fields.DateTime()
    received_at = fields.DateTime()
    agent_version = fields.String()


class ServerLiveness(Schema):
    server_id = fields.Integer()
    state = fields.String(validate=validate.OneOf(["up", "down", "unknown"]))
    requests = fields.Integer(metadata={"description": "Heartbeats received in the last 2 minutes"})
    requests_status = fields.String(validate=validate.OneOf(["green", "red"]))
    versions = fields.Dict(keys=fields.String(), values=fields.String())
    agent_version = fields.String(allow_none=True)
    last_heartbeat_at = fields.DateTime(allow_none=True)
    heartbeats = fields.List(fields.Nested(HeartbeatRow))


class CollectorSwitches(Schema):
    system = fields.Boolean(metadata={"description": "The admin settings' system_monitoring"})
    dns = fields.Boolean(metadata={"description": "The admin settings' dns_monitoring"})


class HeartbeatAccepted(Schema):
    accepted = fields.Boolean()
    server_id = fields.Integer()
    seq = fields.Integer()
    collect = fields.Nested(CollectorSwitches, metadata={
        "description": "Which collectors the agent runs from now on (absent while the settings cannot be read)"})


# Queues where refused messages wait for an admin (one today: the agent path's).
DEAD_LETTER_QUEUES = (DEAD_LETTER_QUEUE,)


class DeadLetterQuery(StrictSchema):
    queue = fields.String(validate=validate.OneOf(DEAD_LETTER_QUEUES), metadata={"description": "One queue; all when omitted"})
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))


class DeadLetter(Schema):
    id = fields.String(metadata={"description": "32 hex digits: the message_id it was given when refused"})
    queue = fields.String()
    routing_key = fields.String()
    reason = fields.String(metadata={"description": "Why it was refused"})
    sender = fields.String(allow_none=True, metadata={"description": "The broker user that had sent it"})
    dead_lettered_at = fields.DateTime(allow_none=True)
    size_bytes = fields.Integer()


class DeadLetterDetail(DeadLetter):
    body = fields.String(metadata={"description": "The message as it came (UTF-8; bytes that are not: U+FFFD)"})


class DeadLetterList(Schema):
    items = fields.List(fields.Nested(DeadLetter), metadata={"description": "Oldest first"})
    total = fields.Integer(metadata={"description": "Letters waiting (counted up to 10,000)"})
