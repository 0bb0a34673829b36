"""diagnostics runs become tasks of kind diagnostics (their checks in outcome, their log one step); tasks take
cancel_requested_at/_by (shared/tasks.py: CancelColumns)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 03:10:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('tasks', sa.Column('cancel_requested_at', sa.DateTime(timezone=True), nullable=True), schema='updater')
    op.add_column('tasks', sa.Column('cancel_requested_by', sa.String(length=64), nullable=True), schema='updater')
    # A run still "running" was cut short by the upgrade, as an interrupted task is.
    op.execute("""
        INSERT INTO updater.tasks (id, kind, server_id, server_name, state, step_index, step_count, error, params,
                                   requested_by, created_at, started_at, finished_at, outcome)
        SELECT id, 'diagnostics', server_id, server_name,
               CASE state WHEN 'passed' THEN 'succeeded' ELSE 'failed' END, 1, 1,
               CASE state WHEN 'running' THEN 'interrupted: the updater was upgraded while it ran' END, '{}',
               requested_by, created_at, created_at, COALESCE(finished_at, now()), jsonb_build_object('checks', checks)
        FROM updater.diagnostics_runs""")
    op.execute("""
        INSERT INTO updater.task_steps (task_id, position, name, state, started_at, finished_at, duration_ms, output)
        SELECT id, 1, 'diagnostics', CASE state WHEN 'passed' THEN 'succeeded' ELSE 'failed' END, created_at,
               COALESCE(finished_at, now()),
               (extract(epoch FROM COALESCE(finished_at, now()) - created_at) * 1000)::int, log
        FROM updater.diagnostics_runs""")
    op.drop_index('ix_updater_diagnostics_runs_server_id', table_name='diagnostics_runs', schema='updater')
    op.drop_table('diagnostics_runs', schema='updater')


def downgrade():
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
    op.create_index(op.f('ix_updater_diagnostics_runs_server_id'), 'diagnostics_runs', ['server_id'], unique=False,
                    schema='updater')
    op.execute("""
        INSERT INTO updater.diagnostics_runs (id, server_id, server_name, state, checks, log, requested_by, created_at,
                                              finished_at)
        SELECT t.id, t.server_id, t.server_name,
               CASE t.state WHEN 'succeeded' THEN 'passed' WHEN 'running' THEN 'running' ELSE 'failed' END,
               COALESCE(t.outcome -> 'checks', '[]'),
               COALESCE((SELECT string_agg(s.output, E'\\n' ORDER BY s.position) FROM updater.task_steps s
                         WHERE s.task_id = t.id), ''),
               t.requested_by, t.created_at, t.finished_at
        FROM updater.tasks t WHERE t.kind = 'diagnostics'""")
    op.execute("DELETE FROM updater.tasks WHERE kind = 'diagnostics'")
    op.drop_column('tasks', 'cancel_requested_by', schema='updater')
    op.drop_column('tasks', 'cancel_requested_at', schema='updater')
