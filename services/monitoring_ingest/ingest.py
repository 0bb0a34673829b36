"""Writing a batch of agent messages: one statement per table, idempotent.

Each statement takes the batch as one JSON parameter, inserts the raw rows
with ``ON CONFLICT DO NOTHING`` and folds only the rows it really inserted
into the per-minute and per-hour aggregates (data-modifying CTEs), so a
redelivered message changes nothing. Liveness and disk alerts come back as
the transitions this batch caused, for the caller to emit after the commit.
"""
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import orjson
from marshmallow import ValidationError
from sqlalchemy import text

from services.monitoring_ingest.exceptions import MalformedMessage
from services.monitoring_ingest.partitions import RAW
from services.monitoring_ingest.rollup import MARK_DIRTY
from shared.schemas.agent import STATS_BEHIND, agent_broker_user, collected_at_problem, load_message, routing_key

# Heartbeats received in this window are a server's ``requests`` in the fleet list.
REQUESTS_WINDOW = timedelta(minutes=2)

DISK_LOW_FREE_PERCENT = 10.0


def parse(body, now=None):
    """One message from its AMQP or HTTP body; raises MalformedMessage.

    Any kind may be a week old here: heartbeats were judged by the gateway when it took
    them (5 minutes), and may have waited in the queue since while the consumer was away.
    """
    try:
        raw = orjson.loads(body)
    except (TypeError, ValueError) as exc:
        raise MalformedMessage(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise MalformedMessage("not a JSON object")
    try:
        message = load_message(raw)
    except ValidationError as exc:
        raise MalformedMessage(json.dumps(exc.messages, default=str)[:500]) from None
    problem = collected_at_problem(message["collected_at"], now or datetime.now(timezone.utc), STATS_BEHIND)
    if problem:
        raise MalformedMessage(problem)
    return message


class Senders:
    """Who may speak for a server on the broker: the server's own RabbitMQ user, or a relay of the
    control plane (its own broker user: the gateway publishes heartbeats after checking the agent
    token, the poller what it pulled from the server's own agent). RabbitMQ refuses a ``user_id``
    property that is not the publishing connection's user, so ``user_id`` is who sent it."""

    def __init__(self, vhost, relays):
        self.vhost = vhost
        self.relays = frozenset(relays)

    def check(self, message, key, user_id):
        """Raises MalformedMessage unless ``user_id`` may publish ``message`` under ``key``."""
        server_id = message["server_id"]
        expected = routing_key(message["kind"], server_id)
        if key != expected:
            raise MalformedMessage(f"the body speaks for server {server_id} ({expected}) but came as {key}")
        if not user_id:
            raise MalformedMessage("no user_id property: who sent it is unknown")
        if user_id not in self.relays and user_id != agent_broker_user(server_id, self.vhost):
            raise MalformedMessage(f"{user_id} may not speak for server {server_id}")


@dataclass
class Outcome:
    state_changes: list = field(default_factory=list)  # (server_id, server_name, previous_state, last_heartbeat_at)
    disks_low: list = field(default_factory=list)  # (server_id, server_name, mount, free_percent)
    versions_reported: list = field(default_factory=list)  # (server_id, server_name, versions): other than before


# Per-minute aggregates only: the hourly ones are rolled up from them once an hour closes (rollup.py).
_RESOLUTIONS = "(VALUES ('minute')) AS r(resolution)"

_HEARTBEATS = text("""
WITH batch AS (
    SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb))
        AS b(server_id int, seq bigint, collected_at timestamptz, agent_version text, versions jsonb)
), stored AS (
    INSERT INTO monitoring.heartbeats (server_id, seq, collected_at, agent_version, versions)
    SELECT server_id, seq, collected_at, agent_version, versions FROM batch
    ON CONFLICT DO NOTHING
    RETURNING server_id, collected_at, stored_at, agent_version, versions
)
SELECT DISTINCT ON (server_id) server_id, stored_at, agent_version, versions,
    array_agg(stored_at) OVER (PARTITION BY server_id) AS arrivals
FROM stored
ORDER BY server_id, collected_at DESC
""")

# Locked first, in a statement of its own: a row that the upsert changes in the same
# statement could not be locked (nor its old state read) any more.
_LOCK_LIVENESS = text("""
SELECT server_id, state, versions FROM monitoring.liveness WHERE server_id = ANY(:ids) ORDER BY server_id FOR UPDATE
""")

_LIVENESS = text("""
WITH latest AS (
    SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb))
        AS b(server_id int, stored_at timestamptz, agent_version text, versions jsonb, arrivals timestamptz[])
)
INSERT INTO monitoring.liveness AS l (server_id, state, last_heartbeat_at, changed_at, agent_version, versions,
    recent_heartbeats)
SELECT server_id, 'up', stored_at, stored_at, agent_version, versions, arrivals FROM latest
ON CONFLICT (server_id) DO UPDATE SET
    state = 'up',
    last_heartbeat_at = greatest(l.last_heartbeat_at, excluded.last_heartbeat_at),
    changed_at = CASE WHEN l.state = 'up' THEN l.changed_at ELSE excluded.changed_at END,
    agent_version = excluded.agent_version,
    versions = excluded.versions,
    recent_heartbeats = ARRAY(
        SELECT t FROM unnest(l.recent_heartbeats || excluded.recent_heartbeats) AS t
        WHERE t > excluded.last_heartbeat_at - CAST(:keep AS interval) ORDER BY t DESC LIMIT 64)
RETURNING l.server_id, (SELECT name FROM monitoring.servers WHERE id = l.server_id) AS server_name,
    l.last_heartbeat_at, (xmax = 0) AS inserted
""")

_SYSTEM = text(f"""
WITH batch AS (
    SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS b(
        server_id int, seq bigint, collected_at timestamptz, load1 float8, load5 float8, load15 float8,
        memory_total_bytes bigint, memory_used_bytes bigint, memory_available_bytes bigint,
        swap_total_bytes bigint, swap_used_bytes bigint, disk_used_max_percent float8,
        connections_established int, disks jsonb, connections jsonb)
), stored AS (
    INSERT INTO monitoring.system_samples (server_id, seq, collected_at, load1, load5, load15, memory_total_bytes,
        memory_used_bytes, memory_available_bytes, swap_total_bytes, swap_used_bytes, disk_used_max_percent,
        connections_established, disks, connections)
    SELECT server_id, seq, collected_at, load1, load5, load15, memory_total_bytes, memory_used_bytes,
        memory_available_bytes, swap_total_bytes, swap_used_bytes, disk_used_max_percent, connections_established,
        disks, connections
    FROM batch
    ON CONFLICT DO NOTHING
    RETURNING server_id, collected_at, load1, load5, load15, memory_used_bytes, memory_total_bytes, swap_used_bytes,
        connections_established, disk_used_max_percent
)
INSERT INTO monitoring.system_aggregates AS a (resolution, server_id, bucket, samples, load1_sum, load5_sum,
    load15_sum, memory_used_sum, memory_total_max, swap_used_sum, connections_established_sum, disk_used_max_percent)
SELECT r.resolution, s.server_id, date_trunc(r.resolution, s.collected_at), count(*), sum(load1), sum(load5),
    sum(load15), sum(memory_used_bytes), max(memory_total_bytes), sum(swap_used_bytes), sum(connections_established),
    max(disk_used_max_percent)
FROM stored s CROSS JOIN {_RESOLUTIONS}
GROUP BY 1, 2, 3
ON CONFLICT (resolution, server_id, bucket) DO UPDATE SET
    samples = a.samples + excluded.samples,
    load1_sum = a.load1_sum + excluded.load1_sum,
    load5_sum = a.load5_sum + excluded.load5_sum,
    load15_sum = a.load15_sum + excluded.load15_sum,
    memory_used_sum = a.memory_used_sum + excluded.memory_used_sum,
    memory_total_max = greatest(a.memory_total_max, excluded.memory_total_max),
    swap_used_sum = a.swap_used_sum + excluded.swap_used_sum,
    connections_established_sum = a.connections_established_sum + excluded.connections_established_sum,
    disk_used_max_percent = greatest(a.disk_used_max_percent, excluded.disk_used_max_percent)
""")

_DISKS = text("""
WITH batch AS (
    SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS b(server_id int, mount text, free_percent float8, low bool)
)
INSERT INTO monitoring.disk_alerts AS d (server_id, mount, low, free_percent, changed_at)
SELECT server_id, mount, low, free_percent, now() FROM batch b
-- Nearly every disk reads as it did last time: look those up instead of attempting an upsert.
WHERE NOT EXISTS (SELECT 1 FROM monitoring.disk_alerts k WHERE k.server_id = b.server_id AND k.mount = b.mount
                  AND k.low = b.low)
ON CONFLICT (server_id, mount) DO UPDATE SET low = excluded.low, free_percent = excluded.free_percent,
    changed_at = excluded.changed_at
    WHERE d.low IS DISTINCT FROM excluded.low
RETURNING d.server_id, (SELECT name FROM monitoring.servers WHERE id = d.server_id) AS server_name, d.mount,
    d.free_percent, d.low
""")

# A message's records are stored in its period row; only the messages really inserted
# (not redelivered ones) are folded into the totals, the per-record aggregates and last access.
_DNS = text(f"""
WITH batch AS (
    SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS b(
        server_id int, seq bigint, collected_at timestamptz, period_start timestamptz, total bigint, records jsonb)
), stored AS (
    INSERT INTO monitoring.dns_periods (server_id, seq, collected_at, period_start, total, records)
    SELECT server_id, seq, collected_at, period_start, total, records FROM batch
    ON CONFLICT DO NOTHING
    RETURNING server_id, collected_at, total, records
), totals AS (
    INSERT INTO monitoring.dns_aggregates AS a (resolution, server_id, bucket, total)
    SELECT r.resolution, s.server_id, date_trunc(r.resolution, s.collected_at), sum(s.total)
    FROM stored s CROSS JOIN {_RESOLUTIONS}
    GROUP BY 1, 2, 3
    ON CONFLICT (resolution, server_id, bucket) DO UPDATE SET total = a.total + excluded.total
), hits AS (
    SELECT s.server_id, s.collected_at, h.name, h.type, h.hits, h.last_access
    FROM stored s, jsonb_to_recordset(s.records) AS h(name text, type text, hits bigint, last_access timestamptz)
), aggregated AS (
    INSERT INTO monitoring.dns_record_aggregates AS a (resolution, name, type, server_id, bucket, hits, last_access)
    SELECT r.resolution, h.name, h.type, h.server_id, date_trunc(r.resolution, h.collected_at), sum(h.hits),
        max(h.last_access)
    FROM hits h CROSS JOIN {_RESOLUTIONS}
    GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (resolution, name, type, server_id, bucket) DO UPDATE SET
        hits = a.hits + excluded.hits, last_access = greatest(a.last_access, excluded.last_access)
)
INSERT INTO monitoring.dns_record_last_access AS l (server_id, name, type, last_access)
SELECT server_id, name, type, max(last_access) FROM hits GROUP BY 1, 2, 3
ON CONFLICT (server_id, name, type) DO UPDATE SET last_access = greatest(l.last_access, excluded.last_access)
""")


def _json(rows):
    """A batch as the JSON text its statement unpacks; datetimes in ISO 8601, as orjson writes them."""
    return orjson.dumps(rows).decode()


def _system_row(m):
    data = m["data"]
    disks = data["disks"]
    used_percents = [100.0 * d["used_bytes"] / d["total_bytes"] for d in disks if d["total_bytes"]]
    return {
        "server_id": m["server_id"], "seq": m["seq"], "collected_at": m["collected_at"],
        "load1": data["load"][0], "load5": data["load"][1], "load15": data["load"][2],
        "memory_total_bytes": data["memory"]["total_bytes"], "memory_used_bytes": data["memory"]["used_bytes"],
        "memory_available_bytes": data["memory"]["available_bytes"],
        "swap_total_bytes": data["swap"]["total_bytes"], "swap_used_bytes": data["swap"]["used_bytes"],
        "disk_used_max_percent": max(used_percents, default=0.0),
        "connections_established": data["connections"].get("ESTABLISHED", 0),
        "disks": disks, "connections": data["connections"],
    }


class BatchWriter:
    def __init__(self, disk_low_free_percent=DISK_LOW_FREE_PERCENT):
        self.disk_low_free_percent = disk_low_free_percent

    def write(self, connection, messages):
        """Store ``messages`` (already parsed) in the caller's transaction; returns the Outcome."""
        by_kind = {"heartbeat": [], "system": [], "dns": []}
        for message in messages:
            by_kind[message["kind"]].append(message)
        outcome = Outcome()
        if by_kind["heartbeat"]:
            outcome.state_changes, outcome.versions_reported = self._heartbeats(connection, by_kind["heartbeat"])
        if by_kind["system"]:
            connection.execute(_SYSTEM, {"rows": _json([_system_row(m) for m in by_kind["system"]])})
            outcome.disks_low = self._disks(connection, by_kind["system"])
        if by_kind["dns"]:
            self._dns(connection, by_kind["dns"])
        self._mark_past_hours(connection, by_kind["system"] + by_kind["dns"])
        return outcome

    def _mark_past_hours(self, connection, messages):
        """Data for an hour that may have been rolled up already: roll it up again (rollup.py).

        Only a past hour can have been: the current one is rolled up five minutes
        after it closes (by the database's clock, which may differ from ours by
        seconds, not minutes), long after this batch commits. So a batch of live
        traffic skips the statement altogether.
        """
        # Raw partitions are hourly: their start_of is the hour (in UTC) a moment falls in.
        current = RAW.start_of(datetime.now(timezone.utc))
        past = {hour for hour in {RAW.start_of(m["collected_at"]) for m in messages} if hour < current}
        if past:
            connection.execute(MARK_DIRTY, {"hours": sorted(past)})

    def _heartbeats(self, connection, messages):
        rows = [
            {"server_id": m["server_id"], "seq": m["seq"], "collected_at": m["collected_at"],
             "agent_version": m["data"]["agent_version"], "versions": m["data"]["versions"]}
            for m in messages
        ]
        latest = connection.execute(_HEARTBEATS, {"rows": _json(rows)}).mappings().all()
        if not latest:  # all of them stored before: a redelivery
            return [], []
        previous = {row.server_id: row for row in connection.execute(
            _LOCK_LIVENESS, {"ids": [r["server_id"] for r in latest]})}
        upserted = connection.execute(_LIVENESS, {"rows": _json([dict(r) for r in latest]),
                                                  "keep": f"{REQUESTS_WINDOW.total_seconds()} seconds"}).all()
        changes, names = [], {}
        for row in upserted:
            names[row.server_id] = row.server_name
            # A replica that lost the race to insert a server's first row neither inserted nor saw a state.
            before = "unknown" if row.inserted else getattr(previous.get(row.server_id), "state", None)
            if before is not None and before != "up":
                changes.append((row.server_id, row.server_name, before, row.last_heartbeat_at))
        # What runs on the server is what it reports: inventory's record follows each change (and the first report).
        reported = [(r["server_id"], names.get(r["server_id"]), r["versions"]) for r in latest
                    if r["server_id"] not in previous or previous[r["server_id"]].versions != r["versions"]]
        return changes, reported

    def _disks(self, connection, messages):
        latest = {}
        for m in sorted(messages, key=lambda m: m["collected_at"]):
            for disk in m["data"]["disks"]:
                if disk["total_bytes"]:
                    free = 100.0 * (disk["total_bytes"] - disk["used_bytes"]) / disk["total_bytes"]
                    latest[(m["server_id"], disk["mount"])] = round(free, 2)
        rows = [
            {"server_id": server_id, "mount": mount, "free_percent": free, "low": free < self.disk_low_free_percent}
            for (server_id, mount), free in latest.items()
        ]
        if not rows:
            return []
        changed = connection.execute(_DISKS, {"rows": _json(rows)}).all()
        return [(r.server_id, r.server_name, r.mount, r.free_percent) for r in changed if r.low]

    def _dns(self, connection, messages):
        periods = []
        for m in messages:
            data = m["data"]
            # The agent sends one entry per record; should it repeat one, the hits add up.
            merged = {}
            for record in data["records"]:
                key = (record["name"].lower(), record["type"])
                hits, last = merged.get(key, (0, record["last_access"]))
                merged[key] = (hits + record["hits"], max(last, record["last_access"]))
            periods.append({
                "server_id": m["server_id"], "seq": m["seq"], "collected_at": m["collected_at"],
                "period_start": data["period_start"], "total": data["total"],
                "records": [{"name": name, "type": rtype, "hits": hits, "last_access": last}
                            for (name, rtype), (hits, last) in merged.items()],
            })
        connection.execute(_DNS, {"rows": _json(periods)})
