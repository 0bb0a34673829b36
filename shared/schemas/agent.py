"""Agent protocol version 1 (docs/agent-protocol.md): the control plane's copy.

The agent cannot import this (standard library + pika only), so this module
and the document must agree. The gateway validates heartbeats with it before
publishing; monitoring-ingest validates every message it consumes or pulls.
"""
import math
import re
from datetime import datetime, timedelta

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate

from shared.components import COMPONENTS
from shared.schemas import _UNSTORABLE, StorableSchema, StrictSchema
from shared.schemas.fields import Timestamp

PROTOCOL_VERSION = 1
KINDS = ("heartbeat", "system", "dns")
EXCHANGE = "steward.agent"
STATS_QUEUE = "monitoring.stats"
HEARTBEAT_QUEUE = "monitoring.heartbeats"
DEAD_LETTER_QUEUE = "monitoring.dead"  # what the consumer refused, with the reason (dead_letters.py)
PULL_PORT = 8741

# The window around the control plane's clock in which a message's collected_at must fall.
# Ahead: an agent clock running fast (NTP keeps real ones within a second). Behind: a
# heartbeat is sent the moment it is made, so minutes mean a wrong clock; statistics wait
# in the agent's spool while the broker is away, and a week of backlog is the most worth
# replaying (older readings are past raw retention and only churn partitions).
CLOCK_AHEAD = timedelta(minutes=5)
HEARTBEAT_BEHIND = timedelta(minutes=5)
STATS_BEHIND = timedelta(days=7)
# Bodies larger than these are refused unread. A heartbeat is a few hundred bytes; a DNS
# period holds at most 50,000 records (the agent's bound) of at most ~400 bytes each.
MAX_HEARTBEAT_BYTES = 16 * 1024
MAX_STATS_BYTES = 32 * 1024 * 1024
_COMPONENT = validate.OneOf(COMPONENTS)
_bytes = dict(required=True, validate=validate.Range(min=0))


def heartbeat_routing_key(server_id):
    return f"heartbeat.{server_id}"


def stats_routing_key(kind, server_id):
    return f"stats.{kind}.{server_id}"


def routing_key(kind, server_id):
    """The one routing key a message of ``kind`` about ``server_id`` travels under."""
    return heartbeat_routing_key(server_id) if kind == "heartbeat" else stats_routing_key(kind, server_id)


def agent_broker_user(server_id, vhost):
    """A server's own RabbitMQ user (the provisioner makes it; the agent sets it as ``user_id``).
    Users are broker-wide: the vhost in the name keeps deployments that share a broker apart."""
    return f"steward-agent-{'default' if vhost == '/' else vhost}-{server_id}"


def _span(delta):
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 1440} days" if minutes >= 1440 else f"{minutes} minutes"


def collected_at_problem(collected_at, now, behind):
    """Why ``collected_at`` is outside the window around ``now`` (None when it is inside)."""
    if collected_at > now + CLOCK_AHEAD:
        return f"collected_at is more than {_span(CLOCK_AHEAD)} ahead of the control plane's clock ({now.isoformat()})"
    if collected_at < now - behind:
        return f"collected_at is more than {_span(behind)} behind the control plane's clock ({now.isoformat()})"
    return None


class _Data(StorableSchema):
    # A field this protocol version does not define is refused: a newer agent says so with a newer "v".
    class Meta:
        unknown = RAISE


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
    last_access = Timestamp(required=True, format="iso")


class DnsData(_Data):
    period_start = Timestamp(required=True, format="iso")
    total = fields.Integer(required=True, validate=validate.Range(min=0))
    records = fields.List(fields.Nested(DnsRecord), load_default=list)


DATA_SCHEMAS = {"heartbeat": HeartbeatData(), "system": SystemData(), "dns": DnsData()}


class AgentMessage(StrictSchema):
    """One message: ``{"v", "kind", "server_id", "seq", "collected_at", "data"}``."""

    class Meta:
        unknown = RAISE

    checked_elsewhere = ("data",)  # by its kind's data schema (DATA_SCHEMAS), which loads it
    v = fields.Integer(required=True, validate=validate.Equal(PROTOCOL_VERSION))
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    server_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=2**31 - 1))
    seq = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=2**63 - 1),
                         metadata={"bigint": True})
    collected_at = Timestamp(required=True, format="iso")
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
    """A message with ``data`` loaded by its kind's schema; raises ValidationError.

    The schemas above are the contract. Loading them costs ~130 µs a message,
    most of the ingest pipeline's CPU, so a message in the exact shape the
    agent writes is loaded by ``_fast_load`` instead (~10 µs); anything else
    (a string where a number belongs, a field it does not know, an error)
    goes through marshmallow, which accepts it or says what is wrong.
    tests/unit/test_agent_fast_load.py holds the two to the same answers.
    """
    message = _fast_load(raw)
    return message if message is not None else _MESSAGE.load(raw)


class _NotCanonical(Exception):
    """The fast loader cannot vouch for this message; marshmallow decides."""


