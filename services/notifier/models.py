"""The notifier's tables (schema ``notifier``).

An event becomes one *item* per channel that a rule sends it to. Items wait
in the channel's *collecting* delivery until its window closes; then the
delivery is rendered once (a single message, or a digest when several items
arrived) and sent, with every attempt logged.
"""
from datetime import datetime

from sqlalchemy import (ARRAY, Boolean, Column, DateTime, ForeignKey, Index, Integer, String, Table, Text,
                        UniqueConstraint, func, text)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.db import make_base
from shared.idempotency import idempotency_keys_table

Base = make_base("notifier")
idempotency_keys = idempotency_keys_table(Base.metadata)  # creates' first answers, by Idempotency-Key

rule_channels = Table(
    "rule_channels",
    Base.metadata,
    Column("rule_id", ForeignKey("rules.id", ondelete="CASCADE"), primary_key=True),
    Column("channel_id", ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True),
)


class Channel(Base):
    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # email, webhook or chat
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    settings: Mapped[dict] = mapped_column(JSONB)  # everything but the secret
    secret_sealed: Mapped[str | None] = mapped_column(Text)  # SMTP password, signing secret or chat URL
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Rule(Base):
    __tablename__ = "rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(64)))  # empty: every notifiable event
    min_severity: Mapped[str] = mapped_column(String(16))
    server_ids: Mapped[list[int]] = mapped_column(ARRAY(Integer))  # empty: every server
    server_search: Mapped[str | None] = mapped_column(String(128))  # part of the name, any case
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    channels: Mapped[list[Channel]] = relationship(secondary=rule_channels, lazy="selectin", order_by=Channel.id)


class Template(Base):
    """An operator's override of the default template for one event type and channel kind."""

    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("event_type", "channel_kind", name="uq_templates_event_type_channel_kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64))
    channel_kind: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ReceivedEvent(Base):
    """Events already turned into items: a redelivered event is recognised and dropped."""

    __tablename__ = "received_events"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # the event id (or sha256 of type and payload)
    event_type: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ServerState(Base):
    """The last state notified per server, and its recent changes (to spot flapping)."""

    __tablename__ = "server_states"

    server_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    server_name: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recent_changes: Mapped[list[datetime]] = mapped_column(ARRAY(DateTime(timezone=True)))
    flapping_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    muted_changes: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        # At most one open window per channel, whichever replica opens it.
        Index("uq_deliveries_collecting_channel", "channel_id", unique=True,
              postgresql_where=text("status = 'collecting'")),
        Index("ix_deliveries_status_due_at", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id", ondelete="SET NULL"))
    channel_name: Mapped[str] = mapped_column(String(64))
    channel_kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # collecting, pending, delivered, dead
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # window end, then next attempt
    item_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    subject: Mapped[str | None] = mapped_column(Text)  # rendered once when the window closes
    body: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))  # since the last manual retry
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DeliveryItem(Base):
    """One event for one channel."""

    __tablename__ = "delivery_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    server_id: Mapped[int | None] = mapped_column(Integer)
    server_name: Mapped[str | None] = mapped_column(String(128))
    payload: Mapped[dict] = mapped_column(JSONB)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[float] = mapped_column()
    ok: Mapped[bool] = mapped_column(Boolean)
    result: Mapped[str] = mapped_column(Text)  # the server's answer or the error
