"""Which tables a backup takes from an earlier backup instead of dumping them again.

A backup's stream holds the data of every table except those that provably hold the same rows as
at the previous backup's snapshot: each of those names the earlier restic snapshot its data is in.
"Provably", in the backup's own snapshot (the one pg_dump then dumps), for a table of the same
database (system identifier and database oid), the same relation (oid) and the same columns:

* every visible row was written by a transaction older than the previous snapshot's xmin, so it
  was committed before that snapshot and not deleted since: each row now was a row then; and
* there are as many rows as then: so no row was deleted either. The rows are the same rows.

The transaction ids compare through ``age()``, exact within 2^31 transactions: a previous snapshot
more than XID_WINDOW transactions old is not compared at all. A frozen row keeps its xmin (since
PostgreSQL 9.4), so freezing changes nothing. Nothing here trusts pg_stat counters (reset, lost
on a crash, not transactional) or the time a partition covers (ingest stores late data in any
past hour). A point-in-time recovery or a failover cannot reuse ids behind the previous snapshot:
the catalogue row naming that snapshot is in this same database, and a recovery that keeps it
keeps the transaction that wrote it, whose id is newer than the snapshot.

Small tables are always dumped: they cost less than they would pin. Tables with a column of a
type outside pg_catalog are always dumped too: an enum's label can be renamed without touching a
row, and the stored text would then no longer load.
"""
import fnmatch

from sqlalchemy import text

REUSE_MIN_BYTES = 1 << 20  # a table's heap below this is always dumped
MAX_SOURCES = 8  # a restore reads at most this many earlier backups' streams besides its own
XID_WINDOW = 1 << 30

_DATABASE = text(
    # A role that may not read the cluster's identifier gets NULL, and no reuse, rather than a failed backup.
    "SELECT CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE') "
    "THEN (pg_control_system()).system_identifier::text END AS system_identifier, d.oid::bigint AS database_oid, "
    "pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin, "
    "pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax "
    "FROM pg_database d WHERE d.datname = current_database()")
_CANDIDATES = text("""
SELECT n.nspname AS schema, c.relname AS table, c.oid::bigint AS oid, pg_relation_size(c.oid) AS bytes,
    (SELECT string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod) || a.attgenerated::text, ', '
                       ORDER BY a.attnum)
     FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname = ANY(:schemas) AND pg_relation_size(c.oid) >= :min_bytes
  AND NOT EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                    AND t.typnamespace <> 'pg_catalog'::regnamespace)
ORDER BY 1, 2
""")


def _quoted(schema, table):
    return '"{}"."{}"'.format(schema.replace('"', '""'), table.replace('"', '""'))


def comparable(previous, database):
    """The previous backup's tables, if its snapshot can be compared with this one at all."""
    if not previous or database.system_identifier is None \
            or (previous.get("system_identifier"), previous.get("database_oid")) \
            != (database.system_identifier, database.database_oid):
        return {}
    if not 0 <= database.xmax - previous["xmin"] < XID_WINDOW:
        return {}
    return previous["tables"]


def plan(connection, previous, schemas, excluded_patterns=(), min_bytes=REUSE_MIN_BYTES, max_sources=MAX_SOURCES):
    """In ``connection``'s transaction (the backup's snapshot): the parts record of this backup.

    ``previous`` is the last backup's record (or None). Each table at least ``min_bytes`` big whose data
    is dumped (not matching ``excluded_patterns``) is listed with its fingerprint and the snapshot its data
    is in: an earlier one when it provably did not change, None (this backup's own) otherwise."""
    database = connection.execute(_DATABASE).one()
    before = comparable(previous, database)
    since = (previous or {}).get("xmin", 0) % (1 << 32)  # age() takes the 32-bit id
    tables = {}
    for row in connection.execute(_CANDIDATES, {"schemas": list(schemas), "min_bytes": min_bytes}).mappings():
        name = f"{row['schema']}.{row['table']}"
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in excluded_patterns):
            continue
        then = before.get(name)
        same_relation = then is not None and then["oid"] == row["oid"] and then["columns"] == row["columns"]
        rows, newer = connection.execute(text(
            f"SELECT count(*), count(*) FILTER (WHERE age(xmin) <= age(CAST(:since AS xid))) "
            f"FROM {_quoted(row['schema'], row['table'])}"), {"since": str(since)}).one()
        unchanged = same_relation and newer == 0 and rows == then["rows"]
        tables[name] = {"schema": row["schema"], "table": row["table"], "oid": row["oid"], "columns": row["columns"],
                        "bytes": row["bytes"], "rows": rows, "snapshot_id": then["snapshot_id"] if unchanged else None}
    limit_sources(tables, max_sources)
    return {"system_identifier": database.system_identifier, "database_oid": database.database_oid,
            "xmin": database.xmin, "tables": tables}


