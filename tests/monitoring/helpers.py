"""What the monitoring tests share besides fixtures: agent messages and waiting."""
import functools
import os
from datetime import datetime, timedelta, timezone

from kombu import Connection
from sqlalchemy.engine import make_url

from tests import waiting


def child_env(settings):
    database = make_url(settings.database_url).database
    vhost = Connection(settings.amqp_uri).virtual_host
    return dict(os.environ, STEWARD_DB_NAME=database, STEWARD_AMQP_VHOST=vhost, STEWARD_SECRET_KEY=settings.secret_key,
                STEWARD_LOG_LEVEL="WARNING")


# The monitoring tests wait at most 10 s unless they say otherwise.
wait_for = functools.partial(waiting.wait_for, timeout=10.0)


def message(kind, server_id, seq, collected_at=None, **data):
    at = collected_at or datetime.now(timezone.utc)
    defaults = {
        "heartbeat": {"agent_version": "1.0.0", "versions": {"dns": "3.2.6", "monitor": "1.0.0"}},
        "system": {"load": [0.5, 0.25, 0.125], "disks": [{"mount": "/", "total_bytes": 1000, "used_bytes": 500}],
                   "swap": {"total_bytes": 100, "used_bytes": 10},
                   "memory": {"total_bytes": 4000, "available_bytes": 1000, "used_bytes": 3000},
                   "connections": {"ESTABLISHED": 3, "LISTEN": 5}},
        "dns": {"period_start": (at - timedelta(seconds=60)).isoformat(), "total": 0, "records": []},
    }[kind]
    return {"v": 1, "kind": kind, "server_id": server_id, "seq": seq, "collected_at": at.isoformat(),
            "data": dict(defaults, **data)}
