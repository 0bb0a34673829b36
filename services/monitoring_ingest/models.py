"""The monitoring schema.

Raw tables are range-partitioned by ``collected_at`` into hourly partitions;
aggregate tables by ``bucket`` into daily ones (``partitions.py`` creates them
ahead and drops expired ones whole). Their primary keys include the partition
key, as PostgreSQL requires, and are a message's identity, so a redelivered
message is stored once.
"""
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Float, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import make_base
from shared.outbox import outbox_table, processed_events_table

Base = make_base("monitoring")
outbox = outbox_table(Base.metadata)  # the events it emits, written with the changes they report (shared/outbox.py)
processed_events = processed_events_table(Base.metadata)  # ids of the events it handled, to drop repeats

RAW_TABLES = ("heartbeats", "system_samples", "dns_periods")
AGGREGATE_TABLES = ("system_aggregates", "dns_aggregates", "dns_record_aggregates")


def _partitioned_by(column="collected_at"):
    return {"postgresql_partition_by": f"RANGE ({column})"}


class AgentMessageRow:
    """A message's identity (server, per-kind sequence, collection time) and when it was stored."""

    server_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    collected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    # Wall-clock time of the insert (not the transaction's start): the ingest lag.
    stored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("clock_timestamp()"))


class Heartbeat(AgentMessageRow, Base):
    __tablename__ = "heartbeats"
    __table_args__ = (Index("ix_heartbeats_server_id_stored_at", "server_id", "stored_at"), _partitioned_by())

    agent_version: Mapped[str] = mapped_column(String(64))
    versions: Mapped[dict] = mapped_column(JSONB)


class SystemSample(AgentMessageRow, Base):
    __tablename__ = "system_samples"
    __table_args__ = (_partitioned_by(),)

    load1: Mapped[float] = mapped_column(Float)
    load5: Mapped[float] = mapped_column(Float)
    load15: Mapped[float] = mapped_column(Float)
    memory_total_bytes: Mapped[int] = mapped_column(BigInteger)
    memory_used_bytes: Mapped[int] = mapped_column(BigInteger)
    memory_available_bytes: Mapped[int] = mapped_column(BigInteger)
    swap_total_bytes: Mapped[int] = mapped_column(BigInteger)
    swap_used_bytes: Mapped[int] = mapped_column(BigInteger)
    disk_used_max_percent: Mapped[float] = mapped_column(Float)
    connections_established: Mapped[int] = mapped_column(Integer)
    disks: Mapped[list] = mapped_column(JSONB)
    connections: Mapped[dict] = mapped_column(JSONB)


class DnsPeriod(AgentMessageRow, Base):
    """One DNS statistics message: the period's total, and its records as sent.

    ``records`` is ``[{"name", "type", "hits", "last_access"}]`` (names in lower
    case, one entry per name and type). The raw records live inside their
    message's row rather than a row each: they are read back only through the
    aggregates, and a row per record cost the ingest path a fifth of its time.
    """

    __tablename__ = "dns_periods"
    __table_args__ = (_partitioned_by(),)

    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    total: Mapped[int] = mapped_column(BigInteger)
    records: Mapped[list] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))


def _bucket_brin(table):
    # The hourly rollup reads one hour of minute rows across servers; rows arrive in
    # time order, so a BRIN index finds them for next to nothing at insert time.
    return Index(f"ix_{table}_bucket_brin", "bucket", postgresql_using="brin")


class SystemAggregate(Base):
    """Sums and maxima per minute or hour, so averages over any coarser step are exact."""

    __tablename__ = "system_aggregates"
    __table_args__ = (_bucket_brin("system_aggregates"), _partitioned_by("bucket"))

    resolution: Mapped[str] = mapped_column(String(8), primary_key=True)
    server_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    samples: Mapped[int] = mapped_column(Integer)
    load1_sum: Mapped[float] = mapped_column(Float)
    load5_sum: Mapped[float] = mapped_column(Float)
    load15_sum: Mapped[float] = mapped_column(Float)
    memory_used_sum: Mapped[float] = mapped_column(Float)
    memory_total_max: Mapped[int] = mapped_column(BigInteger)
    swap_used_sum: Mapped[float] = mapped_column(Float)
    connections_established_sum: Mapped[float] = mapped_column(Float)
    disk_used_max_percent: Mapped[float] = mapped_column(Float)


