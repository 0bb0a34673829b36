"""initial inventory schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-24 01:13:36.772567
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_groups')),
    sa.UniqueConstraint('name', name=op.f('uq_groups_name')),
    schema='inventory'
    )
    op.create_table('settings',
    sa.Column('section', sa.String(length=32), nullable=False),
    sa.Column('values', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('section', name=op.f('pk_settings')),
    schema='inventory'
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('auto_created', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('name', name=op.f('uq_users_name')),
    schema='inventory'
    )
    op.create_table('servers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('name_key', sa.String(length=128, collation='C'), sa.Computed('lower((name)::text)', persisted=True), nullable=False),
    sa.Column('address', sa.String(length=253), nullable=False),
    sa.Column('os', sa.String(length=16), nullable=False),
    sa.Column('ssh_port', sa.Integer(), nullable=False),
    sa.Column('ssh_user', sa.String(length=64), nullable=False),
    sa.Column('ssh_password_sealed', sa.Text(), nullable=True),
    sa.Column('ssh_private_key_sealed', sa.Text(), nullable=True),
    sa.Column('monitoring_api_ip', sa.String(length=45), nullable=True),
    sa.Column('runtime', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), server_default='unknown', nullable=False),
    sa.Column('server_user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['server_user_id'], ['inventory.users.id'], name=op.f('fk_servers_server_user_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_servers')),
    sa.UniqueConstraint('name_key', name=op.f('uq_servers_name_key')),
    schema='inventory'
    )
    op.create_index(op.f('ix_inventory_servers_server_user_id'), 'servers', ['server_user_id'], unique=False, schema='inventory')
    op.create_table('user_groups',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['inventory.groups.id'], name=op.f('fk_user_groups_group_id_groups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['inventory.users.id'], name=op.f('fk_user_groups_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'group_id', name=op.f('pk_user_groups')),
    schema='inventory'
    )
    op.execute("INSERT INTO inventory.groups (name) VALUES ('servers')")
    op.create_table('server_components',
    sa.Column('server_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=16), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=True),
    sa.Column('state', sa.String(length=16), server_default='not_installed', nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['server_id'], ['inventory.servers.id'], name=op.f('fk_server_components_server_id_servers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('server_id', 'name', name=op.f('pk_server_components')),
    schema='inventory'
    )
    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=8), nullable=False),
    sa.Column('scope', sa.String(length=16), server_default='full', nullable=False),
    sa.Column('server_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['server_id'], ['inventory.servers.id'], name=op.f('fk_api_tokens_server_id_servers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['inventory.users.id'], name=op.f('fk_api_tokens_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash')),
    schema='inventory'
    )
    op.create_index(op.f('ix_inventory_api_tokens_user_id'), 'api_tokens', ['user_id'], unique=False, schema='inventory')
    op.create_index(op.f('ix_inventory_api_tokens_server_id'), 'api_tokens', ['server_id'], unique=False, schema='inventory')


def downgrade():
    op.drop_index(op.f('ix_inventory_api_tokens_server_id'), table_name='api_tokens', schema='inventory')
    op.drop_index(op.f('ix_inventory_api_tokens_user_id'), table_name='api_tokens', schema='inventory')
    op.drop_table('api_tokens', schema='inventory')
    op.drop_table('server_components', schema='inventory')
    op.drop_table('user_groups', schema='inventory')
    op.drop_index(op.f('ix_inventory_servers_server_user_id'), table_name='servers', schema='inventory')
    op.drop_table('servers', schema='inventory')
    op.drop_table('users', schema='inventory')
    op.drop_table('settings', schema='inventory')
    op.drop_table('groups', schema='inventory')
