"""install tasks, step log, host keys, bundles

Revision ID: 0001
Revises: 
Create Date: 2026-11-24 01:38:10.860642
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('bundles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('server_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('agent_token_id', sa.Integer(), nullable=False),
    sa.Column('rabbitmq_user', sa.String(length=128), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bundles')),
    schema='provisioner'
    )
    op.create_index(op.f('ix_provisioner_bundles_server_id'), 'bundles', ['server_id'], unique=False, schema='provisioner')
    op.create_table('host_keys',
    sa.Column('server_id', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=253), nullable=False),
    sa.Column('port', sa.Integer(), nullable=False),
    sa.Column('key_type', sa.String(length=64), nullable=False),
    sa.Column('key_base64', sa.Text(), nullable=False),
    sa.Column('fingerprint', sa.String(length=128), nullable=False),
    sa.Column('pinned_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('server_id', name=op.f('pk_host_keys')),
    schema='provisioner'
    )
    op.create_table('tasks',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('server_id', sa.Integer(), nullable=False),
    sa.Column('server_name', sa.String(length=128), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('step_index', sa.Integer(), server_default='0', nullable=False),
    sa.Column('step_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('current_step', sa.String(length=64), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('params', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('requested_by', sa.String(length=64), nullable=False),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tasks')),
    schema='provisioner'
    )
    op.create_index(op.f('ix_provisioner_tasks_server_id'), 'tasks', ['server_id'], unique=False, schema='provisioner')
    op.create_index('ix_tasks_queued', 'tasks', ['created_at'], unique=False, schema='provisioner', postgresql_where=sa.text("state IN ('queued', 'running')"))
    op.create_table('task_steps',
    sa.Column('task_id', sa.String(length=32), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('output', sa.Text(), server_default='', nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['provisioner.tasks.id'], name=op.f('fk_task_steps_task_id_tasks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('task_id', 'position', name=op.f('pk_task_steps')),
    schema='provisioner'
    )


def downgrade():
    op.drop_table('task_steps', schema='provisioner')
    op.drop_index('ix_tasks_queued', table_name='tasks', schema='provisioner', postgresql_where=sa.text("state IN ('queued', 'running')"))
    op.drop_index(op.f('ix_provisioner_tasks_server_id'), table_name='tasks', schema='provisioner')
    op.drop_table('tasks', schema='provisioner')
    op.drop_table('host_keys', schema='provisioner')
    op.drop_index(op.f('ix_provisioner_bundles_server_id'), table_name='bundles', schema='provisioner')
    op.drop_table('bundles', schema='provisioner')
