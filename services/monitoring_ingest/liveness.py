"""Liveness: up while heartbeats come, down after ``down_after`` without one, as ingest heard it.

A heartbeat makes a server ``up`` (ingest.py, in the batch's statement); the
sweep here makes it ``down`` with one conditional ``UPDATE ... RETURNING``:
when several replicas sweep at once, the row lock lets only one of them see
``state = 'up'``, so each transition is reported exactly once.

Silence counts only while ingest listens. The batch consumer reports in
``ingest_status`` when it last had drained its queues (``caught_up_at``: every
heartbeat sent before then is stored) and since when it has been doing so
without a break (``listening_since``: reset by its start, a broker reconnect
or a backlog). A server is down when its last heartbeat is ``down_after``
older than ``caught_up_at``, and not before one heartbeat interval of
listening has passed: after the control plane was away, the next heartbeat is
on its way. A silence that takes most of the fleet at about the same moment is
the control plane's or the network's: it is reported once, as
``fleet_silence_detected``, and nobody is marked down for it; when it ends,
the servers still silent get one heartbeat interval more.
"""
from datetime import timedelta

from sqlalchemy import text

from services.monitoring_ingest.ingest import REQUESTS_WINDOW
from shared.schemas.servers import requests_status

DOWN_AFTER = timedelta(seconds=90)
HEARTBEAT_INTERVAL = timedelta(seconds=30)  # the agent's default
# A silence is the fleet's, not its servers', when it takes at least this many and this share of the servers up.
FLEET_SILENCE_MIN_SERVERS = 3
FLEET_SILENCE_SHARE = 0.5


def server_label(server_id, name):
    return name or f"server {server_id}"


def state_up_payload(server_id, name, previous_state, last_heartbeat_at):
    return {"server_id": server_id, "server_name": server_label(server_id, name), "previous_state": previous_state,
            "state": "up", "last_heartbeat_at": last_heartbeat_at.isoformat()}


def state_down_payload(server_id, name, last_heartbeat_at):
    return {"server_id": server_id, "server_name": server_label(server_id, name), "previous_state": "up",
            "state": "down", "last_heartbeat_at": last_heartbeat_at.isoformat()}


def versions_reported_payload(server_id, name, versions):
    return {"server_id": server_id, "server_name": server_label(server_id, name), "versions": versions}


def disk_low_payload(server_id, name, mount, free_percent):
    return {"server_id": server_id, "server_name": server_label(server_id, name), "mountpoint": mount,
            "free_percent": free_percent}


_REPORT_INGEST = text("""
INSERT INTO monitoring.ingest_status AS s (id, caught_up_at, listening_since)
VALUES (1, CASE WHEN :caught_up THEN CAST(:now AS timestamptz) END, CASE WHEN :caught_up THEN CAST(:now AS timestamptz) END)
ON CONFLICT (id) DO UPDATE SET
    caught_up_at = CASE WHEN :caught_up THEN excluded.caught_up_at ELSE s.caught_up_at END,
    listening_since = CASE
        WHEN NOT :caught_up THEN NULL
        WHEN :fresh OR s.listening_since IS NULL THEN excluded.listening_since
        ELSE s.listening_since END
""")


def report_ingest(connection, now, caught_up, fresh=False):
    """What the batch consumer tells the sweep: at ``now`` it had drained its queues (``caught_up``) or was behind;
    ``fresh``: it has just (re)connected, so it was not listening before."""
    connection.execute(_REPORT_INGEST, {"now": now, "caught_up": caught_up, "fresh": fresh})


_STATUS = text("SELECT caught_up_at, listening_since, silence_since, quiet_until FROM monitoring.ingest_status "
               "WHERE id = 1 FOR UPDATE")
