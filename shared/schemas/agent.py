"""Agent protocol version 1 (docs/agent-protocol.md): the control plane's copy.

The agent cannot import this (standard library + pika only), so this module
and the document must agree. The gateway validates heartbeats with it before
publishing; monitoring-ingest validates every message it consumes or pulls.
"""
import math
import re
from datetime import datetime

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
_COMPONENTS = frozenset(_COMPONENT.choices)
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
    if type(value) is not str or not low <= len(value) <= high:
        raise _NotCanonical
    return value


def _aware(value):
    if type(value) is not str:
        raise _NotCanonical
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _NotCanonical from None
    if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
        raise _NotCanonical
    return moment


def _bytes_of(value, keys):
    if type(value) is not dict:
        raise _NotCanonical
    return {key: _int(value[key]) for key in keys}


def _heartbeat_data(data):
    versions = data.get("versions", {})
    if type(versions) is not dict:
        raise _NotCanonical
    for component, version in versions.items():
        if component not in _COMPONENTS:
            raise _NotCanonical
        _str(version, 1, 64)
    return {"agent_version": _str(data["agent_version"], 1, 64), "versions": dict(versions)}


def _system_data(data):
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
        "disks": [dict(_bytes_of(d, ("total_bytes", "used_bytes")), mount=_str(d["mount"], 1, 4096)) for d in disks],
        "swap": _bytes_of(data["swap"], ("total_bytes", "used_bytes")),
        "memory": _bytes_of(data["memory"], ("total_bytes", "used_bytes", "available_bytes")),
        "connections": dict(connections),
    }


def _dns_record(record):
    if type(record) is not dict:
        raise _NotCanonical
    kind = record["type"]
    if type(kind) is not str or not _RECORD_TYPE.match(kind):
        raise _NotCanonical
    return {"name": _str(record["name"], 1, 255), "type": kind, "hits": _int(record["hits"], low=1),
            "last_access": _aware(record["last_access"])}


def _dns_data(data):
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
