"""The message envelope of docs/agent-protocol.md, shared by heartbeat, push and pull."""
import datetime

from agent import PROTOCOL_VERSION

HEARTBEAT = "heartbeat"
SYSTEM = "system"
DNS = "dns"


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(moment):
    return moment.astimezone(datetime.timezone.utc).isoformat()


def envelope(kind, server_id, seq, collected_at, data):
    return {
        "v": PROTOCOL_VERSION,
        "kind": kind,
        "server_id": server_id,
        "seq": seq,
        "collected_at": iso(collected_at),
        "data": data,
    }
