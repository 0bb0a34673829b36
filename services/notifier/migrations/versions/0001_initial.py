"""notifier: channels, rules, templates, delivery log

Revision ID: 0001
Revises: 
Create Date: 2026-11-24 01:39:36.027717
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('channels',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('settings', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('secret_sealed', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_channels')),
    sa.UniqueConstraint('name', name=op.f('uq_channels_name')),
    schema='notifier'
    )
    op.create_table('received_events',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_received_events')),
    schema='notifier'
    )
    op.create_index(op.f('ix_notifier_received_events_received_at'), 'received_events', ['received_at'], unique=False, schema='notifier')
    op.create_table('rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('event_types', sa.ARRAY(sa.String(length=64)), nullable=False),
    sa.Column('min_severity', sa.String(length=16), nullable=False),
    sa.Column('server_ids', sa.ARRAY(sa.Integer()), nullable=False),
    sa.Column('server_search', sa.String(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rules')),
    sa.UniqueConstraint('name', name=op.f('uq_rules_name')),
    schema='notifier'
    )
    op.create_table('server_states',
    sa.Column('server_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('server_name', sa.String(length=128), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recent_changes', sa.ARRAY(sa.DateTime(timezone=True)), nullable=False),
    sa.Column('flapping_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('muted_changes', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.PrimaryKeyConstraint('server_id', name=op.f('pk_server_states')),
    schema='notifier'
    )
    op.create_index(op.f('ix_notifier_server_states_flapping_since'), 'server_states', ['flapping_since'], unique=False, schema='notifier')
    op.create_table('templates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('channel_kind', sa.String(length=16), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_templates')),
    sa.UniqueConstraint('event_type', 'channel_kind', name='uq_templates_event_type_channel_kind'),
    schema='notifier'
    )
    op.create_table('deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('channel_id', sa.Integer(), nullable=True),
    sa.Column('channel_name', sa.String(length=64), nullable=False),
    sa.Column('channel_kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('item_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('subject', sa.Text(), nullable=True),
    sa.Column('body', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['channel_id'], ['notifier.channels.id'], name=op.f('fk_deliveries_channel_id_channels'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deliveries')),
    schema='notifier'
    )
    op.create_index('ix_deliveries_status_due_at', 'deliveries', ['status', 'due_at'], unique=False, schema='notifier')
    op.create_index('uq_deliveries_collecting_channel', 'deliveries', ['channel_id'], unique=True, schema='notifier', postgresql_where=sa.text("status = 'collecting'"))
    op.create_table('rule_channels',
    sa.Column('rule_id', sa.Integer(), nullable=False),
    sa.Column('channel_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['notifier.channels.id'], name=op.f('fk_rule_channels_channel_id_channels'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['rule_id'], ['notifier.rules.id'], name=op.f('fk_rule_channels_rule_id_rules'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('rule_id', 'channel_id', name=op.f('pk_rule_channels')),
    schema='notifier'
    )
    op.create_table('delivery_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('delivery_id', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('duration_ms', sa.Double(), nullable=False),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('result', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['delivery_id'], ['notifier.deliveries.id'], name=op.f('fk_delivery_attempts_delivery_id_deliveries'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_attempts')),
    schema='notifier'
    )
    op.create_index(op.f('ix_notifier_delivery_attempts_delivery_id'), 'delivery_attempts', ['delivery_id'], unique=False, schema='notifier')
    op.create_table('delivery_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('delivery_id', sa.Integer(), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('server_id', sa.Integer(), nullable=True),
    sa.Column('server_name', sa.String(length=128), nullable=True),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['delivery_id'], ['notifier.deliveries.id'], name=op.f('fk_delivery_items_delivery_id_deliveries'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_items')),
    schema='notifier'
    )
    op.create_index(op.f('ix_notifier_delivery_items_delivery_id'), 'delivery_items', ['delivery_id'], unique=False, schema='notifier')


def downgrade():
    op.drop_index(op.f('ix_notifier_delivery_items_delivery_id'), table_name='delivery_items', schema='notifier')
    op.drop_table('delivery_items', schema='notifier')
    op.drop_index(op.f('ix_notifier_delivery_attempts_delivery_id'), table_name='delivery_attempts', schema='notifier')
    op.drop_table('delivery_attempts', schema='notifier')
    op.drop_table('rule_channels', schema='notifier')
    op.drop_index('uq_deliveries_collecting_channel', table_name='deliveries', schema='notifier', postgresql_where=sa.text("status = 'collecting'"))
    op.drop_index('ix_deliveries_status_due_at', table_name='deliveries', schema='notifier')
    op.drop_table('deliveries', schema='notifier')
    op.drop_table('templates', schema='notifier')
    op.drop_index(op.f('ix_notifier_server_states_flapping_since'), table_name='server_states', schema='notifier')
    op.drop_table('server_states', schema='notifier')
    op.drop_table('rules', schema='notifier')
    op.drop_index(op.f('ix_notifier_received_events_received_at'), table_name='received_events', schema='notifier')
    op.drop_table('received_events', schema='notifier')
    op.drop_table('channels', schema='notifier')
