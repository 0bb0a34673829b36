"""hourly aggregates are rolled up from the per-minute ones, not upserted per message

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

AGGREGATES = ('system_aggregates', 'dns_aggregates', 'dns_record_aggregates')


def upgrade():
    for table in AGGREGATES:
        op.create_index(f'ix_{table}_bucket_brin', table, ['bucket'], schema='monitoring', postgresql_using='brin')
    op.create_table('rollup_state',
                    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
                    sa.Column('rolled_until', sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('id', name=op.f('pk_rollup_state')),
                    schema='monitoring')
    op.create_table('rollup_dirty',
                    sa.Column('hour', sa.DateTime(timezone=True), nullable=False),
                    sa.Column('version', sa.BigInteger(), nullable=False),
                    sa.PrimaryKeyConstraint('hour', name=op.f('pk_rollup_dirty')),
                    schema='monitoring')
    op.execute("CREATE SEQUENCE monitoring.rollup_dirty_version")
    # Until now every message also updated its hour, so the hours before this one are complete;
    # this hour's row is recomputed from its minutes when it closes.
    op.execute("INSERT INTO monitoring.rollup_state (id, rolled_until) VALUES (1, date_trunc('hour', now()))")


# What downgrade recomputes per table: key columns, then (column, aggregate) pairs.
_HOURLY = {
    'system_aggregates': (('server_id',), (
        ('samples', 'sum'), ('load1_sum', 'sum'), ('load5_sum', 'sum'), ('load15_sum', 'sum'),
        ('memory_used_sum', 'sum'), ('memory_total_max', 'max'), ('swap_used_sum', 'sum'),
        ('connections_established_sum', 'sum'), ('disk_used_max_percent', 'max'))),
    'dns_aggregates': (('server_id',), (('total', 'sum'),)),
    'dns_record_aggregates': (('name', 'type', 'server_id'), (('hits', 'sum'), ('last_access', 'max'))),
}


def downgrade():
    # The older code adds each message to its hour as it stores it, so every hour not rolled up
    # yet (or dirty) is made whole from its minutes first.
    for table, (keys, values) in _HOURLY.items():
        key_list = ", ".join(keys)
        op.execute(f"""
            INSERT INTO monitoring.{table} (resolution, {key_list}, bucket, {", ".join(c for c, _ in values)})
            SELECT 'hour', {key_list}, date_trunc('hour', bucket, 'UTC'), {", ".join(f"{f}({c})" for c, f in values)}
            FROM monitoring.{table}
            WHERE resolution = 'minute' AND (bucket >= (SELECT rolled_until FROM monitoring.rollup_state)
                OR date_trunc('hour', bucket, 'UTC') IN (SELECT hour FROM monitoring.rollup_dirty))
            GROUP BY {key_list}, date_trunc('hour', bucket, 'UTC')
            ON CONFLICT (resolution, {key_list}, bucket) DO UPDATE SET
                {", ".join(f"{c} = excluded.{c}" for c, _ in values)}
        """)
    op.execute("DROP SEQUENCE monitoring.rollup_dirty_version")
    op.drop_table('rollup_dirty', schema='monitoring')
    op.drop_table('rollup_state', schema='monitoring')
    for table in AGGREGATES:
        op.drop_index(f'ix_{table}_bucket_brin', table_name=table, schema='monitoring')
