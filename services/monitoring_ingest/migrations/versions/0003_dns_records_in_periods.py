"""a DNS message's records are stored in its dns_periods row, not a row each

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('dns_periods', sa.Column('records', postgresql.JSONB(astext_type=sa.Text()),
                                           server_default=sa.text("'[]'::jsonb"), nullable=False), schema='monitoring')
    # The raw records still within retention move into their messages' rows.
    op.execute("""
        UPDATE monitoring.dns_periods AS p SET records = h.records
        FROM (SELECT server_id, seq, collected_at,
                     jsonb_agg(jsonb_build_object('name', name, 'type', type, 'hits', hits,
                                                  'last_access', last_access)) AS records
              FROM monitoring.dns_record_hits GROUP BY 1, 2, 3) AS h
        WHERE (p.server_id, p.seq, p.collected_at) = (h.server_id, h.seq, h.collected_at)
    """)
    op.drop_table('dns_record_hits', schema='monitoring')  # its partitions go with it


def downgrade():
    op.create_table('dns_record_hits',
                    sa.Column('server_id', sa.Integer(), nullable=False),
                    sa.Column('seq', sa.BigInteger(), nullable=False),
                    sa.Column('collected_at', sa.DateTime(timezone=True), nullable=False),
                    sa.Column('name', sa.String(length=255), nullable=False),
                    sa.Column('type', sa.String(length=16), nullable=False),
                    sa.Column('hits', sa.BigInteger(), nullable=False),
                    sa.Column('last_access', sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('server_id', 'seq', 'collected_at', 'name', 'type',
                                            name=op.f('pk_dns_record_hits')),
                    schema='monitoring', postgresql_partition_by='RANGE (collected_at)')
    op.drop_column('dns_periods', 'records', schema='monitoring')
