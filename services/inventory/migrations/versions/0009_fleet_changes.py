"""fleet_changes: which servers each transaction changed, so a fleet copy reloads only those

Replaces fleet_version, whose one row every writing transaction updated: it held a row lock
until commit, and any change made every copy reload all servers. During a rolling upgrade the
previous release's inventory replicas still read fleet_version after this migration ran, until
they are replaced: it becomes a view that changes whenever a change is recorded (no lock), and
the next release's migration drops it.

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_XID = "pg_current_xact_id()::text::bigint"


def upgrade():
    for table in ("servers", "server_components"):
        op.execute(f"DROP TRIGGER {table}_bump_fleet_version ON inventory.{table}")
    op.execute("DROP FUNCTION inventory.bump_fleet_version()")
    op.drop_table("fleet_version", schema="inventory")

    op.create_table("fleet_changes",
                    sa.Column("xid", sa.BigInteger(), autoincrement=False, nullable=False),
                    sa.Column("server_id", sa.Integer(), autoincrement=False, nullable=False),
                    sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
                    sa.PrimaryKeyConstraint("xid", "server_id", name=op.f("pk_fleet_changes")),
                    schema="inventory")
    op.create_table("fleet_changes_pruned",
                    sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
                    sa.Column("below", sa.BigInteger(), nullable=False),
                    sa.Column("pruned_by", sa.BigInteger(), nullable=False),
                    sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_changes_pruned")),
                    schema="inventory")
    # One row per server a transaction touched (a second change of it in the same transaction adds none).
    op.execute(f"""
        CREATE FUNCTION inventory.record_fleet_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_TABLE_NAME = 'servers' THEN
                IF TG_OP <> 'INSERT' THEN
                    INSERT INTO inventory.fleet_changes (xid, server_id) VALUES ({_XID}, OLD.id) ON CONFLICT DO NOTHING;
                END IF;
                IF TG_OP <> 'DELETE' THEN
                    INSERT INTO inventory.fleet_changes (xid, server_id) VALUES ({_XID}, NEW.id) ON CONFLICT DO NOTHING;
                END IF;
            ELSE
                IF TG_OP <> 'INSERT' THEN
                    INSERT INTO inventory.fleet_changes (xid, server_id) VALUES ({_XID}, OLD.server_id)
                    ON CONFLICT DO NOTHING;
                END IF;
                IF TG_OP <> 'DELETE' THEN
                    INSERT INTO inventory.fleet_changes (xid, server_id) VALUES ({_XID}, NEW.server_id)
                    ON CONFLICT DO NOTHING;
                END IF;
            END IF;
            RETURN NULL;
        END $$
    """)
    # A TRUNCATE records no rows: every copy read before it must reload in full, as after a prune.
    op.execute(f"""
        CREATE FUNCTION inventory.fleet_history_lost() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO inventory.fleet_changes_pruned (id, below, pruned_by) VALUES (1, {_XID} + 1, {_XID})
            ON CONFLICT (id) DO UPDATE
            SET below = greatest(fleet_changes_pruned.below, excluded.below), pruned_by = excluded.pruned_by;
            RETURN NULL;
        END $$
    """)
    for table in ("servers", "server_components"):
        op.execute(f"""
            CREATE TRIGGER {table}_record_fleet_change AFTER INSERT OR UPDATE OR DELETE
            ON inventory.{table} FOR EACH ROW EXECUTE FUNCTION inventory.record_fleet_change()
        """)
    for table in ("servers", "server_components", "fleet_changes"):
        op.execute(f"""
            CREATE TRIGGER {table}_fleet_history_lost AFTER TRUNCATE
            ON inventory.{table} FOR EACH STATEMENT EXECUTE FUNCTION inventory.fleet_history_lost()
        """)
    op.execute(f"INSERT INTO inventory.fleet_changes_pruned (id, below, pruned_by) VALUES (1, {_XID} + 1, {_XID})")
    # For the previous release's replicas only (see above): they reload their copy when this differs.
    op.execute("""
        CREATE VIEW inventory.fleet_version AS
        SELECT 1 AS id, (SELECT count(*) || ':' || coalesce(max(xid), 0) FROM inventory.fleet_changes) AS version
    """)


def downgrade():
    op.execute("DROP VIEW inventory.fleet_version")
    for table in ("servers", "server_components", "fleet_changes"):
        op.execute(f"DROP TRIGGER {table}_fleet_history_lost ON inventory.{table}")
    for table in ("servers", "server_components"):
        op.execute(f"DROP TRIGGER {table}_record_fleet_change ON inventory.{table}")
    op.execute("DROP FUNCTION inventory.fleet_history_lost()")
    op.execute("DROP FUNCTION inventory.record_fleet_change()")
    op.drop_table("fleet_changes_pruned", schema="inventory")
    op.drop_table("fleet_changes", schema="inventory")

    op.create_table("fleet_version",
                    sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
                    sa.Column("version", sa.BigInteger(), nullable=False),
                    sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_version")),
                    schema="inventory")
    op.execute("""
        CREATE FUNCTION inventory.bump_fleet_version() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO inventory.fleet_version (id, version) VALUES (1, pg_current_xact_id()::text::bigint)
            ON CONFLICT (id) DO UPDATE SET version = excluded.version;
            RETURN NULL;
        END $$
    """)
    for table in ("servers", "server_components"):
        op.execute(f"""
            CREATE TRIGGER {table}_bump_fleet_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
            ON inventory.{table} FOR EACH STATEMENT EXECUTE FUNCTION inventory.bump_fleet_version()
        """)
    op.execute(f"INSERT INTO inventory.fleet_version (id, version) VALUES (1, {_XID})")
