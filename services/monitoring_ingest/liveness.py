"""Liveness: up while heartbeats come, down after ``down_after`` without one.

A heartbeat makes a server ``up`` (ingest.py, in the batch's statement); the
sweep here makes it ``down`` with one conditional ``UPDATE ... RETURNING``:
when several replicas sweep at once, the row lock lets only one of them see
``state = 'up'``, so each transition is reported exactly once.
"""
from datetime import timedelta

from sqlalchemy import text

from services.monitoring_ingest.ingest import REQUESTS_WINDOW
from shared.schemas.servers import requests_status

DOWN_AFTER = timedelta(seconds=90)


def server_label(server_id, name):
    return name or f"server {server_id}"


def state_up_payload(server_id, name, previous_state, last_heartbeat_at):
    return {"server_id": server_id, "server_name": server_label(server_id, name), "previous_state": previous_state,
            "state": "up", "last_heartbeat_at": last_heartbeat_at.isoformat()}


def state_down_payload(server_id, name, last_heartbeat_at):
    return {"server_id": server_id, "server_name": server_label(server_id, name), "previous_state": "up",
            "state": "down", "last_heartbeat_at": last_heartbeat_at.isoformat()}


def disk_low_payload(server_id, name, mount, free_percent):
    return {"server_id": server_id, "server_name": server_label(server_id, name), "mountpoint": mount,
            "free_percent": free_percent}


_SWEEP = text("""
UPDATE monitoring.liveness AS l SET state = 'down', changed_at = :now
WHERE l.state = 'up' AND l.last_heartbeat_at < :cutoff
RETURNING l.server_id, (SELECT name FROM monitoring.servers WHERE id = l.server_id) AS server_name, l.last_heartbeat_at
""")


def sweep(connection, now, down_after=DOWN_AFTER):
    """Mark silent servers down; returns the payloads of the transitions this call made."""
    rows = connection.execute(_SWEEP, {"now": now, "cutoff": now - down_after}).all()
    return [state_down_payload(r.server_id, r.server_name, r.last_heartbeat_at) for r in rows]


_FLEET = text("""
SELECT server_id, state, versions, (SELECT count(*) FROM unnest(recent_heartbeats) AS t WHERE t > :since) AS requests
FROM monitoring.liveness WHERE server_id = ANY(:ids)
""")


def fleet_status(connection, server_ids, now):
    """The servers that ever sent a heartbeat: state, requests in the last 2 minutes and its status, versions."""
    if not server_ids:
        return {}
    rows = connection.execute(_FLEET, {"ids": list(server_ids), "since": now - REQUESTS_WINDOW}).all()
    return {
        row.server_id: {"state": row.state, "requests": row.requests, "requests_status": requests_status(row.requests),
                        "versions": row.versions}
        for row in rows
    }


_ONE = text("""
SELECT state, last_heartbeat_at, agent_version, versions,
    (SELECT count(*) FROM unnest(recent_heartbeats) AS t WHERE t > :since) AS requests
FROM monitoring.liveness WHERE server_id = :server_id
""")


def server_status(connection, server_id, now):
    """One server's liveness in full (``unknown`` until its first heartbeat)."""
    row = connection.execute(_ONE, {"server_id": server_id, "since": now - REQUESTS_WINDOW}).mappings().one_or_none()
    row = dict(row) if row else {"state": "unknown", "last_heartbeat_at": None, "agent_version": None, "versions": {},
                                 "requests": 0}
    return dict(row, server_id=server_id, requests_status=requests_status(row["requests"]))
