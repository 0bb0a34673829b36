"""initial updater schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-24 01:41:51.610013
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('diagnostics_runs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('server_id', sa.Integer(), nullable=False),
    sa.Column('server_name', sa.String(length=128), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('checks', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False),
    sa.Column('log', sa.Text(), server_default='', nullable=False),
    sa.Column('requested_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_diagnostics_runs')),
    schema='updater'
    )
    op.create_index(op.f('ix_updater_diagnostics_runs_server_id'), 'diagnostics_runs', ['server_id'], unique=False, schema='updater')
    op.create_table('images',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('component', sa.String(length=16), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('path', sa.String(length=255), nullable=False),
    sa.Column('manifest', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('uploaded_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_images')),
    sa.UniqueConstraint('component', 'version', name='uq_images_component_version'),
    schema='updater'
    )
    op.create_table('last_stable_versions',
    sa.Column('server_id', sa.Integer(), nullable=False),
    sa.Column('component', sa.String(length=16), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('server_id', 'component', name=op.f('pk_last_stable_versions')),
    schema='updater'
    )
    op.create_table('rollouts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('component', sa.String(length=16), nullable=True),
    sa.Column('target_version', sa.String(length=64), nullable=True),
    sa.Column('canary_size', sa.Integer(), nullable=False),
    sa.Column('batch_size', sa.Integer(), nullable=False),
    sa.Column('max_failures', sa.Integer(), nullable=False),
    sa.Column('failures_before_resume', sa.Integer(), server_default='0', nullable=False),
    sa.Column('current_wave', sa.Integer(), server_default='-1', nullable=False),
    sa.Column('paused_reason', sa.Text(), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rollouts')),
    schema='updater'
    )
    op.create_table('rollout_servers',
    sa.Column('rollout_id', sa.Integer(), nullable=False),
    sa.Column('server_id', sa.Integer(), nullable=False),
    sa.Column('server_name', sa.String(length=128), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('wave', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), server_default='pending', nullable=False),
    sa.Column('task_id', sa.String(length=32), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['rollout_id'], ['updater.rollouts.id'], name=op.f('fk_rollout_servers_rollout_id_rollouts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('rollout_id', 'server_id', name=op.f('pk_rollout_servers')),
    schema='updater'
    )
    op.create_table('update_tasks',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('server_id', sa.Integer(), nullable=False),
    sa.Column('server_name', sa.String(length=128), nullable=False),
    sa.Column('component', sa.String(length=16), nullable=True),
    sa.Column('target_version', sa.String(length=64), nullable=True),
    sa.Column('state', sa.String(length=16), server_default='queued', nullable=False),
    sa.Column('step_index', sa.Integer(), server_default='0', nullable=False),
    sa.Column('step_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('current_step', sa.String(length=64), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('outcome', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('rollout_id', sa.Integer(), nullable=True),
    sa.Column('dispatch_id', sa.String(length=32), nullable=True),
    sa.Column('requested_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['rollout_id'], ['updater.rollouts.id'], name=op.f('fk_update_tasks_rollout_id_rollouts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_update_tasks')),
    schema='updater'
    )
    op.create_index(op.f('ix_updater_update_tasks_rollout_id'), 'update_tasks', ['rollout_id'], unique=False, schema='updater')
    op.create_index(op.f('ix_updater_update_tasks_server_id'), 'update_tasks', ['server_id'], unique=False, schema='updater')
    op.create_table('task_steps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('output', sa.Text(), server_default='', nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['task_id'], ['updater.update_tasks.id'], name=op.f('fk_task_steps_task_id_update_tasks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_task_steps')),
    schema='updater'
    )
    op.create_index(op.f('ix_updater_task_steps_task_id'), 'task_steps', ['task_id'], unique=False, schema='updater')


def downgrade():
    op.drop_index(op.f('ix_updater_task_steps_task_id'), table_name='task_steps', schema='updater')
    op.drop_table('task_steps', schema='updater')
    op.drop_index(op.f('ix_updater_update_tasks_server_id'), table_name='update_tasks', schema='updater')
    op.drop_index(op.f('ix_updater_update_tasks_rollout_id'), table_name='update_tasks', schema='updater')
    op.drop_table('update_tasks', schema='updater')
    op.drop_table('rollout_servers', schema='updater')
    op.drop_table('rollouts', schema='updater')
    op.drop_table('last_stable_versions', schema='updater')
    op.drop_table('images', schema='updater')
    op.drop_index(op.f('ix_updater_diagnostics_runs_server_id'), table_name='diagnostics_runs', schema='updater')
    op.drop_table('diagnostics_runs', schema='updater')