_TOP_KEYS = frozenset(("v", "kind", "server_id", "seq", "collected_at", "data"))
_COMPONENTS = frozenset(COMPONENTS)
_RECORD_TYPE = re.compile(r"^[A-Z][A-Z0-9]{0,15}$")


def _int(value, low=0, high=None):
    if type(value) is not int or value < low or (high is not None and value > high):
        raise _NotCanonical
    return value


def _float(value):
    if type(value) is int:
        value = float(value)
    if type(value) is not float or not math.isfinite(value) or value < 0:
        raise _NotCanonical
    return value


def _str(value, low, high):
    if type(value) is not str or not low <= len(value) <= high or _UNSTORABLE.search(value):
        raise _NotCanonical
    return value


def _aware(value):
    if type(value) is not str:
        raise _NotCanonical
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _NotCanonical from None
    offset = moment.utcoffset()
    if offset is None or abs(offset) > Timestamp.MAX_OFFSET or not Timestamp.YEARS[0] <= moment.year <= Timestamp.YEARS[1]:
        raise _NotCanonical
    return moment


def _fields(value, allowed):
    """``value`` as a dict holding no field but ``allowed`` (a field it does not know is marshmallow's to refuse)."""
    if type(value) is not dict or not value.keys() <= allowed:
        raise _NotCanonical
    return value


_HEARTBEAT_FIELDS = frozenset(("agent_version", "versions"))
_SYSTEM_FIELDS = frozenset(("load", "disks", "swap", "memory", "connections"))
_DISK_FIELDS = frozenset(("mount", "total_bytes", "used_bytes"))
_SWAP_FIELDS = frozenset(("total_bytes", "used_bytes"))
_MEMORY_FIELDS = frozenset(("total_bytes", "used_bytes", "available_bytes"))
_DNS_FIELDS = frozenset(("period_start", "total", "records"))
_RECORD_FIELDS = frozenset(("name", "type", "hits", "last_access"))


def _exactly(value, keys):
    if type(value) is not dict or value.keys() != keys:
        raise _NotCanonical
    return value


def _bytes_of(value, keys):
    return {key: _int(value[key]) for key in _exactly(value, keys)}


def _disk(disk):
    _exactly(disk, _DISK_FIELDS)
    return {"total_bytes": _int(disk["total_bytes"]), "used_bytes": _int(disk["used_bytes"]),
            "mount": _str(disk["mount"], 1, 4096)}


def _heartbeat_data(data):
    _fields(data, _HEARTBEAT_FIELDS)
    versions = data.get("versions", {})
    if type(versions) is not dict:
        raise _NotCanonical
    for component, version in versions.items():
        if component not in _COMPONENTS:
            raise _NotCanonical
        _str(version, 1, 64)
    return {"agent_version": _str(data["agent_version"], 1, 64), "versions": dict(versions)}


def _system_data(data):
    _fields(data, _SYSTEM_FIELDS)
    load = data["load"]
    if type(load) is not list or len(load) != 3:
        raise _NotCanonical
    disks = data.get("disks", [])
    connections = data.get("connections", {})
    if type(disks) is not list or type(connections) is not dict:
        raise _NotCanonical
    for state, count in connections.items():
        _str(state, 1, 32)
        _int(count)
    return {
        "load": [_float(x) for x in load],
        "disks": [_disk(d) for d in disks],
        "swap": _bytes_of(data["swap"], _SWAP_FIELDS),
        "memory": _bytes_of(data["memory"], _MEMORY_FIELDS),
        "connections": dict(connections),
    }


def _dns_record(record):
    _fields(record, _RECORD_FIELDS)
    kind = record["type"]
    if type(kind) is not str or not _RECORD_TYPE.match(kind):
        raise _NotCanonical
    return {"name": _str(record["name"], 1, 255), "type": kind, "hits": _int(record["hits"], low=1),
            "last_access": _aware(record["last_access"])}


def _dns_data(data):
    _fields(data, _DNS_FIELDS)
    records = data.get("records", [])
    if type(records) is not list:
        raise _NotCanonical
    return {"period_start": _aware(data["period_start"]), "total": _int(data["total"]),
            "records": [_dns_record(r) for r in records]}


_FAST_DATA = {"heartbeat": _heartbeat_data, "system": _system_data, "dns": _dns_data}


def _fast_load(raw):
    """What ``_MESSAGE.load(raw)`` returns, for a message in canonical form; None for any other."""
    try:
        if type(raw) is not dict or raw.keys() != _TOP_KEYS or raw["v"] != PROTOCOL_VERSION or type(raw["v"]) is not int:
            return None
        data = raw["data"]
        if type(data) is not dict:
            return None
        return {"v": PROTOCOL_VERSION, "kind": raw["kind"], "server_id": _int(raw["server_id"], 1, 2**31 - 1),
                "seq": _int(raw["seq"], 0, 2**63 - 1), "collected_at": _aware(raw["collected_at"]),
                "data": _FAST_DATA[raw["kind"]](data)}
    except (_NotCanonical, KeyError, TypeError, AttributeError, OverflowError):
        return None
