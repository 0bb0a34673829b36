"""Reading statistics back: series over a time range at a step, from the aggregates.

A step that is a whole number of hours reads the hourly aggregates, any other
the per-minute ones; points are grouped on ``floor(epoch / step)``, so they
do not depend on the session's time zone. Steps without data are left out.
"""
from datetime import datetime, timezone

from sqlalchemy import text

from services.monitoring_ingest.rollup import aggregate_rows


def resolution_for(step):
    return "hour" if step % 3600 == 0 else "minute"


def _range(server_id, query):
    # The first point is the step that holds ``start``: floor it to a whole step since the epoch.
    step = query["step"]
    start = datetime.fromtimestamp(query["start"].timestamp() // step * step, timezone.utc)
    return {"server_id": server_id, "start": start, "end": query["end"], "step": step,
            "resolution": resolution_for(step)}


_POINT = "to_timestamp(floor(extract(epoch FROM bucket) / :step) * :step)"


def system_series(connection, server_id, query):
    params = _range(server_id, query)
    source, extra = aggregate_rows(connection, "system_aggregates", params["resolution"])
    rows = connection.execute(text(f"""
        SELECT {_POINT} AS at, sum(samples) AS samples,
            sum(load1_sum) / sum(samples) AS load1, sum(load5_sum) / sum(samples) AS load5,
            sum(load15_sum) / sum(samples) AS load15, sum(memory_used_sum) / sum(samples) AS memory_used_bytes,
            max(memory_total_max) AS memory_total_bytes, sum(swap_used_sum) / sum(samples) AS swap_used_bytes,
            sum(connections_established_sum) / sum(samples) AS connections_established,
            max(disk_used_max_percent) AS disk_used_max_percent
        FROM {source} AS a
        WHERE server_id = :server_id AND bucket >= :start AND bucket < :end
        GROUP BY 1 ORDER BY 1
    """), dict(params, **extra)).mappings().all()
    return dict(params, points=[dict(r) for r in rows])


def dns_series(connection, server_id, query):
    params = _range(server_id, query)
    source, extra = aggregate_rows(connection, "dns_aggregates", params["resolution"])
    rows = connection.execute(text(f"""
        SELECT {_POINT} AS at, sum(total) AS total FROM {source} AS a
        WHERE server_id = :server_id AND bucket >= :start AND bucket < :end
        GROUP BY 1 ORDER BY 1
    """), dict(params, **extra)).mappings().all()
    return dict(params, total=sum(r["total"] for r in rows), points=[dict(r) for r in rows])


def record_rps(connection, query):
    params = _range(query.get("server_id"), query)
    params.update(name=query["name"], type=query.get("type"))
    source, extra = aggregate_rows(connection, "dns_record_aggregates", params["resolution"])
    rows = connection.execute(text(f"""
        SELECT {_POINT} AS at, sum(hits) AS hits FROM {source} AS a
        WHERE name = :name
            AND (CAST(:type AS text) IS NULL OR type = :type)
            AND (CAST(:server_id AS integer) IS NULL OR server_id = :server_id)
            AND bucket >= :start AND bucket < :end
        GROUP BY 1 ORDER BY 1
    """), dict(params, **extra)).mappings().all()
    step = query["step"]
    return dict(params, points=[{"at": r["at"], "hits": r["hits"], "rps": r["hits"] / step} for r in rows])


def _escape_like(value):
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def last_access(connection, server_id, query):
    pattern = f"%{_escape_like(query['search'].lower())}%" if query.get("search") else None
    rows = connection.execute(text("""
        SELECT name, type, last_access FROM monitoring.dns_record_last_access
        WHERE server_id = :server_id AND (CAST(:pattern AS text) IS NULL OR name LIKE :pattern)
        ORDER BY last_access DESC, name, type LIMIT :limit
    """), {"server_id": server_id, "pattern": pattern, "limit": query["limit"]}).mappings().all()
    return {"server_id": server_id, "items": [dict(r) for r in rows]}


_HITS_ORDER = {
    "-hits": "hits DESC, name, type", "hits": "hits, name, type", "name": "name, type", "-name": "name DESC, type DESC",
    "-last_access": "last_access DESC, name, type", "last_access": "last_access, name, type",
}


def record_hits(connection, server_id, query):
    """Every record's hits in a period, one page in the asked order, with the count and hits of all of them.

    Per-minute aggregates, or the hourly ones (with the minutes of hours not rolled up) when both ends
    of the period are whole hours: an hourly bucket cannot be cut."""
    whole_hours = all(query[k].timestamp() % 3600 == 0 for k in ("start", "end"))
    source, extra = aggregate_rows(connection, "dns_record_aggregates", "hour" if whole_hours else "minute")
    pattern = f"%{_escape_like(query['search'].lower())}%" if query.get("search") else None
    params = dict(extra, server_id=server_id, start=query["start"], end=query["end"], pattern=pattern,
                  limit=query["per_page"], offset=(query["page"] - 1) * query["per_page"])
    per_record = f"""
        SELECT name, type, sum(hits) AS hits, max(last_access) AS last_access FROM {source} AS a
        WHERE server_id = :server_id AND bucket >= :start AND bucket < :end
            AND (CAST(:pattern AS text) IS NULL OR name LIKE :pattern)
        GROUP BY name, type"""
    totals = connection.execute(text(f"SELECT count(*) AS total, coalesce(sum(hits), 0) AS hits FROM ({per_record}) AS r"),
                                params).mappings().one()
    rows = connection.execute(text(f"{per_record} ORDER BY {_HITS_ORDER[query['sort']]} LIMIT :limit OFFSET :offset"),
                              params).mappings().all()
    return {"server_id": server_id, "start": query["start"], "end": query["end"], "total": totals["total"],
            "hits": totals["hits"], "page": query["page"], "per_page": query["per_page"], "items": [dict(r) for r in rows]}


def latest_heartbeats(connection, server_id, limit):
    rows = connection.execute(text("""
        SELECT seq, collected_at, stored_at AS received_at, agent_version FROM monitoring.heartbeats
        WHERE server_id = :server_id ORDER BY collected_at DESC, seq DESC LIMIT :limit
    """), {"server_id": server_id, "limit": limit}).mappings().all()
    return [dict(r) for r in rows]
