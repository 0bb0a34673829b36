"""Alembic for every service: one tree per service, its version table in its own schema.

``python -m shared.migrations [service ...]`` upgrades each (default: all) to
head. It is a deployment step, run once before the services start, never on
each replica's start-up; an advisory lock makes concurrent runs take turns.
"""
import argparse
import importlib
import sys
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import text

from shared.config import SERVICES, load_settings
from shared.db import make_engine

ROOT = Path(__file__).resolve().parent.parent


def service_models(service):
    return importlib.import_module(f"services.{service}.models")


def alembic_config(service, database_url):
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "services" / service / "migrations"))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["service"] = service
    return cfg


def run_env(context):
    """Body of every service's migrations/env.py."""
    cfg = context.config
    service = cfg.attributes["service"]
    metadata = service_models(service).Base.metadata
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
    for service in services or SERVICES:
        command.upgrade(alembic_config(service, database_url), revision)


def downgrade(database_url, service, revision):
    command.downgrade(alembic_config(service, database_url), revision)


def drift(database_url, service):
    """Differences between a service's models and its migrated schema (empty when they agree)."""
    metadata = service_models(service).Base.metadata
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
    parser = argparse.ArgumentParser(description="Apply Steward's database migrations")
    parser.add_argument("services", nargs="*", help=f"services to migrate (default: {' '.join(SERVICES)})")
    parser.add_argument("--config")
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    unknown = set(args.services) - set(SERVICES)
    if unknown:
        parser.error(f"unknown service(s): {', '.join(sorted(unknown))}")
    upgrade(settings.database_url, args.services or None)
    print(f"migrated: {', '.join(args.services or SERVICES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
