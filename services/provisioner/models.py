"""The provisioner's tables (schema ``provisioner``): install tasks and their step
log, pinned SSH host keys, and a record of every setup bundle handed out."""
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.db import make_base

Base = make_base("provisioner")


class Task(Base):
    """A long operation on one server: an id, a kind, a state and progress as step k of N."""

    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # install
    server_id: Mapped[int] = mapped_column(Integer, index=True)
    server_name: Mapped[str] = mapped_column(String(128))
    # queued, running, succeeded, failed
    state: Mapped[str] = mapped_column(String(16))
    step_index: Mapped[int] = mapped_column(Integer, server_default="0")
    step_count: Mapped[int] = mapped_column(Integer, server_default="0")
    current_step: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    # What the install needs of the server, read with the requester's rights when it was queued.
    params: Mapped[dict] = mapped_column(JSONB)
    requested_by: Mapped[str] = mapped_column(String(64))
    # The replica running it; its PostgreSQL advisory lock says whether it is still alive.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    steps: Mapped[list["TaskStep"]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="TaskStep.position"
    )


# Replicas look for queued work often: a partial index keeps that cheap as tasks pile up.
Index("ix_tasks_queued", Task.created_at, postgresql_where=Task.state.in_(["queued", "running"]))


class TaskStep(Base):
    __tablename__ = "task_steps"

    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # running, succeeded, failed
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    output: Mapped[str] = mapped_column(Text, server_default="")


class HostKey(Base):
    """The SSH host key first seen for a server (trust on first use); a different key is refused."""

    __tablename__ = "host_keys"

    server_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(253))
    port: Mapped[int] = mapped_column(Integer)
    key_type: Mapped[str] = mapped_column(String(64))
    key_base64: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(128))
    pinned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Bundle(Base):
    """A setup bundle handed out: what it was made for, never its content (it holds secrets)."""

    __tablename__ = "bundles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    server_id: Mapped[int] = mapped_column(Integer, index=True)
    purpose: Mapped[str] = mapped_column(String(16))  # download or install
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    agent_token_id: Mapped[int] = mapped_column(Integer)
    rabbitmq_user: Mapped[str] = mapped_column(String(128))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
