"""backup tasks run under a replica's lease (shared/task_runner.py); the first answer of each create
sent with an Idempotency-Key; the daemon's newest disk crossing reported (backup_disk_low once per crossing)

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

from shared.idempotency import create_in_migration

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("leases",
                    sa.Column("name", sa.String(length=128), nullable=False),
                    sa.Column("holder", sa.String(length=64), nullable=False),
                    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
                    sa.Column("renewed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
                    sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
                    schema="backup")
    # A task running under the old runner has no lease holder: it ends failed, as an interrupted one does.
    op.execute("UPDATE backup.tasks SET state = 'failed', finished_at = now(), "
               "error = 'interrupted: the backup service was upgraded while it ran' WHERE state = 'running'")
    create_in_migration(op, "backup")
    op.add_column("backup_servers", sa.Column("disk_event_seen", sa.Integer(), server_default="0", nullable=False),
                  schema="backup")


def downgrade():
    op.drop_column("backup_servers", "disk_event_seen", schema="backup")
    op.drop_table("idempotency_keys", schema="backup")
    op.drop_table("leases", schema="backup")