def limit_sources(tables, max_sources):
    """Keep the ``max_sources`` earlier snapshots that hold the most reused bytes; dump the rest again."""
    weight = {}
    for entry in tables.values():
        if entry["snapshot_id"]:
            weight[entry["snapshot_id"]] = weight.get(entry["snapshot_id"], 0) + entry["bytes"]
    kept = set(sorted(weight, key=lambda snapshot: (-weight[snapshot], snapshot))[:max_sources])
    for entry in tables.values():
        if entry["snapshot_id"] not in kept:
            entry["snapshot_id"] = None


def _reused_entries(parts):
    return [entry for entry in parts["tables"].values() if entry["snapshot_id"] not in (None, parts.get("snapshot_id"))]


def reused(parts):
    """{snapshot id: [(schema, table), ...]} of the tables a backup takes from earlier snapshots."""
    sources = {}
    for entry in _reused_entries(parts):
        sources.setdefault(entry["snapshot_id"], []).append((entry["schema"], entry["table"]))
    return sources


def reused_bytes(parts):
    """The reused tables' size in the database: what a backup would dump again if they all changed."""
    return sum(entry["bytes"] for entry in _reused_entries(parts)) if parts else 0


_RELATIONS = text("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                  "WHERE c.relkind IN ('r', 'S', 'm') AND n.nspname = ANY(:schemas) ORDER BY 1, 2")


def dumped(connection, schemas, excluded_patterns, parts):
    """[schema, name] of every relation whose rows (or sequence value) the backup's own data archive holds."""
    reused_names = {(entry["schema"], entry["table"]) for entry in _reused_entries(parts)}
    return [[schema, name] for schema, name in connection.execute(_RELATIONS, {"schemas": list(schemas)})
            if (schema, name) not in reused_names
            and not any(fnmatch.fnmatchcase(f"{schema}.{name}", pattern) for pattern in excluded_patterns)]


def selections(tables, relations):
    """pg_restore options that pick exactly ``tables`` out of an archive holding ``relations``' data. Its -n and -t
    both must match, and -t names no schema: one pass when together they pick nothing else, else one per schema."""
    wanted = {tuple(table) for table in tables}
    schemas, names = {schema for schema, _ in wanted}, {name for _, name in wanted}
    if {tuple(r) for r in relations if r[0] in schemas and r[1] in names} <= wanted:
        groups = [sorted(wanted)]
    else:
        groups = [sorted(t for t in wanted if t[0] == schema) for schema in sorted(schemas)]
    return [[*(f"--schema={s}" for s in sorted({s for s, _ in group})), *(f"--table={name}" for _, name in group)]
            for group in groups]


def excluded_data(parts):
    """pg_dump patterns (exact, quoted) for the reused tables: their data is not dumped again."""
    return [_quoted(entry["schema"], entry["table"]) for entry in _reused_entries(parts)]


def stored_in(parts, snapshot_id):
    """The record as listed: this backup's own snapshot, which holds the tables dumped this time."""
    tables = {name: dict(entry, snapshot_id=entry["snapshot_id"] or snapshot_id)
              for name, entry in parts["tables"].items()}
    return dict(parts, snapshot_id=snapshot_id, tables=tables)


def snapshots_in_use(backups):
    """Every restic snapshot that ``backups`` ((snapshot_id, parts) pairs) need: their own, and those they reuse."""
    used = set()
    for snapshot_id, parts in backups:
        used.add(snapshot_id)
        if parts:
            used.update(entry["snapshot_id"] for entry in parts["tables"].values())
    return used
