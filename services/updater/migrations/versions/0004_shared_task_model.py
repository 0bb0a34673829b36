"""update tasks take the shared task shape (shared/tasks.py): table tasks with kind, params and
claimed_by; steps numbered by position; no dispatch id (replicas claim tasks under a lease)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 23:50:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.rename_table('update_tasks', 'tasks', schema='updater')
    op.execute('ALTER INDEX updater.ix_updater_update_tasks_server_id RENAME TO ix_updater_tasks_server_id')
    op.execute('ALTER INDEX updater.ix_updater_update_tasks_rollout_id RENAME TO ix_updater_tasks_rollout_id')
    op.execute('ALTER TABLE updater.tasks RENAME CONSTRAINT pk_update_tasks TO pk_tasks')
    op.execute('ALTER TABLE updater.tasks RENAME CONSTRAINT fk_update_tasks_rollout_id_rollouts '
               'TO fk_tasks_rollout_id_rollouts')
    op.execute('ALTER TABLE updater.task_steps RENAME CONSTRAINT fk_task_steps_task_id_update_tasks '
               'TO fk_task_steps_task_id_tasks')
    op.add_column('tasks', sa.Column('kind', sa.String(length=16), server_default='update', nullable=False),
                  schema='updater')
    op.alter_column('tasks', 'kind', server_default=None, schema='updater')
    op.add_column('tasks', sa.Column('params', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                                     nullable=False), schema='updater')
    op.add_column('tasks', sa.Column('claimed_by', sa.String(length=64), nullable=True), schema='updater')
    op.alter_column('tasks', 'state', server_default=None, schema='updater')
    # A task running under the old scheme has no lease holder: it ends failed, as an interrupted one does
    # (queued ones are claimed by the new runner as they are).
    op.execute("UPDATE updater.tasks SET state = 'failed', finished_at = now(), "
               "error = 'interrupted: the updater was upgraded while it ran' WHERE state = 'running'")
    op.drop_column('tasks', 'dispatch_id', schema='updater')
    op.create_index('ix_tasks_queued', 'tasks', ['created_at'], unique=False, schema='updater',
                    postgresql_where=sa.text("state IN ('queued', 'running')"))

    op.add_column('task_steps', sa.Column('position', sa.Integer(), nullable=True), schema='updater')
    op.execute('UPDATE updater.task_steps s SET position = n.position FROM ('
               'SELECT id, row_number() OVER (PARTITION BY task_id ORDER BY id) AS position FROM updater.task_steps'
               ') n WHERE n.id = s.id')
    op.alter_column('task_steps', 'position', nullable=False, schema='updater')
    op.alter_column('task_steps', 'status', new_column_name='state', schema='updater')
    op.add_column('task_steps', sa.Column('duration_ms', sa.Integer(), nullable=True), schema='updater')
    op.execute('UPDATE updater.task_steps SET duration_ms = '
               '(extract(epoch FROM finished_at - started_at) * 1000)::int WHERE finished_at IS NOT NULL')
    op.drop_index('ix_updater_task_steps_task_id', table_name='task_steps', schema='updater')
    op.drop_constraint('pk_task_steps', 'task_steps', schema='updater')
    op.drop_column('task_steps', 'id', schema='updater')
    op.create_primary_key('pk_task_steps', 'task_steps', ['task_id', 'position'], schema='updater')

    op.create_table('leases',
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('holder', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('renewed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_leases')),
    schema='updater'
    )


def downgrade():
    op.drop_table('leases', schema='updater')
    op.drop_constraint('pk_task_steps', 'task_steps', schema='updater')
    op.add_column('task_steps', sa.Column('id', sa.Integer(), sa.Identity(), nullable=False), schema='updater')
    op.create_primary_key('pk_task_steps', 'task_steps', ['id'], schema='updater')
    op.create_index('ix_updater_task_steps_task_id', 'task_steps', ['task_id'], unique=False, schema='updater')
    op.drop_column('task_steps', 'duration_ms', schema='updater')
    op.alter_column('task_steps', 'state', new_column_name='status', schema='updater')
    op.drop_column('task_steps', 'position', schema='updater')

    op.drop_index('ix_tasks_queued', table_name='tasks', schema='updater')
    op.add_column('tasks', sa.Column('dispatch_id', sa.String(length=32), nullable=True), schema='updater')
    op.alter_column('tasks', 'state', server_default='queued', schema='updater')
    op.drop_column('tasks', 'claimed_by', schema='updater')
    op.drop_column('tasks', 'params', schema='updater')
    op.drop_column('tasks', 'kind', schema='updater')
    op.execute('ALTER TABLE updater.task_steps RENAME CONSTRAINT fk_task_steps_task_id_tasks '
               'TO fk_task_steps_task_id_update_tasks')
    op.execute('ALTER TABLE updater.tasks RENAME CONSTRAINT fk_tasks_rollout_id_rollouts '
               'TO fk_update_tasks_rollout_id_rollouts')
    op.execute('ALTER TABLE updater.tasks RENAME CONSTRAINT pk_tasks TO pk_update_tasks')
    op.execute('ALTER INDEX updater.ix_updater_tasks_rollout_id RENAME TO ix_updater_update_tasks_rollout_id')
    op.execute('ALTER INDEX updater.ix_updater_tasks_server_id RENAME TO ix_updater_update_tasks_server_id')
    op.rename_table('tasks', 'update_tasks', schema='updater')