class DnsAggregate(Base):
    __tablename__ = "dns_aggregates"
    __table_args__ = (_bucket_brin("dns_aggregates"), _partitioned_by("bucket"))

    resolution: Mapped[str] = mapped_column(String(8), primary_key=True)
    server_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    total: Mapped[int] = mapped_column(BigInteger)


class DnsRecordAggregate(Base):
    __tablename__ = "dns_record_aggregates"
    # Name first: the RPS query searches one record's name across servers.
    __table_args__ = (_bucket_brin("dns_record_aggregates"), _partitioned_by("bucket"))

    resolution: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(16), primary_key=True)
    server_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    hits: Mapped[int] = mapped_column(BigInteger)
    last_access: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DnsRecordLastAccess(Base):
    """One row per record and server: when it was last asked for (kept until the server is deleted)."""

    __tablename__ = "dns_record_last_access"

    server_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(16), primary_key=True)
    last_access: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class KnownServer(Base):
    """Names of inventory's servers, learnt from its events, for the events we emit."""

    __tablename__ = "servers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(128))


class Liveness(Base):
    __tablename__ = "liveness"
    __table_args__ = (Index("ix_liveness_state_last_heartbeat_at", "state", "last_heartbeat_at"),)

    server_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    state: Mapped[str] = mapped_column(String(8))  # up or down
    last_heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    agent_version: Mapped[str | None] = mapped_column(String(64))
    versions: Mapped[dict] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    # Arrival times of the latest heartbeats (those of the last 2 minutes and a few more), so the
    # fleet list counts ``requests`` from this one row instead of the partitioned heartbeats.
    recent_heartbeats: Mapped[list] = mapped_column(ARRAY(DateTime(timezone=True)), server_default=text("'{}'"))


class IngestStatus(Base):
    """One row: what the batch consumer last said of itself, and the fleet silence the sweep reported
    (liveness.py). Silence counts only while ingest listens."""

    __tablename__ = "ingest_status"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    caught_up_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # every heartbeat before is stored
    listening_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # caught up without a break
    silence_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # a fleet silence, reported
    quiet_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # after it: nobody down before


class DiskAlert(Base):
    __tablename__ = "disk_alerts"

    server_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    mount: Mapped[str] = mapped_column(Text, primary_key=True)
    low: Mapped[bool] = mapped_column(Boolean)
    free_percent: Mapped[float] = mapped_column(Float)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PullTarget(Base):
    """A pull-mode server: where its agent listens, its agent token (sealed) and the cursor reached."""

    __tablename__ = "pull_targets"
    __table_args__ = (Index("ix_pull_targets_next_poll_at", "next_poll_at"),)

    server_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    address: Mapped[str] = mapped_column(String(253))
    port: Mapped[int] = mapped_column(Integer)
    token_sealed: Mapped[str] = mapped_column(Text)
    interval_seconds: Mapped[int] = mapped_column(Integer)
    cursor: Mapped[int] = mapped_column(BigInteger, server_default="0")
    next_poll_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_polled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)


class RetentionOverride(Base):
    """A server's own retention; null keeps the admin setting."""

    __tablename__ = "retention_overrides"

    server_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    raw_retention_minutes: Mapped[int | None] = mapped_column(Integer)
    aggregated_retention_days: Mapped[int | None] = mapped_column(Integer)


class RollupState(Base):
    """Hours before ``rolled_until`` have their hourly aggregates (unless marked dirty); one row."""

    __tablename__ = "rollup_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    rolled_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RollupDirty(Base):
    """A past hour that received data after it was rolled up (a spooled backlog, a redelivery);
    ``version`` changes with every batch that marks it, so the rollup clears only what it saw."""

    __tablename__ = "rollup_dirty"

    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
