"""The provisioner's tables (schema ``provisioner``): install tasks and their step
log, replicas' leases, pinned SSH host keys, and a record of every setup bundle handed out."""
from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import make_base
from shared.idempotency import idempotency_keys_table
from shared.leases import LeaseColumns
from shared.outbox import outbox_table
from shared.tasks import CancelColumns, TaskColumns, TaskStepColumns

Base = make_base("provisioner")
idempotency_keys = idempotency_keys_table(Base.metadata)  # creates' first answers, by Idempotency-Key
outbox = outbox_table(Base.metadata)  # the events it emits, written with the changes they report (shared/outbox.py)


class Task(TaskColumns, CancelColumns, Base):
    """An install task (shared/tasks.py: the shape every service's tasks share)."""


class TaskStep(TaskStepColumns, Base):
    pass


class Lease(LeaseColumns, Base):
    """Each replica's lease on the tasks it runs (shared/leases.py)."""


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
