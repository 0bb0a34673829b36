"""The backup service's tables (schema ``backup``): backup servers registered with their
daemons, the key, retention policies, schedules, the catalogue of stored backups, and the tasks
that run backups, verifications, restores and prunes, with each replica's lease on the tasks it runs."""
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import make_base
from shared.idempotency import idempotency_keys_table
from shared.leases import LeaseColumns
from shared.outbox import outbox_table
from shared.tasks import CancelColumns, TaskColumns, TaskStepColumns

Base = make_base("backup")
outbox = outbox_table(Base.metadata)  # the events it emits, written with the changes they report (shared/outbox.py)
idempotency_keys = idempotency_keys_table(Base.metadata)  # creates' first answers, by Idempotency-Key


class BackupServer(Base):
    """A managed server with the backup component, enrolled with its daemon."""

    __tablename__ = "backup_servers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    server_id: Mapped[int] = mapped_column(Integer, unique=True)  # inventory's managed server
    name: Mapped[str] = mapped_column(String(128))
    url: Mapped[str] = mapped_column(String(300))  # the daemon, http://<address>:<port>
    repository: Mapped[str] = mapped_column(String(64))
    # The daemon's users, sealed with SECRET_KEY: append (every run) and prune (retention and delete only).
    append_user: Mapped[str] = mapped_column(String(64))
    append_password_sealed: Mapped[str] = mapped_column(Text)
    prune_user: Mapped[str] = mapped_column(String(64))
    prune_password_sealed: Mapped[str] = mapped_column(Text)
    include_monitoring_raw: Mapped[bool] = mapped_column(Boolean, server_default="false")
    # The daemon's last status (its heartbeat, pulled).
    disk_total_bytes: Mapped[int | None] = mapped_column(BigInteger)
    disk_free_bytes: Mapped[int | None] = mapped_column(BigInteger)
    disk_free_percent: Mapped[float | None] = mapped_column(Float)
    disk_low: Mapped[bool] = mapped_column(Boolean, server_default="false")
    # The newest of the daemon's disk crossings already reported (backup_disk_low once per crossing).
    disk_event_seen: Mapped[int] = mapped_column(Integer, server_default="0")
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class BackupKey(Base):
    """The repository secret (restic's repository password), wrapped by the managed-backup password."""

    __tablename__ = "backup_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # one row: 1
    wrapped_secret: Mapped[str] = mapped_column(Text)
    # The password it is wrapped with, sealed with SECRET_KEY: how a change of the setting is noticed.
    wrapped_with_sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    rewrapped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RetentionPolicy(Base):
    __tablename__ = "retention_policies"

    backup_server_id: Mapped[int] = mapped_column(ForeignKey("backup_servers.id", ondelete="CASCADE"), primary_key=True)
    keep_last: Mapped[int] = mapped_column(Integer, server_default="0")
    keep_hourly: Mapped[int] = mapped_column(Integer, server_default="0")
    keep_daily: Mapped[int] = mapped_column(Integer, server_default="0")
    keep_weekly: Mapped[int] = mapped_column(Integer, server_default="0")
    keep_monthly: Mapped[int] = mapped_column(Integer, server_default="0")
    keep_yearly: Mapped[int] = mapped_column(Integer, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Schedule(Base):
    """When a backup server's backups run: a cron expression (UTC), fired once by one replica."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    backup_server_id: Mapped[int] = mapped_column(ForeignKey("backup_servers.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16), server_default="backup")  # backup or verify
    cron: Mapped[str] = mapped_column(String(120))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default="true")
    next_run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_task_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Backup(Base):
    """A stored backup: listed only once restic committed its snapshot and the dump was whole."""

    __tablename__ = "backups"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    backup_server_id: Mapped[int] = mapped_column(ForeignKey("backup_servers.id", ondelete="CASCADE"), index=True)
    snapshot_id: Mapped[str] = mapped_column(String(64))
    taken_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    schemas: Mapped[list] = mapped_column(JSONB)
    include_monitoring_raw: Mapped[bool] = mapped_column(Boolean)
    size_bytes: Mapped[int] = mapped_column(BigInteger)  # what this backup dumped (reused tables not counted)
    added_bytes: Mapped[int] = mapped_column(BigInteger)  # what this backup added to the repository
    duration_ms: Mapped[int] = mapped_column(Integer)
    task_id: Mapped[str | None] = mapped_column(String(32))
    # unverified, ok, bad
    verification: Mapped[str] = mapped_column(String(16), server_default="unverified")
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    verification_detail: Mapped[str | None] = mapped_column(Text)
    # Its snapshot's fingerprints and the restic snapshot each big table's data is in (reuse.py); None for a
    # backup from before parts (one pg_dump archive).
    parts: Mapped[dict | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Task(TaskColumns, CancelColumns, Base):
    """A backup, verify, restore or prune run (shared/tasks.py: the shape every service's tasks share); a running
    one can be cancelled (between steps, and a backup's dump where it is)."""


class TaskStep(TaskStepColumns, Base):
    pass


class Lease(LeaseColumns, Base):
    """Each replica's lease on the tasks it runs (shared/leases.py)."""
