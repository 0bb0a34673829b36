"""backup tasks can be cancelled while they run (shared/tasks.py: CancelColumns); verify and restore tasks name
their backup server in their params, so whatever ends one (a replica reaping it too) says where it ran

Revision ID: 0004
Revises: 0003
"""
from alembic import op

from shared.tasks import add_cancel_columns, drop_cancel_columns

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    add_cancel_columns(op, "backup")
    op.execute("UPDATE backup.tasks t SET params = t.params || jsonb_build_object('backup_server_id', b.backup_server_id) "
               "FROM backup.backups b WHERE t.kind IN ('verify', 'restore') AND b.id = t.params->>'backup_id' "
               "AND NOT t.params ? 'backup_server_id'")


def downgrade():
    drop_cancel_columns(op, "backup")
