"""A migration that needs a table a running transaction holds gives up after its lock timeout (10 s)
instead of queueing every later query of that table behind it, and leaves the schema as it was."""
import pytest
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from shared.migrations import downgrade, upgrade


def _revision(engine):
    with engine.connect() as connection:
        return MigrationContext.configure(connection, opts={"version_table_schema": "inventory"}).get_current_revision()


@pytest.mark.timeout(180)
def test_a_migration_behind_a_busy_table_times_out_and_changes_nothing(settings, engine):
    head = _revision(engine)
    downgrade(settings.database_url, "inventory", "0002")  # 0003 puts triggers on inventory.servers
    try:
        with engine.connect() as busy:
            # What any request does: a write on servers, in a transaction still open.
            busy.execute(text("UPDATE inventory.servers SET ssh_port = ssh_port WHERE false"))
            with pytest.raises(OperationalError, match="lock timeout"):
                upgrade(settings.database_url, ["inventory"])
            assert _revision(engine) == "0002"
            busy.execute(text("SELECT count(*) FROM inventory.servers"))  # the request goes on, unharmed
            busy.commit()
        upgrade(settings.database_url, ["inventory"])  # nothing in its way now
        assert _revision(engine) == head
    finally:
        upgrade(settings.database_url, ["inventory"])
