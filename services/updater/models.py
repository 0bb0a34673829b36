"""The updater's tables (schema ``updater``): version catalog, update tasks and
their step log (update and diagnostics tasks), replicas' leases, last stable versions, rollouts."""
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.db import make_base
from shared.idempotency import idempotency_keys_table
from shared.outbox import outbox_table
from shared.leases import LeaseColumns
from shared.tasks import CancelColumns, TaskColumns, TaskStepColumns

Base = make_base("updater")
idempotency_keys = idempotency_keys_table(Base.metadata)  # creates' first answers, by Idempotency-Key
outbox = outbox_table(Base.metadata)  # the events it emits, written with the changes they report (shared/outbox.py)


class Image(Base):
    """One version of one component: an uploaded image file, or one fetched from the registry."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("component", "version", name="uq_images_component_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    component: Mapped[str] = mapped_column(String(16))
    version: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    # "upload" (local mode) or "registry" (internet mode, fetched on first use).
    source: Mapped[str] = mapped_column(String(16))
    # Relative to the configured storage directory.
    path: Mapped[str] = mapped_column(String(255))
    manifest: Mapped[dict] = mapped_column(JSONB)
    uploaded_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Task(TaskColumns, CancelColumns, Base):
    """An update or diagnostics task (shared/tasks.py: the shape every service's tasks share), with what it
    updates and what came of it."""

    # None: every installed component that has a newer version.
    component: Mapped[str | None] = mapped_column(String(16))
    target_version: Mapped[str | None] = mapped_column(String(64))
    # update, per component: {"dns": {"outcome": "updated", "from": "1", "to": "2", "reason": null}};
    # diagnostics: {"checks": [{"name": "ssh", "status": "passed", "message": "..."}, ...]}
    outcome: Mapped[dict] = mapped_column(JSONB, server_default="{}")
    rollout_id: Mapped[int | None] = mapped_column(ForeignKey("rollouts.id", ondelete="SET NULL"), index=True)


class TaskStep(TaskStepColumns, Base):
    pass


class Lease(LeaseColumns, Base):
    """Each replica's lease on the update tasks it runs (shared/leases.py)."""


class LastStable(Base):
    """The version of a component that last passed verification on a server: what a rollback starts."""

    __tablename__ = "last_stable_versions"

    server_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    component: Mapped[str] = mapped_column(String(16), primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=func.now())


class Rollout(Base):
    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # running, paused, cancelled, succeeded
    state: Mapped[str] = mapped_column(String(16))
    component: Mapped[str | None] = mapped_column(String(16))
    target_version: Mapped[str | None] = mapped_column(String(64))
    canary_size: Mapped[int] = mapped_column(Integer)
    batch_size: Mapped[int] = mapped_column(Integer)
    # The rollout pauses once this many servers failed since it (re)started.
    max_failures: Mapped[int] = mapped_column(Integer)
    failures_before_resume: Mapped[int] = mapped_column(Integer, server_default="0")
    current_wave: Mapped[int] = mapped_column(Integer, server_default="-1")
    paused_reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=func.now())

    servers: Mapped[list["RolloutServer"]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="RolloutServer.position"
    )


class RolloutServer(Base):
    __tablename__ = "rollout_servers"

    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id", ondelete="CASCADE"), primary_key=True)
    server_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    server_name: Mapped[str] = mapped_column(String(128))
    position: Mapped[int] = mapped_column(Integer)
    wave: Mapped[int] = mapped_column(Integer)
    # pending, running, succeeded, skipped (nothing newer), failed, rolled_back, cancelled
    state: Mapped[str] = mapped_column(String(16), server_default="pending")
    task_id: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(Text)

