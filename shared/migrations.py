"""Alembic for every service: one tree per service, its version table in its own schema.

``python -m shared.migrations [service ...]`` upgrades each registered service
(default: all) to head. It is a deployment step, run once before the services
start, never on each replica's start-up; an advisory lock makes concurrent runs
take turns.

A service's migrations are the ``migrations/`` tree beside its service module,
and its models are the metadata of its ``DatabaseSession`` dependency
(``db = DatabaseSession(Base)``): what it registered is all this module needs.
"""
import argparse
import inspect
import sys
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import text

from shared.config import load_settings, registered_services, service_class
from shared.db import make_engine
from shared.dependencies import DatabaseSession


def service_metadata(service):
    """The metadata of a registered service's models."""
    cls = service_class(service)
    (db,) = [value for value in vars(cls).values() if isinstance(value, DatabaseSession)]
    return db.base.metadata


def alembic_config(service, database_url):
    cls = service_class(service)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(inspect.getfile(cls)).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["service"] = service
    return cfg


def run_env(context):
    """Body of every service's migrations/env.py."""
    cfg = context.config
    service = cfg.attributes["service"]
    metadata = service_metadata(service)
    schema = metadata.schema
    engine = cfg.attributes.get("engine") or make_engine(cfg.get_main_option("sqlalchemy.url"), pool_size=1)
    with engine.connect() as connection:
        connection.execute(text("SET lock_timeout = '10s'"))
        connection.execute(text("SELECT pg_advisory_lock(hashtext(:key))"), {"key": f"steward-migrate-{service}"})
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=metadata,
                version_table_schema=schema,
                include_schemas=False,
                transaction_per_migration=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), {"key": f"steward-migrate-{service}"})
            connection.commit()


def upgrade(database_url, services=None, revision="head"):
    for service in services or registered_services():
        command.upgrade(alembic_config(service, database_url), revision)


def downgrade(database_url, service, revision):
    command.downgrade(alembic_config(service, database_url), revision)


def drift(database_url, service):
    """Differences between a service's models and its migrated schema (empty when they agree)."""
    metadata = service_metadata(service)
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as connection:
            # Time partitions are made at run time (monitoring_ingest); their parents are the models.
            partitions = set(connection.execute(text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :schema AND c.relispartition"), {"schema": metadata.schema}).scalars())
            context = MigrationContext.configure(
                connection,
                opts={
                    "target_metadata": metadata,
                    "include_schemas": True,
                    "include_name": lambda name, type_, parent: (type_ != "schema" or name == metadata.schema)
                    and not (type_ == "table" and name in partitions),
                    "version_table_schema": metadata.schema,
                },
            )
            return [
                diff for diff in compare_metadata(context, metadata)
                if not (diff[0] == "remove_table" and diff[1].name == "alembic_version")
            ]
    finally:
        engine.dispose()


def main(argv=None):
    services = list(registered_services())
    parser = argparse.ArgumentParser(description="Apply Steward's database migrations")
    parser.add_argument("chosen", nargs="*", metavar="SERVICE", help=f"what to migrate (default: {' '.join(services)})")
    parser.add_argument("--config")
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    unknown = set(args.chosen) - set(services)
    if unknown:
        parser.error(f"unknown service(s): {', '.join(sorted(unknown))}")
    upgrade(settings.database_url, args.chosen or None)
    print(f"migrated: {', '.join(args.chosen or services)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
