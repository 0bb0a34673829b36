"""Database access shared by every service: one PostgreSQL schema per service.

``make_base(schema)`` gives a service its declarative base whose tables live in
its own schema. The nameko side (a session per worker) is
``shared.dependencies.DatabaseSession``.
"""
from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def make_base(schema):
    class Base(DeclarativeBase):
        metadata = MetaData(schema=schema, naming_convention=NAMING_CONVENTION)

    return Base


def ping(connection):
    """What a service's ``health`` says of its database: "ok" once it answered a query."""
    connection.execute(text("SELECT 1"))
    return "ok"


def make_engine(url, pool_size=5, **kwargs):
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        future=True,
        **kwargs,
    )


def once_more_if_dropped(work):
    """``work()``, and once more if the database dropped the connection under it (a restart, a terminated
    backend): a blip must not fail work that is doing fine. The pool's pre-ping cannot see a connection that
    dies after it; ``work`` must be safe to repeat, which a transaction that died with its connection is."""
    for attempt in (1, 2):
        try:
            return work()
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
