"""Agent protocol version 1 (docs/agent-protocol.md): the control plane's copy.

The agent cannot import this (standard library + pika only), so this module
and the document must agree. The gateway validates heartbeats with it before
publishing; monitoring-ingest validates every message it consumes or pulls.
"""
from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate

from shared.schemas import StrictSchema

PROTOCOL_VERSION = 1
KINDS = ("heartbeat", "system", "dns")
EXCHANGE = "steward.agent"
STATS_QUEUE = "monitoring.stats"
HEARTBEAT_QUEUE = "monitoring.heartbeats"
PULL_PORT = 8741
_COMPONENT = validate.OneOf(("dns", "dhcp", "backup", "monitor"))
_bytes = dict(required=True, validate=validate.Range(min=0))


def heartbeat_routing_key(server_id):
    return f"heartbeat.{server_id}"


def stats_routing_key(kind, server_id):
    return f"stats.{kind}.{server_id}"


class _Data(Schema):
    # A newer agent may add fields to data; they are ignored, not refused.
    class Meta:
        unknown = "exclude"


class HeartbeatData(_Data):
    agent_version = fields.String(required=True, validate=validate.Length(min=1, max=64))
    versions = fields.Dict(keys=fields.String(validate=_COMPONENT), values=fields.String(validate=validate.Length(1, 64)),
                           load_default=dict)


class Disk(_Data):
    mount = fields.String(required=True, validate=validate.Length(min=1, max=4096))
    total_bytes = fields.Integer(**_bytes)
    used_bytes = fields.Integer(**_bytes)


class Swap(_Data):
    total_bytes = fields.Integer(**_bytes)
    used_bytes = fields.Integer(**_bytes)


class Memory(Swap):
    available_bytes = fields.Integer(**_bytes)


class SystemData(_Data):
    load = fields.List(fields.Float(validate=validate.Range(min=0)), required=True, validate=validate.Length(equal=3))
    disks = fields.List(fields.Nested(Disk), load_default=list)
    swap = fields.Nested(Swap, required=True)
    memory = fields.Nested(Memory, required=True)
    connections = fields.Dict(keys=fields.String(validate=validate.Length(1, 32)),
                              values=fields.Integer(validate=validate.Range(min=0)), load_default=dict)


class DnsRecord(_Data):
    name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    type = fields.String(required=True, validate=validate.Regexp(r"^[A-Z][A-Z0-9]{0,15}$"))
    hits = fields.Integer(required=True, validate=validate.Range(min=1))
    last_access = fields.AwareDateTime(required=True, format="iso")


class DnsData(_Data):
    period_start = fields.AwareDateTime(required=True, format="iso")
    total = fields.Integer(required=True, validate=validate.Range(min=0))
    records = fields.List(fields.Nested(DnsRecord), load_default=list)


DATA_SCHEMAS = {"heartbeat": HeartbeatData(), "system": SystemData(), "dns": DnsData()}


class AgentMessage(StrictSchema):
    """One message: ``{"v", "kind", "server_id", "seq", "collected_at", "data"}``."""

    class Meta:
        unknown = RAISE

    v = fields.Integer(required=True, validate=validate.Equal(PROTOCOL_VERSION))
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    server_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=2**31 - 1))
    seq = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=2**63 - 1))
    collected_at = fields.AwareDateTime(required=True, format="iso")
    data = fields.Dict(required=True)

    @post_load
    def load_data(self, message, **kwargs):
        try:
            message["data"] = DATA_SCHEMAS[message["kind"]].load(message["data"])
        except ValidationError as exc:
            raise ValidationError(exc.messages, "data") from None
        return message


class Heartbeat(AgentMessage):
    kind = fields.String(required=True, validate=validate.Equal("heartbeat"))


class PullPage(Schema):
    """The agent's answer to ``GET /v1/stats?after=<cursor>&limit=<n>``."""

    class Meta:
        unknown = "exclude"

    items = fields.List(fields.Dict(), required=True)
    next_cursor = fields.Integer(required=True, validate=validate.Range(min=0))


_MESSAGE = AgentMessage()


def load_message(raw):
    """A message with ``data`` loaded by its kind's schema; raises ValidationError."""
    return _MESSAGE.load(raw)
