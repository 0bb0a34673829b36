"""fleet_version: changes in the transaction that changes any server or component

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("fleet_version",
                    sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
                    sa.Column("version", sa.BigInteger(), nullable=False),
                    sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_version")),
                    schema="inventory")
    # The writing transaction's id: never a value an older copy of the fleet was read at,
    # even after the table was emptied.
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
    op.execute("INSERT INTO inventory.fleet_version (id, version) VALUES (1, pg_current_xact_id()::text::bigint)")


def downgrade():
    for table in ("servers", "server_components"):
        op.execute(f"DROP TRIGGER {table}_bump_fleet_version ON inventory.{table}")
    op.execute("DROP FUNCTION inventory.bump_fleet_version()")
    op.drop_table("fleet_version", schema="inventory")
