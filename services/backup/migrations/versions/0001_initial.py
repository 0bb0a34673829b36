"""backup: backup servers, key, retention, schedules, catalogue, tasks

Revision ID: 0001
Revises: 
Create Date: 2026-11-29 23:44:45.548104
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('backup_key',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('wrapped_secret', sa.Text(), nullable=False),
    sa.Column('wrapped_with_sealed', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('rewrapped_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backup_key')),
    schema='backup'
    )
    op.create_table('backup_servers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('server_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('url', sa.String(length=300), nullable=False),
    sa.Column('repository', sa.String(length=64), nullable=False),
    sa.Column('append_user', sa.String(length=64), nullable=False),
    sa.Column('append_password_sealed', sa.Text(), nullable=False),
    sa.Column('prune_user', sa.String(length=64), nullable=False),
    sa.Column('prune_password_sealed', sa.Text(), nullable=False),
    sa.Column('include_monitoring_raw', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('disk_total_bytes', sa.BigInteger(), nullable=True),
    sa.Column('disk_free_bytes', sa.BigInteger(), nullable=True),
    sa.Column('disk_free_percent', sa.Float(), nullable=True),
    sa.Column('disk_low', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backup_servers')),
    sa.UniqueConstraint('server_id', name=op.f('uq_backup_servers_server_id')),
    schema='backup'
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
    sa.Column('params', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('requested_by', sa.String(length=64), nullable=True),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tasks')),
    schema='backup'
    )
    op.create_index(op.f('ix_backup_tasks_server_id'), 'tasks', ['server_id'], unique=False, schema='backup')
    op.create_index('ix_tasks_queued', 'tasks', ['created_at'], unique=False, schema='backup', postgresql_where=sa.text("state IN ('queued', 'running')"))
    op.create_table('backups',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('backup_server_id', sa.Integer(), nullable=False),
    sa.Column('snapshot_id', sa.String(length=64), nullable=False),
    sa.Column('taken_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('schemas', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('include_monitoring_raw', sa.Boolean(), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('added_bytes', sa.BigInteger(), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.String(length=32), nullable=True),
    sa.Column('verification', sa.String(length=16), server_default='unverified', nullable=False),
    sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('verification_detail', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['backup_server_id'], ['backup.backup_servers.id'], name=op.f('fk_backups_backup_server_id_backup_servers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backups')),
    schema='backup'
    )
    op.create_index(op.f('ix_backup_backups_backup_server_id'), 'backups', ['backup_server_id'], unique=False, schema='backup')
    op.create_index(op.f('ix_backup_backups_taken_at'), 'backups', ['taken_at'], unique=False, schema='backup')
    op.create_table('retention_policies',
    sa.Column('backup_server_id', sa.Integer(), nullable=False),
    sa.Column('keep_last', sa.Integer(), server_default='0', nullable=False),
    sa.Column('keep_hourly', sa.Integer(), server_default='0', nullable=False),
    sa.Column('keep_daily', sa.Integer(), server_default='0', nullable=False),
    sa.Column('keep_weekly', sa.Integer(), server_default='0', nullable=False),
    sa.Column('keep_monthly', sa.Integer(), server_default='0', nullable=False),
    sa.Column('keep_yearly', sa.Integer(), server_default='0', nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['backup_server_id'], ['backup.backup_servers.id'], name=op.f('fk_retention_policies_backup_server_id_backup_servers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('backup_server_id', name=op.f('pk_retention_policies')),
    schema='backup'
    )
    op.create_table('schedules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('backup_server_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), server_default='backup', nullable=False),
    sa.Column('cron', sa.String(length=120), nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default='true', nullable=False),
    sa.Column('next_run_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_task_id', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['backup_server_id'], ['backup.backup_servers.id'], name=op.f('fk_schedules_backup_server_id_backup_servers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedules')),
    schema='backup'
    )
    op.create_index(op.f('ix_backup_schedules_backup_server_id'), 'schedules', ['backup_server_id'], unique=False, schema='backup')
    op.create_index(op.f('ix_backup_schedules_next_run_at'), 'schedules', ['next_run_at'], unique=False, schema='backup')
    op.create_table('task_steps',
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('output', sa.Text(), server_default='', nullable=False),
    sa.Column('task_id', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['backup.tasks.id'], name=op.f('fk_task_steps_task_id_tasks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('position', 'task_id', name=op.f('pk_task_steps')),
    schema='backup'
    )


def downgrade():
    op.drop_table('task_steps', schema='backup')
    op.drop_index(op.f('ix_backup_schedules_next_run_at'), table_name='schedules', schema='backup')
    op.drop_index(op.f('ix_backup_schedules_backup_server_id'), table_name='schedules', schema='backup')
    op.drop_table('schedules', schema='backup')
    op.drop_table('retention_policies', schema='backup')
    op.drop_index(op.f('ix_backup_backups_taken_at'), table_name='backups', schema='backup')
    op.drop_index(op.f('ix_backup_backups_backup_server_id'), table_name='backups', schema='backup')
    op.drop_table('backups', schema='backup')
    op.drop_index('ix_tasks_queued', table_name='tasks', schema='backup', postgresql_where=sa.text("state IN ('queued', 'running')"))
    op.drop_index(op.f('ix_backup_tasks_server_id'), table_name='tasks', schema='backup')
    op.drop_table('tasks', schema='backup')
    op.drop_table('backup_servers', schema='backup')
    op.drop_table('backup_key', schema='backup')