_SILENT = text("""
SELECT l.server_id, (SELECT name FROM monitoring.servers WHERE id = l.server_id) AS server_name, l.last_heartbeat_at
FROM monitoring.liveness AS l WHERE l.state = 'up' AND l.last_heartbeat_at < :cutoff ORDER BY l.server_id
""")
_UP = text("SELECT count(*) FROM monitoring.liveness WHERE state = 'up'")
_MARK_DOWN = text("""
UPDATE monitoring.liveness AS l SET state = 'down', changed_at = :now
WHERE l.server_id = ANY(:ids) AND l.state = 'up' AND l.last_heartbeat_at < :cutoff
RETURNING l.server_id, (SELECT name FROM monitoring.servers WHERE id = l.server_id) AS server_name, l.last_heartbeat_at
""")
_SET_SILENCE = text("UPDATE monitoring.ingest_status SET silence_since = :since, quiet_until = :quiet_until WHERE id = 1")


def is_fleet_silence(silent, servers_up, heartbeat_interval):
    """Most servers up fell silent within one heartbeat interval of each other: not each server's doing."""
    if len(silent) < max(FLEET_SILENCE_MIN_SERVERS, FLEET_SILENCE_SHARE * servers_up):
        return False
    lasts = [row.last_heartbeat_at for row in silent]
    return max(lasts) - min(lasts) <= heartbeat_interval


def fleet_silence_payload(silent, servers_up, since):
    return {"silent_servers": len(silent), "servers_up": servers_up, "silent_since": since.isoformat(),
            "server_ids": [row.server_id for row in silent]}


def sweep(connection, now, down_after=DOWN_AFTER, heartbeat_interval=HEARTBEAT_INTERVAL):
    """Mark silent servers down; returns [(event name, payload)] of what this call decided (see the module's
    docstring). Sweeps of several replicas take turns on the ``ingest_status`` row."""
    status = connection.execute(_STATUS).one_or_none()
    if (status is None or status.listening_since is None or status.caught_up_at is None
            or now < status.listening_since + heartbeat_interval
            or (status.quiet_until is not None and now < status.quiet_until)):
        return []  # ingest is away, behind, or only just back: silence means nothing yet
    heard_until = min(now, status.caught_up_at)
    cutoff = heard_until - down_after
    # Overdue: a beat missed. Judged on all of them, so a fleet's silence is seen before its first server is due.
    overdue = connection.execute(_SILENT, {"cutoff": heard_until - min(down_after, heartbeat_interval * 1.5)}).all()
    due = [row for row in overdue if row.last_heartbeat_at < cutoff]
    servers_up = connection.execute(_UP).scalar() if overdue else 0
    if overdue and is_fleet_silence(overdue, servers_up, heartbeat_interval):
        if status.silence_since is not None or not due:
            return []  # reported already, or nobody is due yet
        since = min(row.last_heartbeat_at for row in overdue)
        connection.execute(_SET_SILENCE, {"since": since, "quiet_until": None})
        return [("fleet_silence_detected", fleet_silence_payload(overdue, servers_up, since))]
    if status.silence_since is not None:  # heartbeats are back: the servers still silent get their grace first
        connection.execute(_SET_SILENCE, {"since": None, "quiet_until": now + heartbeat_interval})
        return []
    if not due:
        return []
    rows = connection.execute(_MARK_DOWN, {"now": now, "ids": [row.server_id for row in due], "cutoff": cutoff}).all()
    return [("server_state_changed", state_down_payload(r.server_id, r.server_name, r.last_heartbeat_at))
            for r in rows]


_FLEET = text("""
SELECT server_id, state, versions, last_heartbeat_at,
    (SELECT count(*) FROM unnest(recent_heartbeats) AS t WHERE t > :since) AS requests
FROM monitoring.liveness WHERE server_id = ANY(:ids)
""")


def fleet_status(connection, server_ids, now):
    """The servers that ever sent a heartbeat: state, requests in the last 2 minutes and its status, versions,
    the last heartbeat's arrival (ISO 8601)."""
    if not server_ids:
        return {}
    rows = connection.execute(_FLEET, {"ids": list(server_ids), "since": now - REQUESTS_WINDOW}).all()
    return {
        row.server_id: {"state": row.state, "requests": row.requests, "requests_status": requests_status(row.requests),
                        "versions": row.versions, "last_heartbeat_at": row.last_heartbeat_at.isoformat()}
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
