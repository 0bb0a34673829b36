from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Computed,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.db import make_base
from shared.idempotency import idempotency_keys_table
from shared.outbox import outbox_table, processed_events_table

Base = make_base("inventory")
idempotency_keys = idempotency_keys_table(Base.metadata)  # creates' first answers, by Idempotency-Key
outbox = outbox_table(Base.metadata)  # the events it emits, written with the changes they report (shared/outbox.py)
processed_events = processed_events_table(Base.metadata)  # ids of the events it handled, to drop repeats


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    # Made for one server when none was named; removed with that server.
    auto_created: Mapped[bool] = mapped_column(Boolean, server_default="false")
    # argon2id (shared/passwords.py); None: the user signs in with API tokens only, not in the console.
    password_hash: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    groups: Mapped[list["Group"]] = relationship(secondary="inventory.user_groups", lazy="selectin", order_by="Group.name")


class Group(Base):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)


class UserGroup(Base):
    __tablename__ = "user_groups"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    # Room on each page for a row's next version: refreshing last_used_at (every agent token, once a minute)
    # is then a heap-only update that touches no index (migration 0010).
    __table_args__ = {"postgresql_with": {"fillfactor": 50}}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    # Only the SHA-256 of the token is kept; the prefix lets an operator tell tokens apart.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(8))
    # "full": the user's own rights. "agent": a server's agent, which may only report for server_id.
    scope: Mapped[str] = mapped_column(String(16), server_default="full")
    server_id: Mapped[int | None] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    user: Mapped[User] = relationship(lazy="joined")


class SignInFailure(Base):
    """A failed console sign-in (or a wrong current password): what the sign-in limit counts, per user name
    and per client address, over the last minute (identity.py); rows older than an hour are swept."""

    __tablename__ = "sign_in_failures"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), index=True)  # as typed: an unknown user's name counts too
    address: Mapped[str] = mapped_column(String(45), index=True)
    failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Server(Base):
    __tablename__ = "servers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    # Names are unique whatever their case; the list sorts and searches on this key
    # (collation "C": byte order sorts and matches several times faster than a locale's).
    name_key: Mapped[str] = mapped_column(
        String(128, collation="C"), Computed("lower((name)::text)", persisted=True), unique=True
    )
    address: Mapped[str] = mapped_column(String(253))
    os: Mapped[str] = mapped_column(String(16))
    ssh_port: Mapped[int] = mapped_column(Integer)
    ssh_user: Mapped[str] = mapped_column(String(64))
    # Sealed with shared.crypto.SecretBox; never returned, never logged.
    ssh_password_sealed: Mapped[str | None] = mapped_column(Text)
    ssh_private_key_sealed: Mapped[str | None] = mapped_column(Text)
    monitoring_api_ip: Mapped[str | None] = mapped_column(String(45))
    # push or pull; None: the monitoring settings' communication_type (the global default).
    communication_type: Mapped[str | None] = mapped_column(String(8))
    runtime: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), server_default="unknown")
    server_user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=func.now())

    server_user: Mapped[User] = relationship()
    components: Mapped[list["ServerComponent"]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="ServerComponent.name"
    )
    # Its agent's tokens: one that was used means an agent runs there, however it was installed.
    agent_tokens: Mapped[list[ApiToken]] = relationship(viewonly=True)


class FleetChange(Base):
    """A trigger adds (its transaction's id, the server) whenever a transaction changes a server or its
    components, so a fleet copy reloads only the servers changed since it last read (fleet.py)."""

    __tablename__ = "fleet_changes"
    xid: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    server_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class FleetChangesPruned(Base):
    """One row: changes of transactions with an id below ``below`` may be gone, deleted by the transaction
    ``pruned_by`` (a prune, a TRUNCATE) or an earlier one; a copy that read before either reloads in full."""

    __tablename__ = "fleet_changes_pruned"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    below: Mapped[int] = mapped_column(BigInteger)
    pruned_by: Mapped[int] = mapped_column(BigInteger)


# The list's search ("any part of the name, any case") is a trigram match.
Index("ix_servers_name_key_trgm", Server.name_key, postgresql_using="gin", postgresql_ops={"name_key": "gin_trgm_ops"})


class ServerComponent(Base):
    __tablename__ = "server_components"

    server_id: Mapped[int] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    version: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), server_default="not_installed")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=func.now())


class SettingsSection(Base):
    """One row per admin settings section; secret values inside are sealed."""

    __tablename__ = "settings"

    section: Mapped[str] = mapped_column(String(32), primary_key=True)
    values: Mapped[dict] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=func.now())

